"""Recipes and flags: every recipe loads; flags override; bad settings are named."""

from pathlib import Path

import pytest

from spanqa.errors import SpanqaError
from spanqa.train.config import load_recipe, resolve

RECIPES = sorted((Path(__file__).parents[2] / "recipes").glob("*.yaml"))


@pytest.mark.parametrize("path", RECIPES, ids=lambda p: p.name)
def test_every_recipe_loads_and_resolves(path):
    extra = _extra(path)
    settings = resolve(load_recipe(path, extra), {}, extra)
    assert settings.run.model
    if not extra or "teacher" in path.read_text():  # readers: the seeds' windows
        assert settings.data.max_seq_length == 384 and settings.data.doc_stride == 128


def _extra(path: Path) -> tuple:
    from spanqa.train.classify import ClassifyConfig
    from spanqa.train.distill import DistillConfig
    from spanqa.train.pretrain import PretrainConfig

    text = path.read_text()
    if "teacher:" in text:
        return (DistillConfig,)
    return (PretrainConfig,) if "init_weights:" in text else (ClassifyConfig,) if "task: classification" in text else ()


def test_bert_pretraining_recipes_have_the_seed_values():
    from spanqa.train.pretrain import PretrainConfig

    root = Path(__file__).parents[2] / "recipes"
    one = resolve(load_recipe(root / "bert-base-pretrain-phase1.yaml", (PretrainConfig,)), {}, (PretrainConfig,))
    two = resolve(load_recipe(root / "bert-base-pretrain-phase2.yaml", (PretrainConfig,)), {}, (PretrainConfig,))
    for s, lr, batch, warmup, steps, length in ((one, 0.006, 32, 0.28, 10500, 128), (two, 0.002828, 8, 0.128, 2038, 512)):
        o = s.optim
        assert (o.learning_rate, o.per_device_train_batch_size, o.warmup_ratio, o.max_steps) == (lr, batch, warmup, steps)
        assert (o.optimizer, o.lamb_bias_correction, o.weight_decay, o.gradient_accumulation_steps) == ("lamb", False, 0.01, 512)
        assert s.data.max_seq_length == length and s.run.overrides() == {"layer_norm_eps": 0.001}
        assert s.extra.next_sentence_prediction and s.extra.mlm_probability == 0.15
    assert one.extra.init_weights == "random" and two.extra.init_weights == "pretrained"
    assert two.run.model == one.run.output_dir


def test_roberta_recipe_reproduces_the_seed():
    s = resolve(load_recipe(Path(__file__).parents[2] / "recipes" / "roberta-base-squad.yaml"), {})
    o = s.optim
    assert (o.learning_rate, o.num_train_epochs, o.warmup_ratio, o.weight_decay, o.seed) == (6e-5, 2.0, 0.25, 0.01, 1984)
    assert o.per_device_train_batch_size * o.gradient_accumulation_steps == 256
    assert o.lr_scheduler_type == "linear" and (o.adam_beta1, o.adam_beta2, o.adam_epsilon) == (0.9, 0.999, 1e-8)


def test_flags_override_the_recipe(tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text("learning_rate: 1.0e-4\nseed: 7\n")
    s = resolve(load_recipe(recipe), {"seed": 9, "learning_rate": None})
    assert s.optim.learning_rate == 1e-4 and s.optim.seed == 9


@pytest.mark.parametrize(
    "text, message",
    [
        ("learning_rte: 1\n", "unknown setting 'learning_rte'"),
        ("- a\n- b\n", "expected a mapping"),
        ("seed: [1\n", "not valid YAML"),
        ("optimizer: sgd\n", "--optimizer sgd"),
        ("warmup_ratio: 1.5\n", "--warmup-ratio 1.5"),
        ("seed: abc\n", "seed: 'abc' is not a int"),
        ("doc_stride: -3\n", "--doc-stride -3"),
    ],
)
def test_bad_recipes_are_named(tmp_path, text, message):
    recipe = tmp_path / "bad.yaml"
    recipe.write_text(text)
    with pytest.raises(SpanqaError, match=message):
        resolve(load_recipe(recipe), {})


def test_tinyroberta_recipe_has_the_seed_values():
    from spanqa.train.distill import DistillConfig

    path = Path(__file__).parents[2] / "recipes" / "tinyroberta-mrqa.yaml"
    s = resolve(load_recipe(path, (DistillConfig,)), {}, (DistillConfig,))
    assert (s.distill.temperature, s.distill.distillation_loss_weight) == (1.5, 0.75)
    assert (s.optim.per_device_train_batch_size, s.optim.num_train_epochs, s.optim.learning_rate) == (96, 4.0, 3e-5)
    assert (s.optim.warmup_ratio, s.data.max_seq_length, s.data.doc_stride, s.data.max_query_length) == (0.2, 384, 128, 64)


def test_sst2_recipe_has_the_seed_values():
    from spanqa.train.classify import ClassifyConfig

    path = Path(__file__).parents[2] / "recipes" / "bert-base-sst2.yaml"
    s = resolve(load_recipe(path, (ClassifyConfig,)), {}, (ClassifyConfig,))
    o = s.optim
    assert s.run.task == "classification" and s.data.max_seq_length == 128 and s.extra.text_column == "sentence"
    assert (o.learning_rate, o.per_device_train_batch_size, o.gradient_accumulation_steps) == (2e-5, 1, 32)
    assert (o.warmup_ratio, o.num_train_epochs, o.seed, o.lr_scheduler_type) == (0.25, 3.0, 1984, "linear")
