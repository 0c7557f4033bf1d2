"""Running a reader model over windows and decoding batch by batch (memory stays flat).

Shared by evaluation during training, `spanqa predict` and the `Reader`.
"""

from __future__ import annotations

import contextlib
from typing import Iterator

import torch

from spanqa.config import DecodeConfig
from spanqa.decode import Prediction, decode
from spanqa.features import Features
from spanqa.models.reader_model import model_inputs
from spanqa.precision import autocast
from spanqa.train.batches import eval_batches


@torch.inference_mode()
def predict_features(
    model: torch.nn.Module,
    features: Features,
    examples: list,
    decode_config: DecodeConfig,
    allow_null: bool,
    input_names: list[str],
    pad_id: int,
    batch_size: int = 64,
    precision: str = "fp32",
    progress=None,
) -> Iterator[Prediction]:
    """Yield a `Prediction` per question, a batch of whole questions at a time.

    Args:
        features: windows of `examples` (from `build_features`).
        input_names: the tensors the model takes (the tokenizer's `model_input_names`).
        batch_size: windows per forward pass.
        progress: optional callable(n_windows_done) for progress bars.
    """
    device = model_device(model)
    was_training = model.training
    if was_training:
        model.eval()
    try:
        for rows in eval_batches(features.example_index, features.lengths, batch_size):
            batch = features.pad(rows, pad_id)
            with autocast(precision, device):
                out = model(**model_inputs(batch, input_names, device))
            start = out.start_logits.float().cpu().numpy()  # [B, L]
            end = out.end_logits.float().cpu().numpy()
            if progress is not None:
                progress(len(rows))
            yield from decode(start, end, batch, features.example_index[rows], examples, decode_config, allow_null)
    finally:
        if was_training:
            model.train()


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


def input_names_for(tokenizer) -> list[str]:
    """The tensors to feed: the tokenizer's `model_input_names` (token_type_ids only where it uses them)."""
    names = list(getattr(tokenizer, "model_input_names", ["input_ids", "attention_mask"]))
    return [n for n in names if n in ("input_ids", "token_type_ids", "attention_mask")]
