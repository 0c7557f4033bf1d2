"""Hugging Face datasets: a hub name (`squad`, `squad_v2:validation`) or a local `save_to_disk` folder.

Rows must have the `squad` schema (see `spanqa.data.jsonl`). The hub path needs the network; a local
folder works offline, which is how the Narval-style offline clusters in the seeds use it.
"""

from __future__ import annotations

from pathlib import Path

from spanqa.data.jsonl import row_to_example
from spanqa.data.types import QADataset
from spanqa.errors import SpanqaError

SAVED_MARKERS = ("dataset_info.json", "state.json", "dataset_dict.json")


def is_saved_dataset(path: Path) -> bool:
    """True when `path` is a folder written by `Dataset.save_to_disk` or `DatasetDict.save_to_disk`."""
    return path.is_dir() and any((path / m).exists() for m in SAVED_MARKERS)


def load_saved(path: Path, split: str) -> QADataset:
    """Read a `save_to_disk` folder; a `DatasetDict` gives `split`."""
    import datasets

    try:
        ds = datasets.load_from_disk(str(path))
    except Exception as exc:  # datasets raises several types for unreadable folders
        raise SpanqaError(f"{path}: not a readable Hugging Face dataset folder ({exc}).") from None
    return _to_dataset(_pick_split(ds, split, str(path)), str(path))


def load_hub(spec: str, split: str) -> QADataset:
    """Load `NAME` or `NAME:SPLIT` from the Hugging Face hub (needs the network or a warm cache)."""
    import datasets

    name, _, named_split = spec.partition(":")
    split = named_split or split
    try:
        ds = datasets.load_dataset(name, split=split)
    except Exception as exc:
        raise SpanqaError(
            f"{spec}: not a file or folder, and loading it from the Hugging Face hub failed ({exc}). "
            "Offline? Save it with `datasets.load_dataset(...).save_to_disk(DIR)` where there is network "
            "and pass DIR."
        ) from None
    return _to_dataset(ds, f"{name}:{split}")


def _pick_split(ds, split: str, source: str):
    if not hasattr(ds, "keys"):
        return ds
    if split not in ds:
        raise SpanqaError(f"{source}: no split '{split}' (it has: {', '.join(ds.keys())}).")
    return ds[split]


def _to_dataset(ds, source: str) -> QADataset:
    missing = {"id", "question", "context"} - set(ds.column_names)
    if missing:
        raise SpanqaError(f"{source}: rows lack column(s) {sorted(missing)}; expected the `squad` schema.")
    columns = {c: ds[c] for c in ds.column_names if c in ("id", "title", "question", "context", "answers")}
    rows = (dict(zip(columns, values)) for values in zip(*columns.values()))
    examples = [row_to_example(r, source, f"row {i}") for i, r in enumerate(rows)]
    return QADataset(examples, source, "hf")
