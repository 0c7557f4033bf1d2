"""Torch files read without trusting them: what a checkpoint's states and a hub model's `pytorch_model.bin` are.

`torch.load(weights_only=True)` unpickles through an allowlist (tensors, containers, numbers, strings), so a
file that asks for anything else (a class, a function: what a planted pickle needs to run code) fails before
any of it is built. Every `torch.load` in spanqa goes through `load_state`.
"""

from __future__ import annotations

import pickle
from pathlib import Path

import torch

from spanqa.errors import SpanqaError, first_line


def load_state(path: Path):
    """A `torch.save`d state of tensors and plain values, on the CPU.

    Raises:
        SpanqaError: the file asks the unpickler for anything else; refused before any of it is built.
    """
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, AttributeError, EOFError) as exc:
        raise SpanqaError(f"{path}: refused: not a plain state of tensors and numbers ({first_line(exc)}); spanqa "
                          "never unpickles objects (a pickle can run code). Use a file spanqa wrote.") from None
