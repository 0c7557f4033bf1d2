"""Publishing a finished run to the Hugging Face hub: `spanqa push RUN_DIR REPO_ID`, and `--push-to-hub` on the
training commands.

What goes up is the final model folder: weights (safetensors), config, tokenizer, `spanqa_reader.json` (or the
classifier / encoder info), the model card, results and curves. Checkpoints, optimizer and RNG state and tracker
logs stay home unless `include_checkpoints` is asked. The token comes from `HF_TOKEN` or the standard
`huggingface-cli login`. A failed push never touches the run folder and says how to retry.
"""

from __future__ import annotations

import fnmatch
from pathlib import Path

from spanqa.errors import SpanqaError, first_line

KEPT_HOME = ("checkpoint-*", "runs", "optimizer.pt", "scheduler.pt", "rng_states*", "*.tmp", ".tracker_run_id",
             "ema.safetensors", "wandb", "mlruns")


def files_to_push(run_dir: Path, include_checkpoints: bool = False) -> list[Path]:
    """The run's files that a push sends, relative to `run_dir`, sorted.

    Raises:
        SpanqaError: the folder holds no finished model (no config.json and weights).
    """
    if not (run_dir / "config.json").is_file() or not any(run_dir.glob("*.safetensors")):
        raise SpanqaError(f"{run_dir}: no finished model to push (config.json and *.safetensors); push a run folder "
                          "written by spanqa train, distill, classify or pretrain.")
    out = []
    for path in sorted(p for p in run_dir.rglob("*") if p.is_file()):
        rel = path.relative_to(run_dir)
        top = rel.parts[0]
        if not include_checkpoints and any(fnmatch.fnmatch(top, pattern) for pattern in KEPT_HOME):
            continue
        out.append(rel)
    return out


def push_run(run_dir: str | Path, repo_id: str, private: bool = False, revision: str = "",
             include_checkpoints: bool = False, api=None) -> str:
    """Upload the run's files to `repo_id` in one commit; returns the commit URL.

    Args:
        api: a `huggingface_hub.HfApi` (default: one with the standard token lookup); tests pass a stand-in.
    Raises:
        SpanqaError: nothing to push, or the hub refused (the message says how to retry; the folder is untouched).
    """
    from huggingface_hub import CommitOperationAdd, HfApi

    run_dir = Path(run_dir)
    files = files_to_push(run_dir, include_checkpoints)
    api = api or HfApi()
    retry = f"spanqa push {run_dir} {repo_id}" + (" --hub-private" if private else "") + \
        (f" --hub-revision {revision}" if revision else "")
    try:
        api.create_repo(repo_id, private=private, exist_ok=True, repo_type="model")
        if revision:
            api.create_branch(repo_id, branch=revision, exist_ok=True)
        info = api.create_commit(
            repo_id, operations=[CommitOperationAdd(path_in_repo=str(f), path_or_fileobj=str(run_dir / f)) for f in files],
            commit_message=f"Upload {run_dir.name} with spanqa", revision=revision or None)
    except Exception as exc:  # the hub client raises many types; the run itself is safe either way
        raise SpanqaError(f"pushing {run_dir} to {repo_id} failed ({first_line(exc)}); "
                          f"the trained model is intact in {run_dir}. Retry with: {retry}") from None
    return getattr(info, "commit_url", "") or f"https://huggingface.co/{repo_id}"
