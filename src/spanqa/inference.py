"""Running a model over ragged data batch by batch, in eval mode: the one loop every evaluation shares.

`run_batches` drives reader prediction (`Reader.predict`), classification and pretraining evaluation and
the distillation teacher's pass; `predict_windows` adds decoding for readers. Memory stays flat: each
batch is padded, run and handed back before the next is made.
"""

from __future__ import annotations

import contextlib
from typing import Callable, Iterable, Iterator

import numpy as np
import torch

from spanqa.batching import Ragged, question_batches
from spanqa.config import DecodeConfig
from spanqa.decode import Prediction, decode
from spanqa.features import Features
from spanqa.models.reader_model import model_inputs
from spanqa.precision import autocast


@contextlib.contextmanager
def evaluating(model):
    """Eval mode for the block (dropout off), the model's own mode restored after it."""
    was_training = model.training
    model.eval()
    try:
        yield model
    finally:
        model.train(was_training)


def model_device(model) -> torch.device:
    """Where a model's inputs go (a torch module's parameters, or an ONNX session's CPU)."""
    if hasattr(model, "parameters"):
        return next(model.parameters()).device
    return getattr(model, "device", torch.device("cpu"))


@torch.inference_mode()
def run_batches(
    model, data: Ragged, batches: Iterable[np.ndarray], pad_id: int, precision: str, forward: Callable,
) -> Iterator[tuple[dict, object]]:
    """Yield (padded batch, forward(model, batch)) for each batch of row indices.

    The model runs in eval mode under inference mode and `precision`'s autocast; its mode is restored after.

    Args:
        data: a ragged container (`Features`, classification rows, pretraining sequences).
        batches: row indices per batch, e.g. `sorted_batches(data.lengths, 64)`.
        forward: forward(model, batch) -> whatever the caller collects.
    """
    device = model_device(model)
    with evaluating(model):
        for rows in batches:
            batch = data.pad(rows, pad_id)
            with autocast(precision, device):
                out = forward(model, batch)
            yield batch, out


def predict_windows(
    model, features: Features, examples: list, decode_config: DecodeConfig, allow_null: bool,
    input_names: list[str], pad_id: int, batch_size: int = 64, precision: str = "fp32", progress=None,
    window_probabilities: bool = False,
) -> Iterator[Prediction]:
    """Yield a `Prediction` per question, a batch of whole questions at a time (the Reader's engine).

    Args:
        features: windows of `examples` (from `build_features`).
        input_names: the tensors the model takes (`tokenization.input_names_for`).
        batch_size: windows per forward pass.
        progress: optional callable(n_windows_done) for progress bars.
        window_probabilities: also compute the pipeline-style window probabilities (`spanqa.decode`).
    """
    device = model_device(model)

    def span_logits(m, batch):
        out = m(**model_inputs(batch, input_names, device))
        return out.start_logits.float().cpu().numpy(), out.end_logits.float().cpu().numpy()  # [B, L] each

    # batches hold whole questions (all of a question's windows together), so each batch decodes to finished
    # answers and nothing is kept across batches; they are length-sorted, so padding stays short
    batches = question_batches(features.example_index, features.lengths, batch_size)
    for batch, (start, end) in run_batches(model, features, batches, pad_id, precision, span_logits):
        if progress is not None:
            progress(len(batch["rows"]))
        yield from decode(start, end, batch, features.example_index[batch["rows"]], examples, decode_config, allow_null,
                          window_probabilities)
