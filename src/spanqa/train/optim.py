"""Optimisers (AdamW, LAMB, Adam, AdaDelta) and learning-rate schedules with warmup.

Weight decay is never applied to biases or LayerNorm weights (as in BERT and run_qa).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch.optim.lr_scheduler import LambdaLR

NO_DECAY = ("bias", "LayerNorm.weight", "layer_norm.weight", "layernorm.weight", "norm.weight")


def param_groups(model: torch.nn.Module, weight_decay: float) -> list[dict]:
    """Two groups: decayed weights, and biases/norm weights with no decay."""
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if p.requires_grad:
            (no_decay if name.endswith(NO_DECAY) or p.ndim < 2 else decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


class Lamb(torch.optim.Optimizer):
    """LAMB (You et al. 2019): Adam's direction, rescaled per tensor by the trust ratio ||w|| / ||update||.

    For each tensor w with gradient g at step t:
        m = b1 m + (1 - b1) g;  v = b2 v + (1 - b2) g^2
        m_hat = m / (1 - b1^t), v_hat = v / (1 - b2^t)     (only when bias_correction)
        u = m_hat / (sqrt(v_hat) + eps) + weight_decay * w
        r = ||w|| / ||u||  (1 when either norm is 0)
        w = w - lr * r * u
    """

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-6, weight_decay=0.0, bias_correction=True):
        defaults = dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay, bias_correction=bias_correction)
        super().__init__(params, defaults)

    @torch.no_grad()
    def step(self, closure=None):
        loss = closure() if closure is not None else None
        for group in self.param_groups:
            b1, b2 = group["betas"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                self._update(p, group, b1, b2)
        return loss

    def _update(self, p: torch.Tensor, group: dict, b1: float, b2: float) -> None:
        state = self.state[p]
        if not state:
            state["step"] = 0
            state["exp_avg"] = torch.zeros_like(p, dtype=torch.float32)
            state["exp_avg_sq"] = torch.zeros_like(p, dtype=torch.float32)
        state["step"] += 1
        g = p.grad.float()
        m, v = state["exp_avg"], state["exp_avg_sq"]
        m.mul_(b1).add_(g, alpha=1 - b1)
        v.mul_(b2).addcmul_(g, g, value=1 - b2)
        m_hat, v_hat = m, v
        if group["bias_correction"]:
            m_hat = m / (1 - b1 ** state["step"])
            v_hat = v / (1 - b2 ** state["step"])
        update = m_hat / (v_hat.sqrt() + group["eps"])
        if group["weight_decay"]:
            update = update + group["weight_decay"] * p.float()
        w_norm, u_norm = p.float().norm(), update.norm()
        trust = torch.where((w_norm > 0) & (u_norm > 0), w_norm / u_norm, torch.ones_like(w_norm))
        p.add_((-group["lr"] * trust * update).to(p.dtype))


def build_optimizer(model, name: str, lr: float, weight_decay: float, betas, eps: float, lamb_bias_correction=True,
                    rho: float = 0.95):
    """AdamW, LAMB, Adam or AdaDelta over `param_groups(model, weight_decay)` (Adam and AdaDelta add the decay
    to the gradient, L2 style; AdamW and LAMB decouple it)."""
    groups = param_groups(model, weight_decay)
    if name == "lamb":
        return Lamb(groups, lr=lr, betas=betas, eps=eps, bias_correction=lamb_bias_correction)
    if name == "adam":
        return torch.optim.Adam(groups, lr=lr, betas=betas, eps=eps, foreach=True)
    if name == "adadelta":
        return torch.optim.Adadelta(groups, lr=lr, rho=rho, eps=eps, foreach=True)
    return torch.optim.AdamW(groups, lr=lr, betas=betas, eps=eps, foreach=True)


@dataclass
class StepPlan:
    """How many optimizer steps a run takes, and how many of them warm up. Mutable: a time budget
    (`--max-time`) shortens it once the step time is measured, and the schedule follows."""

    total: int
    warmup_ratio: float

    @property
    def warmup(self) -> int:
        return math.ceil(self.warmup_ratio * self.total)


def build_schedule(optimizer, kind: str, plan: StepPlan) -> LambdaLR:
    """Linear warmup from 0 to the peak, then linear decay to 0, cosine decay, or constant (over `plan`)."""

    def factor(step: int) -> float:
        warmup_steps = plan.warmup
        if step < warmup_steps:
            return step / max(1, warmup_steps)
        progress = (step - warmup_steps) / max(1, plan.total - warmup_steps)
        if kind == "linear":
            return max(0.0, 1.0 - progress)
        if kind == "cosine":
            return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))
        return 1.0

    return LambdaLR(optimizer, factor)
