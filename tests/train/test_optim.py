"""Optimisers and schedules against their formulas."""

import math

import pytest
import torch

from spanqa.train.optim import Lamb, StepPlan, build_optimizer, build_schedule, param_groups


def lamb_reference(w, grads, lr, b1, b2, eps, wd, bias_correction):
    """LAMB written out with plain tensors, one step per gradient."""
    m = torch.zeros_like(w)
    v = torch.zeros_like(w)
    for t, g in enumerate(grads, start=1):
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g * g
        m_hat = m / (1 - b1**t) if bias_correction else m
        v_hat = v / (1 - b2**t) if bias_correction else v
        u = m_hat / (v_hat.sqrt() + eps) + wd * w
        ratio = w.norm() / u.norm() if w.norm() > 0 and u.norm() > 0 else torch.tensor(1.0)
        w = w - lr * ratio * u
    return w


@pytest.mark.parametrize("bias_correction", [True, False])
@pytest.mark.parametrize("wd", [0.0, 0.01])
def test_lamb_matches_its_update_formula(bias_correction, wd):
    torch.manual_seed(0)
    w0 = torch.randn(5, 7, dtype=torch.float64)
    grads = [torch.randn(5, 7, dtype=torch.float64) for _ in range(4)]
    p = torch.nn.Parameter(w0.clone())
    opt = Lamb([p], lr=0.01, betas=(0.9, 0.999), eps=1e-6, weight_decay=wd, bias_correction=bias_correction)
    for g in grads:
        p.grad = g.clone()
        opt.step()
    want = lamb_reference(w0, grads, 0.01, 0.9, 0.999, 1e-6, wd, bias_correction)
    assert torch.allclose(p.detach(), want, atol=1e-12)


def test_lamb_trust_ratio_is_one_for_zero_weights():
    p = torch.nn.Parameter(torch.zeros(3))
    p.grad = torch.ones(3)
    Lamb([p], lr=0.1, bias_correction=True).step()
    assert torch.allclose(p.detach(), torch.full((3,), -0.1), atol=1e-5)  # Adam step of size lr


def test_no_weight_decay_on_biases_and_layernorm():
    from transformers import BertConfig, BertModel

    model = BertModel(BertConfig(hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32))
    decay, no_decay = param_groups(model, 0.01)
    names = {id(p): n for n, p in model.named_parameters()}
    assert all("bias" in names[id(p)] or "LayerNorm" in names[id(p)] for p in no_decay["params"])
    assert all(not names[id(p)].endswith("bias") for p in decay["params"]) and decay["weight_decay"] == 0.01
    assert isinstance(build_optimizer(model, "lamb", 1e-3, 0.01, (0.9, 0.999), 1e-6), Lamb)


@pytest.mark.parametrize("kind", ["linear", "cosine", "constant"])
def test_schedules_warm_up_linearly_then_decay(kind):
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    sched = build_schedule(opt, kind, StepPlan(total=100, warmup_ratio=0.1))
    lrs = []
    for _ in range(100):
        lrs.append(sched.get_last_lr()[0])
        opt.step()
        sched.step()
    assert lrs[0] == 0.0 and lrs[5] == pytest.approx(0.5) and lrs[10] == pytest.approx(1.0)
    if kind == "linear":
        assert lrs[55] == pytest.approx(0.5)
    elif kind == "cosine":
        assert lrs[55] == pytest.approx(0.5 * (1 + math.cos(math.pi * 0.5)))
    else:
        assert lrs[99] == 1.0


def test_a_shortened_plan_moves_warmup_and_decay_with_it():
    """--max-time shortens the plan mid-run: the schedule then decays to 0 at the new end."""
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    plan = StepPlan(total=100, warmup_ratio=0.1)
    sched = build_schedule(opt, "linear", plan)
    for _ in range(12):
        opt.step()
        sched.step()
    plan.total = 40  # now 4 warmup steps, decay over 36
    opt.step()
    sched.step()
    assert sched.get_last_lr()[0] == pytest.approx(1 - (13 - 4) / 36)
    for _ in range(27):
        opt.step()
        sched.step()
    assert sched.get_last_lr()[0] == pytest.approx(0.0)
