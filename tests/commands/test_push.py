"""Publishing runs: exactly the final model folder goes up (never checkpoints unless asked), through a stand-in
for the hub client; a failed push keeps the run and says how to retry. No network."""


import pytest
from conftest import V1, train_args

import huggingface_hub
from spanqa.cli import main
from spanqa.errors import SpanqaError
from spanqa.commands.push import files_to_push, push_run


class StandInHub:
    """Records what HfApi would be asked to do."""

    calls: list = []

    def __init__(self, fail: bool = False) -> None:
        self.fail = fail

    def create_repo(self, repo_id, private=False, exist_ok=False, repo_type="model"):
        StandInHub.calls.append(("create_repo", repo_id, private))

    def create_branch(self, repo_id, branch, exist_ok=False):
        StandInHub.calls.append(("create_branch", repo_id, branch))

    def create_commit(self, repo_id, operations, commit_message, revision=None):
        if self.fail:
            raise OSError("401 Client Error: Unauthorized")
        StandInHub.calls.append(("create_commit", repo_id, sorted(op.path_in_repo for op in operations), revision))
        return type("Info", (), {"commit_url": f"https://huggingface.co/{repo_id}/commit/abc"})()


@pytest.fixture(scope="module")
def run_dir(tiny_model, tmp_path_factory):
    out = tmp_path_factory.mktemp("push") / "run"
    assert main(train_args(tiny_model, out, "--max-steps", "4", "--save-steps", "2", "--eval-data", V1,
                           "--max-eval-samples", "20", "--precision", "fp32", "--report-to", "tensorboard",
                           "--keep-final-checkpoint")) == 0
    return out


def test_only_the_final_model_folder_goes_up_unless_checkpoints_are_asked(run_dir):
    files = {str(f) for f in files_to_push(run_dir)}
    assert {"model.safetensors", "config.json", "tokenizer.json", "spanqa_reader.json", "README.md",
            "all_results.json", "training_curves.png"} <= files
    assert not any(f.startswith(("checkpoint-", "runs/")) or f.endswith("optimizer.pt") for f in files)
    everything = {str(f) for f in files_to_push(run_dir, include_checkpoints=True)}
    assert any(f.startswith("checkpoint-2/") for f in everything) and files < everything


def test_push_sends_exactly_those_files_to_the_named_branch(run_dir):
    StandInHub.calls = []
    url = push_run(run_dir, "me/tiny-qa", private=True, revision="v1", api=StandInHub())
    (_, repo, private), (_, _, branch), (_, _, sent, revision) = StandInHub.calls
    assert (repo, private, branch, revision) == ("me/tiny-qa", True, "v1", "v1")
    assert sent == sorted(str(f) for f in files_to_push(run_dir)) and url.endswith("/commit/abc")


def test_a_failed_push_keeps_the_run_and_says_how_to_retry(run_dir):
    before = sorted(p.name for p in run_dir.iterdir())
    with pytest.raises(SpanqaError, match=r"Unauthorized.*intact.*Retry with: spanqa push .* me/tiny-qa --hub-private"):
        push_run(run_dir, "me/tiny-qa", private=True, api=StandInHub(fail=True))
    assert sorted(p.name for p in run_dir.iterdir()) == before


def test_push_to_hub_after_training_and_spanqa_push(tiny_model, tmp_path, monkeypatch, capsys):
    StandInHub.calls = []
    monkeypatch.setattr(huggingface_hub, "HfApi", StandInHub)
    out = tmp_path / "run"
    assert main(train_args(tiny_model, out, "--max-steps", "2", "--precision", "fp32",
                           "--push-to-hub", "me/pushed")) == 0
    commit = [c for c in StandInHub.calls if c[0] == "create_commit"][0]
    assert commit[1] == "me/pushed" and "README.md" in commit[2] and "model.safetensors" in commit[2]
    assert "pushed" in capsys.readouterr().err
    assert main(["push", str(out), "me/again"]) == 0
    assert StandInHub.calls[-1][1] == "me/again"
    assert main(["push", str(tmp_path), "me/none"]) == 2 and "no finished model" in capsys.readouterr().err
