"""What a finished run leaves for its user and their colleagues: the final model without optimizer state,
files the umask lets others read, a card without this machine's paths, and the same weights from the same seed."""

import os
import stat
import subprocess
import sys

import pytest
from conftest import FIXTURES, V1, train_args

from spanqa.cli import main


def test_a_completed_run_keeps_the_model_readable_and_no_optimizer_checkpoint(tiny_model, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the data lies outside the working directory: the card names the file only
    old = os.umask(0o022)
    try:
        assert main(train_args(tiny_model, tmp_path / "run", "--max-steps", "4", "--save-steps", "2", "--eval-data",
                               V1, "--max-eval-samples", "10", "--precision", "fp32")) == 0
    finally:
        os.umask(old)
    out = tmp_path / "run"
    assert not list(out.glob("checkpoint-*"))  # removed once the final model was saved
    for name in ("README.md", "all_results.json", "eval_results.json", "trainer_state.json", "model.safetensors",
                 "spanqa_reader.json"):
        assert stat.S_IMODE((out / name).stat().st_mode) == 0o644, name
    card = (out / "README.md").read_text()
    assert str(FIXTURES) not in card and str(tiny_model) not in card
    assert "`squad-v1.1-dev-fixture.json`" in card


@pytest.mark.slow
@pytest.mark.parametrize("precision", ["fp32", "auto"])
def test_two_seeded_runs_in_fresh_processes_give_equal_weights(tiny_model, tmp_path, precision):
    """Separate processes, so hash seeds and allocator state differ as they do between a user's two runs."""
    from safetensors.torch import load_file

    runs = []
    for name in ("a", "b"):
        out = tmp_path / name
        args = train_args(tiny_model, out, "--max-steps", "12", "--per-device-train-batch-size", "4",
                          "--precision", precision, "--eval-data", V1, "--max-eval-samples", "10")
        env = {**os.environ, "PYTHONHASHSEED": "random"}
        subprocess.run([sys.executable, "-m", "spanqa.cli", *args], check=True, capture_output=True, env=env)
        runs.append(load_file(str(out / "model.safetensors")))
    a, b = runs
    assert a.keys() == b.keys() and all(a[k].equal(b[k]) for k in a)
