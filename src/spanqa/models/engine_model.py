"""What spanqa's inference needs of a model run by another engine (ONNX Runtime, OpenVINO): called with the
usual tensors, it returns start/end logits like a transformers QA model, always in eval mode, on the CPU.

An engine that compiles kernels for each input shape and keeps them (OpenVINO's CPU plugin: ~2.5 MB for each
(rows, tokens) shape of an int8 MiniLM, up to 5,000 shapes) grows with the corpus when every batch has a shape
of its own: dynamic padding makes one per batch length. Such an engine sets `buckets`: a batch is padded up to
the next bucket shape (extra tokens masked out, extra rows copies of the batch's last row) and the logits are
cut back, so the answers are those of the unpadded batch and a corpus runs in a few dozen shapes.
Worked example: 27 windows of at most 203 tokens run as 32 x 224 and come back as 27 x 203.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import SimpleNamespace

import numpy as np
import torch


@dataclass(frozen=True)
class ShapeBuckets:
    """Batch shapes an engine runs: rows up to a power of two below `rows` and a multiple of `rows` above it
    (one question's few windows are not padded to a full batch), tokens up to a multiple of `tokens`, never past
    `max_tokens` (the longest window the reader makes, which the encoder's positions hold)."""

    rows: int = 8
    tokens: int = 32
    max_tokens: int = 0  # 0: unknown, tokens are not padded

    def shape(self, rows: int, tokens: int) -> tuple[int, int]:
        """The (rows, tokens) a batch of `rows` windows of at most `tokens` tokens runs as."""
        r = 1 << (rows - 1).bit_length() if rows < self.rows else -(-rows // self.rows) * self.rows
        t = min(-(-tokens // self.tokens) * self.tokens, self.max_tokens)
        return r, max(t, tokens)


def pad_feed(feed: dict[str, np.ndarray], rows: int, tokens: int) -> dict[str, np.ndarray]:
    """`feed`'s [B, L] arrays padded to [rows, tokens]: zeros on the right (attention_mask 0 masks them, so the
    token ids there do not matter), then copies of the last row below (real inputs: no all-masked row)."""
    out = {}
    for name, array in feed.items():
        b, length = array.shape
        array = np.pad(array, ((0, 0), (0, tokens - length)))
        out[name] = np.concatenate([array, np.repeat(array[-1:], rows - b, axis=0)]) if rows > b else array
    return out


class EngineQAModel:
    """Subclasses set `input_names` (their graph's inputs) and implement `logits(feed) -> (start, end)`; one that
    compiles per shape sets `buckets` (the Reader gives it `max_tokens`)."""

    training = False
    device = torch.device("cpu")
    input_names: list[str] = []
    buckets: ShapeBuckets | None = None

    def logits(self, feed: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:  # pragma: no cover - interface
        raise NotImplementedError

    def __call__(self, **inputs) -> SimpleNamespace:
        feed = {k: v.cpu().numpy().astype(np.int64) for k, v in inputs.items() if k in self.input_names}
        rows, tokens = next(iter(feed.values())).shape
        if self.buckets is not None:
            feed = pad_feed(feed, *self.buckets.shape(rows, tokens))
        start, end = self.logits(feed)  # [R, T] each
        return SimpleNamespace(start_logits=torch.from_numpy(np.ascontiguousarray(start[:rows, :tokens])),
                               end_logits=torch.from_numpy(np.ascontiguousarray(end[:rows, :tokens])))

    def eval(self):
        return self

    def train(self, mode: bool = True):
        return self
