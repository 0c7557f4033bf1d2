"""Ragged rows (windows, sentences, pretraining sequences) stored flat, padded per batch, and batch orders.

Legend: N = rows, T = tokens of all rows together, B = rows in a batch, L = padded length.

Every dataset a model runs over (reader windows, classification rows, pretraining sequences) keeps its
per-token arrays concatenated and cut by `row_splits`, so nothing is padded until a batch is made, and a
batch is padded only to its own longest row (dynamic padding). Worked example: rows of 3 and 1 tokens,
row_splits [0, 3, 4]; `pad([1, 0])` -> L = 3, attention_mask [[1, 0, 0], [1, 1, 1]].
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

PAD_ID = None  # in `Ragged.TOKEN_FIELDS`: pad with the tokenizer's pad id


@dataclass(frozen=True)
class Ragged:
    """Base of the ragged containers: one `pad` for all of them.

    A subclass declares its per-token fields in `TOKEN_FIELDS` ({field: (batch key, pad value, dtype)}; pad
    value `PAD_ID` means the pad id given to `pad`, True/False fill masks; dtype None keeps the field's) and
    its per-row fields in `ROW_FIELDS` ({field: batch key}, made int64); it must have a `row_splits` field
    ([N + 1] int64).
    """

    TOKEN_FIELDS: ClassVar[dict[str, tuple[str, object, object]]] = {}
    ROW_FIELDS: ClassVar[dict[str, str]] = {}

    def __len__(self) -> int:
        return len(self.row_splits) - 1

    @property
    def lengths(self) -> np.ndarray:
        """[N] tokens per row."""
        return np.diff(self.row_splits)

    def pad(self, rows, pad_id: int, multiple_of: int = 1) -> dict[str, np.ndarray]:
        """Rows `rows` padded on the right to the longest of them.

        Returns:
            {batch key: [B, L, ...] per-token array, or [B] per-row array}, plus attention_mask [B, L] and
            rows [B] (the row indices).
        """
        rows = np.asarray(rows)
        slot, real = padded_slots(self.row_splits, rows, multiple_of)
        out = {}
        for name, (key, fill, dtype) in self.TOKEN_FIELDS.items():
            values = getattr(self, name)[slot]
            mask = real.reshape(real.shape + (1,) * (values.ndim - 2))
            out[key] = np.where(mask, values, pad_id if fill is PAD_ID else fill)
            if dtype is not None:
                out[key] = out[key].astype(dtype)
        for name, key in self.ROW_FIELDS.items():
            out[key] = getattr(self, name)[rows].astype(np.int64)
        out["attention_mask"] = real.astype(np.int64)
        out["rows"] = rows
        return out

    def take(self, n: int):
        """The first `n` rows (a copy of this container that stops after row n)."""
        row_fields = {name: getattr(self, name)[:n] for name in self.ROW_FIELDS}
        return dataclasses.replace(self, row_splits=self.row_splits[: n + 1], **row_fields)


def padded_slots(row_splits: np.ndarray, rows: np.ndarray, multiple_of: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Dynamic padding of ragged rows: ([B, L] index of each slot into the flat per-token arrays, 0 at
    padding; [B, L] bool, True where the slot is real), L = the longest row rounded up to `multiple_of`."""
    lengths = np.diff(row_splits)[rows]
    width = int(-(-lengths.max() // multiple_of) * multiple_of)
    real = np.arange(width)[None, :] < lengths[:, None]
    return np.where(real, row_splits[rows][:, None] + np.arange(width)[None, :], 0), real


def question_batches(example_index: np.ndarray, lengths: np.ndarray, max_windows: int) -> list[np.ndarray]:
    """Batches of whole questions for prediction: every window of a question lands in the same batch.

    Questions are ordered by their longest window so padding stays small; a batch closes before it
    would pass `max_windows` (a single question with more windows gets a batch of its own).
    """
    bounds = np.flatnonzero(np.r_[True, example_index[1:] != example_index[:-1], True])
    groups = [np.arange(bounds[i], bounds[i + 1]) for i in range(len(bounds) - 1)]
    groups.sort(key=lambda g: int(lengths[g].max()))
    batches, current, size = [], [], 0
    for g in groups:
        if current and size + len(g) > max_windows:
            batches.append(np.concatenate(current))
            current, size = [], 0
        current.append(g)
        size += len(g)
    if current:
        batches.append(np.concatenate(current))
    return batches


def sorted_batches(lengths: np.ndarray, batch_size: int) -> list[np.ndarray]:
    """Batches of row indices in length order (inference: the least padding), each up to `batch_size`, the
    longest batch first.

    Longest first because `spanqa.memory` keeps freed memory in the heap: in ascending order every batch needs
    a little more than the freed blocks of the one before, so the heap grew by a batch's activations each
    time (the teacher-logit cache of full SQuAD, 88,524 windows: killed for memory at 24 GB of a 24 GB
    machine). The first batch now sets the peak and every later one fits in what it freed.
    Worked example: lengths [5, 1, 4, 2, 3], size 2 -> [[0, 2], [4, 3], [1]] (rows of lengths 5 4, 3 2, 1)."""
    order = np.argsort(-np.asarray(lengths), kind="stable")
    return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
