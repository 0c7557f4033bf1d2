"""The moving average of the weights: its arithmetic, and that evaluation and the saved model use it."""

from __future__ import annotations

from pathlib import Path

import torch
from conftest import V1, train_args

from spanqa.cli import main
from spanqa.train.ema import EMA


def test_update_follows_the_warmed_up_decay_and_skips_frozen_weights():
    model = torch.nn.Linear(2, 1)
    model.bias.requires_grad_(False)
    ema = EMA(model, decay=0.999)
    start = model.weight.detach().clone()
    with torch.no_grad():
        model.weight.add_(1.0)
    ema.update(model)  # update 1: d = min(0.999, 2 / 11)
    d = 2 / 11
    torch.testing.assert_close(ema.shadow["weight"], d * start + (1 - d) * (start + 1))
    assert list(ema.shadow) == ["weight"]


def test_applied_swaps_the_average_in_and_restores_the_training_weights():
    model = torch.nn.Linear(2, 1)
    ema = EMA(model, decay=0.5)
    trained = model.weight.detach().clone() + 3
    with torch.no_grad():
        model.weight.copy_(trained)
    with ema.applied(model):
        torch.testing.assert_close(model.weight, ema.shadow["weight"])
        assert not torch.equal(model.weight, trained)
    torch.testing.assert_close(model.weight, trained)


def test_state_round_trip():
    model = torch.nn.Linear(2, 1)
    ema = EMA(model, decay=0.9)
    ema.update(model)
    other = EMA(torch.nn.Linear(2, 1), decay=0.9)
    other.load_state_dict(ema.state_dict())
    assert other.updates == 1 and torch.equal(other.shadow["weight"], ema.shadow["weight"])


def _weights(path: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(str(path))


def test_the_saved_model_is_the_average_that_was_evaluated(tiny_model, tmp_path):
    out = tmp_path / "run"
    assert main(train_args(tiny_model, out, "--max-steps", "6", "--ema-decay", "0.9", "--learning-rate", "1e-2",
                           "--eval-data", V1, "--max-eval-samples", "8",
                           "--precision", "fp32", "--per-device-train-batch-size", "4", "--keep-final-checkpoint")) == 0
    final, ckpt = _weights(out / "model.safetensors"), out / "checkpoint-6"
    averaged, raw = _weights(ckpt / "ema.safetensors"), _weights(ckpt / "model.safetensors")
    name = "qa_outputs.weight"
    torch.testing.assert_close(final[name], averaged[name])
    assert not torch.allclose(final[name], raw[name])


def test_resume_restores_the_average_exactly(tiny_model, tmp_path):
    import shutil

    common = ["--max-steps", "6", "--save-steps", "3", "--ema-decay", "0.9", "--learning-rate", "1e-2",
              "--precision", "fp32", "--per-device-train-batch-size", "4", "--save-total-limit", "5",
              "--keep-final-checkpoint"]
    straight = tmp_path / "straight"
    assert main(train_args(tiny_model, straight, *common)) == 0
    cut = tmp_path / "cut"
    cut.mkdir()
    shutil.copytree(straight / "checkpoint-3", cut / "checkpoint-3")
    assert main(train_args(tiny_model, cut, *common, "--resume")) == 0
    a, b = _weights(straight / "model.safetensors"), _weights(cut / "model.safetensors")
    assert all(torch.equal(a[k], b[k]) for k in a)
