"""Exponential moving average of the weights (`--ema-decay`), as BiDAF trains: evaluate and save the average.

After every optimizer step each trainable weight's shadow moves towards it:
    shadow = d * shadow + (1 - d) * w,   d = min(decay, (1 + n) / (10 + n)) at update n
The warm-up of d (TensorFlow's `num_updates` rule) keeps the average of a short run from clinging to the
initial weights. Evaluation runs with the shadows swapped in; the saved model is the average.
"""

from __future__ import annotations

import contextlib

import torch

from spanqa.errors import SpanqaError


class EMA:
    """Shadows of a model's trainable weights."""

    def __init__(self, model: torch.nn.Module, decay: float) -> None:
        self.decay, self.updates = decay, 0
        self.names = [n for n, p in model.named_parameters() if p.requires_grad]
        self.shadow = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}

    def _params(self, model) -> list[torch.Tensor]:
        named = dict(model.named_parameters())
        return [named[n] for n in self.names]

    @torch.no_grad()
    def update(self, model: torch.nn.Module) -> None:
        self.updates += 1
        d = min(self.decay, (1 + self.updates) / (10 + self.updates))
        torch._foreach_lerp_(list(self.shadow.values()), [p.detach() for p in self._params(model)], 1 - d)

    @torch.no_grad()
    def copy_to(self, model: torch.nn.Module) -> None:
        """Put the averages into the model's weights (for good: the final model)."""
        for p, s in zip(self._params(model), self.shadow.values()):
            p.copy_(s)

    @contextlib.contextmanager
    def applied(self, model: torch.nn.Module):
        """The averages in the model's weights for the block; the training weights restored after it."""
        params = self._params(model)
        saved = [p.detach().clone() for p in params]
        self.copy_to(model)
        try:
            yield model
        finally:
            with torch.no_grad():
                for p, s in zip(params, saved):
                    p.copy_(s)

    def state_dict(self) -> dict[str, torch.Tensor]:
        """The shadows by parameter name (a checkpoint's `ema.safetensors`), plus the update count."""
        return {**{n: s.contiguous() for n, s in self.shadow.items()}, "__updates__": torch.tensor([self.updates])}

    def load_state_dict(self, state: dict[str, torch.Tensor], where: str = "the moving average") -> None:
        """Raises: SpanqaError naming the weights `state` lacks or has beyond this model's trainable ones."""
        self.updates = int(state.pop("__updates__", torch.tensor([0])).item())
        missing, unexpected = sorted(set(self.names) - set(state)), sorted(set(state) - set(self.names))
        if missing or unexpected:
            raise SpanqaError(f"{where}: does not fit the model (missing: {', '.join(missing[:5]) or 'none'}; "
                              f"unexpected: {', '.join(unexpected[:5]) or 'none'}).")
        for n in self.names:
            self.shadow[n].copy_(state[n])
