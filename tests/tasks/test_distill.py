"""Distillation: the KD loss by hand, its T^2 scaling, student layers, and a tiny end-to-end run."""


import numpy as np
import pytest
import torch
from conftest import FIXTURES

from spanqa.cli import main
from spanqa.errors import SpanqaError
from spanqa.tasks.distill import DistillConfig, distill_loss, kd_loss, shrink_layers

V1 = str(FIXTURES / "squad-v1.1-dev-fixture.json")


def test_kd_loss_worked_example():
    # teacher [2, 0], student [0, 0], T = 1: KL = 0.881 ln(0.881/0.5) + 0.119 ln(0.119/0.5)
    p = torch.softmax(torch.tensor([2.0, 0.0]), 0)
    want = float((p * (p / 0.5).log()).sum())
    got = kd_loss(torch.tensor([[0.0, 0.0]]), torch.tensor([[2.0, 0.0]]), 1.0)
    assert got.item() == pytest.approx(want, abs=1e-6) and want == pytest.approx(0.3278, abs=1e-4)


def test_kd_loss_is_zero_when_student_equals_teacher_and_ignores_padding():
    x = torch.randn(3, 9)
    assert torch.allclose(kd_loss(x, x.clone(), 1.5), torch.zeros(3), atol=1e-6)
    mask = torch.ones(3, 9, dtype=torch.long)
    mask[:, 6:] = 0
    y = x.clone()
    y[:, 6:] = 100.0  # garbage at padding must not matter
    assert torch.allclose(kd_loss(x, y, 1.5, mask), torch.zeros(3), atol=1e-6)


def test_soft_loss_gradient_scale_follows_t_squared():
    """d/ds of T^2 KL(softmax(t/T) || softmax(s/T)) = T (q - p): for large T it scales as T^2 * (1/T^2)."""
    torch.manual_seed(0)
    t = torch.randn(1, 7)
    grads = {}
    for temp in (1.0, 2.0, 4.0):
        s = torch.zeros(1, 7, requires_grad=True)
        kd_loss(s, t, temp).sum().backward()
        p, q = torch.softmax(t / temp, -1), torch.softmax(s.detach() / temp, -1)
        assert torch.allclose(s.grad, temp * (q - p), atol=1e-6)  # the closed form
        grads[temp] = s.grad.norm().item()
    # without the T^2 factor the gradient would shrink as 1/T; with it, T * (q - p) stays O(1) as
    # (q - p) ~ 1/T for large T: the ratio of norms stays near 1
    assert 0.5 < grads[4.0] / grads[2.0] < 1.5


def test_distill_loss_mixes_soft_and_hard_by_weight():
    torch.manual_seed(1)
    s, e, ts, te = (torch.randn(2, 6) for _ in range(4))
    sp, ep = torch.tensor([1, 2]), torch.tensor([3, 2])
    soft = (kd_loss(s, ts, 1.5) + kd_loss(e, te, 1.5)) / 2
    from spanqa.models.reader_model import span_loss

    hard = span_loss(s, e, sp, ep)
    got = distill_loss(s, e, ts, te, sp, ep, None, 1.5, 0.75)
    assert torch.allclose(got, 0.75 * soft + 0.25 * hard)


def test_shrink_layers_keeps_evenly_spaced_layers(tiny_model):
    from spanqa.models.reader_model import load_qa_model

    from conftest import make_tiny_model, make_tokenizer

    model = load_qa_model(str(make_tiny_model(tiny_model.parent / "six", make_tokenizer("wordpiece"), layers=6)))
    layers = list(model.bert.encoder.layer)
    kept = shrink_layers(model, 3)
    assert kept == [0, 2, 5] or kept == [0, 3, 5]
    assert [id(m) for m in model.bert.encoder.layer] == [id(layers[i]) for i in kept]
    assert model.config.num_hidden_layers == 3
    with pytest.raises(SpanqaError, match="--student-layers 9"):
        shrink_layers(model, 9)


def test_config_checks():
    with pytest.raises(SpanqaError, match="--temperature"):
        DistillConfig(temperature=0)
    with pytest.raises(SpanqaError, match="--distillation-loss-weight"):
        DistillConfig(distillation_loss_weight=1.5)


def test_tiny_distillation_run_lowers_the_kl(tiny_model, tmp_path):
    """Teacher = a tiny reader trained a little; student = its first and last layer; KD lowers KL."""
    teacher = tmp_path / "teacher"
    common = ["--train-data", V1, "--max-seq-length", "128", "--doc-stride", "32", "--report-to", "none",
              "--precision", "fp32"]
    assert main(["train", "--model", str(tiny_model), "--output-dir", str(teacher), "--max-steps", "40",
                 "--learning-rate", "2e-3", *common]) == 0
    student = tmp_path / "student"
    assert main(["distill", "--teacher", str(teacher), "--student-layers", "1", "--output-dir", str(student),
                 "--num-train-epochs", "3", "--learning-rate", "2e-3", "--distillation-loss-weight", "1.0",
                 "--logging-steps", "5", *common]) == 0
    import json

    state = json.loads((student / "trainer_state.json").read_text())
    losses = [r["loss"] for r in state["log_history"] if "loss" in r]
    assert np.mean(losses[-3:]) < 0.7 * np.mean(losses[:3])  # the soft (KL) loss falls
    assert (student / "teacher_logits" / "teacher_start.npy").exists()
    assert json.loads((student / "config.json").read_text())["num_hidden_layers"] == 1


def test_weight_zero_trains_the_student_on_gold_spans_without_running_the_teacher(tiny_model, tmp_path):
    """The non-distilled baseline: the same student, the same loop, the span loss only."""
    student = tmp_path / "student"
    assert main(["distill", "--teacher", str(tiny_model), "--student-layers", "1", "--output-dir", str(student),
                 "--max-steps", "2", "--distillation-loss-weight", "0", "--train-data", V1, "--max-seq-length",
                 "128", "--doc-stride", "32", "--report-to", "none", "--precision", "fp32"]) == 0
    assert not (student / "teacher_logits").exists()
    import json

    assert json.loads((student / "config.json").read_text())["num_hidden_layers"] == 1  # the teacher, cut


def test_layer_map_follows_the_kept_layers_or_tinybert_uniform_map():
    from spanqa.tasks.distill import layer_map

    assert layer_map(3, 6, kept=[0, 2, 5]) == [0, 1, 3, 6]
    assert layer_map(3, 6) == [0, 2, 4, 6]
    assert layer_map(4, 12) == [0, 3, 6, 9, 12]


def test_hidden_loss_is_the_masked_mse_and_zero_for_equal_states():
    from spanqa.tasks.distill import hidden_loss

    s = [torch.zeros(1, 3, 2), torch.ones(1, 3, 2)]
    t = [torch.zeros(1, 3, 2), torch.zeros(1, 3, 2), torch.full((1, 3, 2), 3.0)]
    mask = torch.tensor([[1, 1, 0]])
    # layer 0 vs 0: 0; layer 1 vs teacher 2: (1 - 3)^2 = 4 on real tokens -> mean (0 + 4) / 2 = 2
    assert torch.allclose(hidden_loss(s, t, [0, 2], mask), torch.tensor([2.0]))
    assert torch.equal(hidden_loss(t, t, [0, 1, 2], mask), torch.zeros(1))


def test_hidden_state_distillation_runs_and_refuses_a_different_width(tiny_model, wordpiece, tmp_path):
    from conftest import make_tiny_model

    common = ["--train-data", V1, "--max-seq-length", "128", "--doc-stride", "32", "--report-to", "none",
              "--precision", "fp32", "--max-steps", "3", "--hidden-loss-weight", "1.0"]
    out = tmp_path / "student"
    assert main(["distill", "--teacher", str(tiny_model), "--student-layers", "1", "--output-dir", str(out), *common]) == 0
    import json

    assert json.loads((out / "config.json").read_text())["num_hidden_layers"] == 1
    assert not (out / "teacher_logits").exists()  # the teacher ran live, for its hidden states
    narrow = make_tiny_model(tmp_path / "narrow", wordpiece, layers=1, hidden=16)
    assert main(["distill", "--teacher", str(tiny_model), "--model", str(narrow), "--output-dir",
                 str(tmp_path / "s2"), *common]) == 2
