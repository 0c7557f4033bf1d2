"""Known precision and attention hazards of encoder families, and what spanqa does about each.

`guard_family(model, max_seq_length)` applies the fixes to a loaded model, for training and for inference
alike, and logs each applied fix once per process. The table (`HAZARDS`) is what the README shows.

Worked example: BigBird with block_size 64 and 3 random blocks has a block-sparse minimum of 704 tokens; a
reader with 384-token windows runs full attention from the first batch, and its saved config says
`original_full`. With 4096-token windows, a batch whose longest window has 300 tokens is padded to 768.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import torch

log = logging.getLogger(__name__)
_logged: set[str] = set()


@dataclass(frozen=True)
class Hazard:
    family: str  # config.model_type
    hazard: str
    fix: str


HAZARDS = (
    Hazard("big_bird", "block-sparse attention needs sequences longer than (5 + 2 x num_random_blocks) x block_size "
           "tokens; on a shorter batch transformers switches the model to full attention for the rest of the process, "
           "so the attention used depends on the first batch while the config still says block_sparse",
           "windows that cannot be longer than that: full attention, set at load and written to the saved config; "
           "longer windows: block-sparse, every batch padded past that length (logits cut back)"),
    Hazard("big_bird", "block-sparse attention fails under bf16 autocast (scatter(): Expected self.dtype to be equal "
           "to src.dtype)", "block-sparse attention layers run in fp32 inside autocast; bf16 weights (CPU inference) "
           "run as they are"),
)


def guard_family(model: torch.nn.Module, max_seq_length: int) -> list[str]:
    """Apply the fixes of `model`'s family for windows of up to `max_seq_length` tokens; returns what was done
    (each also logged once per process). Applying them twice changes nothing."""
    config = getattr(model, "config", None)
    if getattr(config, "model_type", "") != "big_bird" or getattr(model, "_spanqa_guarded", False):
        return []
    done = [_bigbird_attention_type(model, max_seq_length)]
    if config.attention_type == "block_sparse":
        done.append(_bigbird_sparse_in_fp32(model))
    model._spanqa_guarded = True
    for line in done:
        if line not in _logged:
            _logged.add(line)
            log.info("%s", line)
    return done


def block_sparse_minimum(config) -> int:
    """The longest sequence BigBird's block-sparse attention cannot take (transformers' max_tokens_to_attend)."""
    return (5 + 2 * config.num_random_blocks) * config.block_size


def _bigbird_attention_type(model, max_seq_length: int) -> str:
    config, encoder = model.config, model.base_model
    minimum = block_sparse_minimum(config)
    if config.attention_type == "block_sparse" and max_seq_length <= minimum:
        encoder.set_attention_type("original_full")
        config.attention_type = "original_full"
        return (f"BigBird: windows of {max_seq_length} tokens are within block-sparse attention's minimum of {minimum} "
                "(block_size x (5 + 2 x num_random_blocks)): full attention, set now and saved in the config")
    if config.attention_type == "original_full":
        return "BigBird: full attention, as its config says"
    width = (minimum // config.block_size + 1) * config.block_size
    model.register_forward_pre_hook(_pad_to(width, config.pad_token_id or 0), with_kwargs=True)
    model.register_forward_hook(_cut_logits, with_kwargs=True)
    return (f"BigBird: block-sparse attention for windows up to {max_seq_length} tokens; batches shorter than "
            f"{width} tokens are padded to {width} so it stays block-sparse")


def _pad_to(width: int, pad_id: int):
    def hook(module, args, kwargs):
        ids = kwargs.get("input_ids")
        if ids is None or ids.shape[1] >= width:
            return None
        extra = width - ids.shape[1]
        module._spanqa_length = ids.shape[1]
        for name, value in (("input_ids", pad_id), ("attention_mask", 0), ("token_type_ids", 0)):
            if kwargs.get(name) is not None:
                kwargs[name] = torch.nn.functional.pad(kwargs[name], (0, extra), value=value)
        return args, kwargs

    return hook


def _cut_logits(module, args, kwargs, output):
    length = module.__dict__.pop("_spanqa_length", None)
    if length is None:
        return None
    output.start_logits = output.start_logits[:, :length]
    output.end_logits = output.end_logits[:, :length]
    return output


def _bigbird_sparse_in_fp32(model) -> str:
    layers = [m for m in model.modules() if type(m).__name__ == "BigBirdBlockSparseAttention"]
    for layer in layers:
        layer.forward = _fp32_forward(layer.forward, layer)
    return f"BigBird: {len(layers)} block-sparse attention layers run in fp32 under bf16/fp16 autocast"


def _fp32_forward(forward, layer):
    def run(hidden_states, *args, **kwargs):
        if not torch.is_autocast_enabled(hidden_states.device.type):
            return forward(hidden_states, *args, **kwargs)
        with torch.autocast(hidden_states.device.type, enabled=False):
            return forward(hidden_states.to(layer.query.weight.dtype), *args, **kwargs)

    return run
