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
    model, info = load_model("AutoModelForQuestionAnswering", name, "a question-answering model", config_overrides,
                             output_loading_info=True)
    model.spanqa_untrained_head = untrained_head(model, info.get("missing_keys", ()))
    return model


def span_head(model: torch.nn.Module) -> tuple[str, torch.nn.Linear] | None:
    """(dotted name, layer) of the layer that makes the start/end logits: the last Linear with 2 outputs
    (`qa_outputs` for most families, ModernBERT's `classifier`, BigBird's `qa_classifier.qa_outputs`)."""
    found = None
    for name, module in model.named_modules():
        if isinstance(module, torch.nn.Linear) and module.out_features == 2:
            found = (name, module)
    return found


def untrained_head(model: torch.nn.Module, new_weights=()) -> str:
    """The span head's name when it is among `new_weights` (initialised at load: the folder is an encoder, not a
    reader); "" otherwise. Without `new_weights`: what `load_qa_model` found (`spanqa_untrained_head`)."""
    if not new_weights:
        return getattr(model, "spanqa_untrained_head", "")
    head = span_head(model)
    return head[0] if head is not None and any(k.startswith(head[0] + ".") for k in new_weights) else ""


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
