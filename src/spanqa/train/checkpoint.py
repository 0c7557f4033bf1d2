"""Checkpoints: written atomically, the last K kept, enough state to resume exactly.

A checkpoint folder `checkpoint-<step>` holds the model (safetensors; with `--ema-decay` also the averaged
weights, `ema.safetensors`), optimizer, scheduler and grad
scaler states, every process's RNG states, the train state (step, log history, best metric) and the
resolved settings. It is written under a temporary name and renamed into place, so a kill during the
write leaves the previous checkpoint as the latest usable one.
"""

from __future__ import annotations

import json
import os
import random
import re
import shutil
from pathlib import Path

import numpy as np
import torch

from spanqa.artifacts import RUN_FILE, WEIGHTS_FILE
from spanqa.files import file_mode
from spanqa.models.hub import quiet_transformers

CHECKPOINT = re.compile(r"^checkpoint-(\d+)$")
EMA_FILE = "ema.safetensors"  # the moving average of the trainable weights (`--ema-decay`)


def rng_state() -> dict:
    """This process's RNG states (Python, NumPy, torch CPU and CUDA)."""
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def list_checkpoints(output_dir: str | Path) -> list[Path]:
    """Complete checkpoints in `output_dir`, oldest first."""
    root = Path(output_dir)
    if not root.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in root.iterdir() if (m := CHECKPOINT.match(p.name)) and p.is_dir()]
    return [p for _, p in sorted(found)]


def save_checkpoint(
    output_dir: Path, step: int, model, optimizer, scheduler, scaler, train_state: dict, settings: dict,
    rng_states: list[dict], keep: int, protect: str | None = None, ema=None,
) -> Path:
    """Write `checkpoint-<step>` atomically, then drop the oldest beyond `keep` (never `protect`)."""
    final = output_dir / f"checkpoint-{step}"
    tmp = output_dir / f".tmp-checkpoint-{step}-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    with quiet_transformers():
        model.save_pretrained(tmp, safe_serialization=True)
    if ema is not None:
        from safetensors.torch import save_file

        save_file(ema.state_dict(), str(tmp / EMA_FILE))
    torch.save(optimizer.state_dict(), tmp / "optimizer.pt")
    torch.save(scheduler.state_dict(), tmp / "scheduler.pt")
    if scaler is not None:
        torch.save(scaler.state_dict(), tmp / "scaler.pt")
    torch.save(rng_states, tmp / "rng_states.pt")
    (tmp / "train_state.json").write_text(json.dumps(train_state, indent=1))
    (tmp / RUN_FILE).write_text(json.dumps(settings, indent=1))
    mode = file_mode()
    for f in tmp.iterdir():
        os.chmod(f, mode)  # the umask's mode, whatever the writing library left
        with open(f, "rb") as fh:
            os.fsync(fh.fileno())
    _fsync_dir(tmp)
    if final.exists():
        shutil.rmtree(final)
    os.replace(tmp, final)
    _fsync_dir(output_dir)
    for old in list_checkpoints(output_dir)[:-keep]:
        if old.name != protect:
            shutil.rmtree(old, ignore_errors=True)
    return final


def load_checkpoint(path: Path, model, optimizer, scheduler, scaler, ema=None) -> tuple[dict, list[dict]]:
    """Restore states in place; returns (train_state, every process's RNG states)."""
    from safetensors.torch import load_file

    model.load_state_dict(load_file(str(path / WEIGHTS_FILE)), strict=False)
    if ema is not None:
        ema.load_state_dict(load_file(str(path / EMA_FILE)))
    optimizer.load_state_dict(torch.load(path / "optimizer.pt", weights_only=False))
    scheduler.load_state_dict(torch.load(path / "scheduler.pt", weights_only=False))
    if scaler is not None and (path / "scaler.pt").exists():
        scaler.load_state_dict(torch.load(path / "scaler.pt", weights_only=False))
    rng = torch.load(path / "rng_states.pt", weights_only=False)
    return json.loads((path / "train_state.json").read_text()), rng


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
