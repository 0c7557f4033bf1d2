"""Hugging Face datasets: a hub name (`squad`, `squad_v2:validation`) or a local `save_to_disk` folder.

Rows must have the `squad` schema (see `spanqa.data.jsonl`). The hub path needs the network; a local
folder works offline, which is how the Narval-style offline clusters in the seeds use it.
"""

from __future__ import annotations

from pathlib import Path

from spanqa.bundle import from_bundle, hub_unavailable, not_available
from spanqa.data.jsonl import row_to_example
from spanqa.data.types import QADataset
from spanqa.errors import SpanqaError

SAVED_MARKERS = ("dataset_info.json", "state.json", "dataset_dict.json")


def is_saved_dataset(path: Path) -> bool:
    """True when `path` is a folder written by `Dataset.save_to_disk` or `DatasetDict.save_to_disk`."""
    return path.is_dir() and any((path / m).exists() for m in SAVED_MARKERS)


def load_saved(path: Path, split: str) -> QADataset:
    """Read a `save_to_disk` folder; a `DatasetDict` gives `split`."""
    return _to_dataset(open_dataset(str(path), split), str(path))


def load_hub(spec: str, split: str) -> QADataset:
    """Load `NAME` or `NAME:SPLIT` from the Hugging Face hub (needs the network or a warm cache)."""
    name, _, named_split = spec.partition(":")
    return _to_dataset(open_dataset(spec, split), f"{name}:{named_split or split}")


def open_dataset(spec: str, split: str, config: str = ""):
    """A `datasets.Dataset` from a `save_to_disk` folder (a `DatasetDict` gives `split`) or from the hub
    (`NAME` or `NAME:SPLIT`, with an optional configuration such as `sst2`): QA data, text corpora and
    classification rows all come in through here.

    Raises:
        SpanqaError: an unreadable folder, a missing split, or a hub dataset that cannot be loaded.
    """
    import datasets

    path = Path(spec).expanduser()
    if path.is_dir():
        try:
            ds = datasets.load_from_disk(str(path))
        except Exception as exc:  # datasets raises several types for unreadable folders
            raise SpanqaError(f"{path}: not a readable Hugging Face dataset folder ({exc}).") from None
        return _pick_split(ds, split, str(path))
    name, _, named_split = spec.partition(":")
    bundled = from_bundle("dataset", spec, f"{name}#{config}" if config else name)
    if bundled is not None:
        return _pick_split(datasets.load_from_disk(str(bundled)), named_split or split, str(bundled))
    why = hub_unavailable()  # then the datasets cache may still hold it
    try:
        return datasets.load_dataset(name, config or None, split=named_split or split)
    except Exception as exc:
        if why:
            raise not_available("dataset", f"{name}#{config}" if config else name,
                                f"{why}, and the datasets cache does not hold it") from None
        raise SpanqaError(
            f"{spec}: not a file or folder, and loading it from the Hugging Face hub failed ({exc}). "
            "Offline? Save it with `datasets.load_dataset(...).save_to_disk(DIR)` where there is network "
            "and pass DIR."
        ) from None


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
