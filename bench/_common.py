"""Shared helpers for the benchmarks: data paths and the one-JSON-line report."""

from __future__ import annotations

import json
import time
from pathlib import Path

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
SQUAD_V1_DEV = SHARED_DATA / "squad-v1.1" / "dev-v1.1.recon.json.gz"
SQUAD_V1_TRAIN = SHARED_DATA / "squad-v1.1" / "train-v1.1.recon.json.gz"
SQUAD_V2_DEV = SHARED_DATA / "squad-v2.0" / "dev-v2.0.recon.json.gz"


def best_of(fn, repeats: int = 3):
    """(fastest wall time in seconds, last result) over `repeats` runs of `fn()`."""
    best, result = float("inf"), None
    for _ in range(repeats):
        t0 = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - t0)
    return best, result


def report(figures: dict) -> None:
    """Print the figures as the last line: one JSON object."""
    print(json.dumps(figures))


def spanqa_train(**settings) -> dict:
    """Run `spanqa train` in-process on SQuAD v1.1 train with minilm-l6; returns its results plus wall_s."""
    from spanqa.tasks.reader import ReaderSettings, train

    base = {"model": "minilm-l6", "train_data": str(SQUAD_V1_TRAIN), "save_steps": 0, "report_to": "none"}
    t0 = time.perf_counter()
    results = train(ReaderSettings.resolve({}, {**base, **settings}))
    results["wall_s"] = time.perf_counter() - t0
    return results
