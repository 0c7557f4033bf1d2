"""Checkpoints: a round trip restores model, optimizer, schedule and RNG; old ones are pruned, the best kept."""

import random

import numpy as np
import torch
from transformers import BertConfig, BertForQuestionAnswering

from spanqa.train.checkpoint import list_checkpoints, load_checkpoint, rng_state, save_checkpoint, set_rng_state
from spanqa.train.optim import StepPlan, build_optimizer, build_schedule


def parts(seed: int):
    torch.manual_seed(seed)
    model = BertForQuestionAnswering(BertConfig(vocab_size=50, hidden_size=16, num_hidden_layers=1,
                                                num_attention_heads=2, intermediate_size=32))
    optimizer = build_optimizer(model, "adamw", 1e-2, 0.01, (0.9, 0.999), 1e-8)
    return model, optimizer, build_schedule(optimizer, "linear", StepPlan(10, 0.2))


def train_step(model, optimizer, scheduler):
    out = model(input_ids=torch.randint(0, 50, (2, 8)), start_positions=torch.tensor([1, 2]),
                end_positions=torch.tensor([3, 4]))
    out.loss.backward()
    optimizer.step()
    scheduler.step()
    optimizer.zero_grad()


def test_round_trip_continues_exactly_as_without_the_checkpoint(tmp_path):
    model, optimizer, scheduler = parts(0)
    for _ in range(3):
        train_step(model, optimizer, scheduler)
    save_checkpoint(tmp_path, 3, model, optimizer, scheduler, None, {"step": 3}, {"command": "train"},
                    [rng_state()], keep=2)
    train_step(model, optimizer, scheduler)
    expected = {k: v.clone() for k, v in model.state_dict().items()}
    after_python, after_numpy = random.random(), np.random.rand()

    model2, optimizer2, scheduler2 = parts(1)  # other weights: everything must come from the checkpoint
    state, rng = load_checkpoint(list_checkpoints(tmp_path)[-1], model2, optimizer2, scheduler2, None)
    set_rng_state(rng[0])
    assert state == {"step": 3} and scheduler2.last_epoch == 3
    train_step(model2, optimizer2, scheduler2)
    assert all(torch.equal(expected[k], v) for k, v in model2.state_dict().items())
    assert (random.random(), np.random.rand()) == (after_python, after_numpy)


def test_only_the_last_k_are_kept_but_never_the_protected_best(tmp_path):
    model, optimizer, scheduler = parts(0)
    for step in (10, 20, 30, 40):
        save_checkpoint(tmp_path, step, model, optimizer, scheduler, None, {"step": step}, {}, [rng_state()],
                        keep=2, protect="checkpoint-10")
    assert [p.name for p in list_checkpoints(tmp_path)] == ["checkpoint-10", "checkpoint-30", "checkpoint-40"]
    assert not list(tmp_path.glob(".tmp-*"))  # nothing half-written left behind
