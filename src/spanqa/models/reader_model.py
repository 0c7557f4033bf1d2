"""Encoder readers: any Hugging Face encoder with a start/end span head, and the span loss.

Legend: B = batch, L = sequence length.
"""

from __future__ import annotations

import contextlib

import torch
import torch.nn.functional as F

from spanqa.errors import SpanqaError
from spanqa.models.hub import resolve_model_path


@contextlib.contextmanager
def quiet_transformers():
    """Silence transformers' load report (e.g. "qa_outputs newly initialized") for expected cases."""
    import transformers

    level = transformers.logging.get_verbosity()
    bars = transformers.utils.logging.is_progress_bar_enabled()
    transformers.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    try:
        yield
    finally:
        transformers.logging.set_verbosity(level)
        if bars:
            transformers.utils.logging.enable_progress_bar()


def load_qa_model(name: str, config_overrides: dict | None = None) -> torch.nn.Module:
    """`AutoModelForQuestionAnswering` from a folder, alias or hub name; a new span head if it has none.

    Raises:
        SpanqaError: the model cannot be found (offline and not cached) or is not a known architecture.
    """
    from transformers import AutoConfig, AutoModelForQuestionAnswering

    path = resolve_model_path(name)
    try:
        config = AutoConfig.from_pretrained(path, **(config_overrides or {}))
        with quiet_transformers():
            return AutoModelForQuestionAnswering.from_pretrained(path, config=config)
    except (OSError, ValueError, KeyError) as exc:
        raise SpanqaError(
            f"{name}: could not load a question-answering model ({str(exc).strip().splitlines()[0]}). Pass a "
            "local model folder, the alias minilm-l6, or a hub name with network access."
        ) from None


def model_inputs(batch: dict, input_names: list[str], device: torch.device) -> dict[str, torch.Tensor]:
    """The tensors a model's forward takes, from a `Features.pad` batch."""
    return {k: torch.as_tensor(batch[k]).to(device, non_blocking=True) for k in input_names if k in batch}


def mask_padding(logits: torch.Tensor, attention_mask: torch.Tensor | None) -> torch.Tensor:
    """[B, L] float32 logits with padded positions at -inf, so padding width never changes a softmax."""
    logits = logits.float()
    if attention_mask is None:
        return logits
    return logits.masked_fill(attention_mask == 0, float("-inf"))


def span_loss(
    start_logits: torch.Tensor,
    end_logits: torch.Tensor,
    start_positions: torch.Tensor,
    end_positions: torch.Tensor,
    attention_mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """[B] per-window loss: mean of start and end cross-entropy (the CLS position means "no answer").

    Padded positions are excluded from the softmax: with dynamic padding the same window must give the
    same loss whatever it is batched with.

    Args:
        start_logits, end_logits: [B, L].
        start_positions, end_positions: [B] token indices.
        attention_mask: [B, L], 0 at padding.
    """
    start = F.cross_entropy(mask_padding(start_logits, attention_mask), start_positions, reduction="none")
    end = F.cross_entropy(mask_padding(end_logits, attention_mask), end_positions, reduction="none")
    return (start + end) / 2
