"""Checkpoints: written atomically, verified before they are trusted, the last K kept, enough state to resume
exactly, and no pickle that can run code.

A checkpoint folder `checkpoint-<step>` holds the model (safetensors; with `--ema-decay` also the averaged
weights, `ema.safetensors`), optimizer, scheduler and grad scaler states, every process's RNG states, the train
state (step, log history, best metric), the resolved settings and, written last, `spanqa_checkpoint.json`
(`CheckpointManifest`: every other file's size and sha256). It is written under a temporary name and renamed
into place, so a kill during the write leaves the previous checkpoint as the latest; the manifest catches what
renaming cannot (a copy cut short, a disk that filled under another tool, a file edited since).

The states are tensors and plain Python values only (the RNG states are converted to lists and tensors), so
they load with `torch.load(weights_only=True)`, whose unpickler builds nothing but those: a planted pickle is
refused, never run. Weights load strictly: a missing or unexpected tensor is an error that names it.
"""


from __future__ import annotations

import json
import logging
import os
import random
import re
import shutil
from pathlib import Path

import numpy as np
import torch

from spanqa.artifacts import RUN_FILE, WEIGHTS_FILE, CheckpointManifest
from spanqa.errors import SpanqaError
from spanqa.files import describe_files, file_mode, file_problems, folder_bytes, out_of_space, write_failed
from spanqa.models.hub import quiet_transformers
from spanqa.models.pickles import load_state

log = logging.getLogger(__name__)
CHECKPOINT = re.compile(r"^checkpoint-(\d+)$")
TMP_PREFIX = ".tmp-checkpoint-"
EMA_FILE = "ema.safetensors"  # the moving average of the trainable weights (`--ema-decay`)
STATE_FILE = "train_state.json"
RNG_FILE = "rng_states.pt"


def rng_state() -> dict:
    """This process's RNG states (Python, NumPy, torch CPU and CUDA) as tensors, lists and numbers: what
    `torch.load(weights_only=True)` reads back."""
    version, words, gauss = random.getstate()
    name, keys, pos, has_gauss, cached = np.random.get_state()
    state = {"python": [version, list(words), gauss],
             "numpy": [name, torch.from_numpy(keys.astype(np.int64)), int(pos), int(has_gauss), float(cached)],
             "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    version, words, gauss = state["python"]
    random.setstate((version, tuple(words), gauss))
    name, keys, pos, has_gauss, cached = state["numpy"]
    keys = keys.numpy() if isinstance(keys, torch.Tensor) else np.asarray(keys)
    np.random.set_state((name, keys.astype(np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def list_checkpoints(output_dir: str | Path) -> list[Path]:
    """Checkpoint folders in `output_dir` (verified or not), oldest first."""
    root = Path(output_dir)
    if not root.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in root.iterdir() if (m := CHECKPOINT.match(p.name)) and p.is_dir()]
    return [p for _, p in sorted(found)]


def checkpoint_problem(path: Path) -> str:
    """Why the checkpoint at `path` cannot be trusted ("" when its manifest is there and every file matches)."""
    try:
        manifest = CheckpointManifest.load(path)
    except SpanqaError as exc:
        return f"its manifest is unreadable ({exc})"
    if manifest is None:
        return f"no {CheckpointManifest.FILE} (its save never finished, or an older spanqa wrote it)"
    problems = file_problems(path, manifest.files)
    return "; ".join(problems)


def latest_checkpoint(output_dir: Path) -> Path:
    """The newest checkpoint that verifies; each newer one skipped is logged with why.

    Raises:
        SpanqaError: no checkpoint verifies (each is named with its problem).
    """
    skipped = []
    for path in reversed(list_checkpoints(output_dir)):
        problem = checkpoint_problem(path)
        if not problem:
            for name, why in skipped:
                log.warning("skipped %s: %s", name, why)
            return path
        skipped.append((path.name, problem))
    if not skipped:
        raise SpanqaError(f"--resume: {output_dir} has no checkpoint-* folder to resume from.")
    raise SpanqaError(f"--resume: no checkpoint in {output_dir} verifies: " + "; ".join(f"{n}: {w}" for n, w in skipped)
                      + ". Start again with --overwrite-output-dir (or another --output-dir).")


def save_checkpoint(
    output_dir: Path, step: int, model, optimizer, scheduler, scaler, train_state: dict, settings: dict,
    rng_states: list[dict], keep: int, protect: str | None = None, ema=None,
) -> Path:
    """Write `checkpoint-<step>` atomically (its manifest last), then drop the oldest beyond `keep` (never
    `protect`).

    Raises:
        SpanqaError: the write failed (a full disk, a quota): the partial folder is removed, the previous
            checkpoints are untouched, and the message says how much space a checkpoint needs.
    """
    final = output_dir / f"checkpoint-{step}"
    for stale in output_dir.glob(TMP_PREFIX + "*"):
        shutil.rmtree(stale, ignore_errors=True)  # a save a kill interrupted (one process saves)
    tmp = output_dir / f"{TMP_PREFIX}{step}-{os.getpid()}"
    try:
        _write_states(tmp, model, optimizer, scheduler, scaler, train_state, settings, rng_states, ema)
        CheckpointManifest(step=step, files=describe_files(tmp)).save(tmp)
        mode = file_mode()
        for f in tmp.iterdir():
            os.chmod(f, mode)  # the umask's mode, whatever the writing library left
            with open(f, "rb") as fh:
                os.fsync(fh.fileno())
        _fsync_dir(tmp)
    except Exception as exc:  # torch and safetensors report a full disk as RuntimeError / SafetensorError
        written = folder_bytes(tmp)
        shutil.rmtree(tmp, ignore_errors=True)
        needs = _checkpoint_bytes(output_dir, model, written)
        if not isinstance(exc, OSError) and not out_of_space(exc, output_dir, needs):
            raise
        raise write_failed(exc, final, needs) from None
    if final.exists():
        shutil.rmtree(final)
    os.replace(tmp, final)
    _fsync_dir(output_dir)
    for old in list_checkpoints(output_dir)[:-keep]:
        if old.name != protect:
            shutil.rmtree(old, ignore_errors=True)
    return final


def _write_states(tmp: Path, model, optimizer, scheduler, scaler, train_state, settings, rng_states, ema) -> None:
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
    torch.save(rng_states, tmp / RNG_FILE)
    (tmp / STATE_FILE).write_text(json.dumps(train_state, indent=1))
    (tmp / RUN_FILE).write_text(json.dumps(settings, indent=1))


def _checkpoint_bytes(output_dir: Path, model, written: int) -> int:
    """About what one checkpoint takes: the newest one's size, else the weights and two Adam moments."""
    existing = list_checkpoints(output_dir)
    if existing:
        return folder_bytes(existing[-1])
    return max(written, 3 * sum(p.numel() * p.element_size() for p in model.parameters()))


def load_checkpoint(path: Path, model, optimizer, scheduler, scaler, ema=None) -> tuple[dict, list[dict]]:
    """Restore states in place from a verified checkpoint; returns (train_state, every process's RNG states).

    Raises:
        SpanqaError: a state holds anything but tensors and plain values (refused unread), or the weights miss
            or add a tensor (named).
    """
    from safetensors.torch import load_file

    load_weights(model, load_file(str(path / WEIGHTS_FILE)), path / WEIGHTS_FILE)
    if ema is not None:
        ema.load_state_dict(load_file(str(path / EMA_FILE)), path / EMA_FILE)
    optimizer.load_state_dict(load_state(path / "optimizer.pt"))
    scheduler.load_state_dict(load_state(path / "scheduler.pt"))
    if scaler is not None and (path / "scaler.pt").exists():
        scaler.load_state_dict(load_state(path / "scaler.pt"))
    rng = load_state(path / RNG_FILE)
    return json.loads((path / STATE_FILE).read_text()), rng


def load_weights(model: torch.nn.Module, weights: dict, where: Path | str, expected: list[str] | None = None) -> None:
    """Load `weights` into `model` strictly: every tensor the model has must be there (but for those tied to
    one that is, which safetensors stores once), and nothing else. `expected` narrows "every tensor" to
    those names (an `--ema-decay` average holds the trainable weights only).

    Raises:
        SpanqaError: naming the missing and unexpected tensors.
    """
    weights = {k: v for k, v in weights.items() if k != "__updates__"}  # the EMA's update count is not a weight
    result = model.load_state_dict(weights, strict=False)
    ptr = {name: t.data_ptr() for name, t in model.state_dict(keep_vars=True).items()}
    loaded = {ptr[k] for k in weights if k in ptr}
    wanted = result.missing_keys if expected is None else [k for k in expected if k not in weights]
    missing = [k for k in wanted if ptr.get(k) not in loaded]
    unexpected = result.unexpected_keys
    if missing or unexpected:
        parts = [f"{what} {len(keys)} tensor(s): {', '.join(keys[:5])}{' ...' if len(keys) > 5 else ''}"
                 for what, keys in (("missing", missing), ("unexpected", unexpected)) if keys]
        raise SpanqaError(f"{where}: does not fit the model ({'; '.join(parts)}); it was saved from another "
                          "model, or edited.")


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
