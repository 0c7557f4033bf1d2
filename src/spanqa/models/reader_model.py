"""Encoder readers: any Hugging Face encoder with a start/end span head, and the span loss.

Legend: B = batch, L = sequence length.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from spanqa.models.hub import load_model


def load_qa_model(name: str, config_overrides: dict | None = None) -> torch.nn.Module:
    """`AutoModelForQuestionAnswering` from a folder, alias or hub name; a new span head if it has none.

    Raises:
        SpanqaError: the model cannot be found (offline and not cached) or is not a known architecture.
    """
    from spanqa.models.recurrent import register

    register()  # recurrent reader folders (BiDAF, LSTM baseline) load through the same Auto class
    return load_model("AutoModelForQuestionAnswering", name, "a question-answering model", config_overrides)


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
