"""Recipes and flags: every recipe loads; flags override; bad settings are named."""

from pathlib import Path

import pytest

from spanqa.cli import TASKS, _task
from spanqa.errors import SpanqaError
from spanqa.tasks.reader_task import ReaderSettings
from spanqa.train.run_config import read_recipe

ROOT = Path(__file__).parents[2] / "recipes"
RECIPES = sorted(ROOT.glob("*.yaml"))


def load(path: Path, flags: dict | None = None):
    """A recipe resolved by the settings class of the subcommand it names (as `spanqa <command> --config`)."""
    settings_cls, _ = _task(read_recipe(path).get("command", "train"))
    return settings_cls.resolve(settings_cls.load_recipe(path), flags or {})


@pytest.mark.parametrize("path", RECIPES, ids=lambda p: p.name)
def test_every_recipe_names_its_subcommand_and_resolves(path):
    command = read_recipe(path)["command"]
    assert command in TASKS
    settings = load(path)
    assert settings.run.model and settings.to_dict()["command"] == command
    if command in ("train", "distill") and settings.recurrent is None:  # transformer readers: the seeds' windows
        assert settings.data.max_seq_length == 384 and settings.data.doc_stride == 128


def test_recurrent_recipes_have_the_paper_and_seed_values():
    paper, cpu, baseline = (load(ROOT / f"{n}.yaml") for n in ("bidaf-squad", "bidaf-squad-cpu", "lstm-baseline-squad"))
    o = paper.optim
    assert (o.optimizer, o.learning_rate, o.per_device_train_batch_size, o.num_train_epochs, o.ema_decay) == \
        ("adadelta", 0.5, 60, 12, 0.999)
    r = paper.recurrent
    assert (r.hidden_size, r.char_channels, r.char_embedding_size, r.char_kernel_size, r.highway_layers, r.dropout) == \
        (100, 100, 8, 5, 2, 0.2)
    assert cpu.recurrent == r and cpu.optim.max_time == 7200 and cpu.optim.ema_decay == 0.999
    o = baseline.optim
    assert (o.optimizer, o.learning_rate, o.per_device_train_batch_size, o.num_train_epochs) == ("adam", 1e-3, 128, 30)
    assert baseline.run.model == "lstm-baseline" and baseline.recurrent.char_channels == 0


def test_a_recipe_for_another_subcommand_says_which(tmp_path):
    with pytest.raises(SpanqaError, match=r"a recipe for `spanqa pretrain`.*spanqa pretrain --config"):
        ReaderSettings.load_recipe(ROOT / "bert-base-pretrain-phase1.yaml")


def test_bert_pretraining_recipes_have_the_seed_values():
    one, two = load(ROOT / "bert-base-pretrain-phase1.yaml"), load(ROOT / "bert-base-pretrain-phase2.yaml")
    for s, lr, batch, warmup, steps, length in ((one, 0.006, 32, 0.28, 10500, 128), (two, 0.002828, 8, 0.128, 2038, 512)):
        o = s.optim
        assert (o.learning_rate, o.per_device_train_batch_size, o.warmup_ratio, o.max_steps) == (lr, batch, warmup, steps)
        assert (o.optimizer, o.lamb_bias_correction, o.weight_decay, o.gradient_accumulation_steps) == ("lamb", False, 0.01, 512)
        assert s.data.max_seq_length == length and s.run.overrides() == {"layer_norm_eps": 0.001}
        assert s.pretrain.next_sentence_prediction and s.pretrain.mlm_probability == 0.15
    assert one.pretrain.init_weights == "random" and two.pretrain.init_weights == "pretrained"
    assert two.run.model == one.run.output_dir


def test_roberta_recipe_reproduces_the_seed():
    s = load(ROOT / "roberta-base-squad.yaml")
    o = s.optim
    assert (o.learning_rate, o.num_train_epochs, o.warmup_ratio, o.weight_decay, o.seed) == (6e-5, 2.0, 0.25, 0.01, 1984)
    assert o.per_device_train_batch_size * o.gradient_accumulation_steps == 256
    assert o.lr_scheduler_type == "linear" and (o.adam_beta1, o.adam_beta2, o.adam_epsilon) == (0.9, 0.999, 1e-8)


def test_flags_override_the_recipe(tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text("learning_rate: 1.0e-4\nseed: 7\n")
    s = ReaderSettings.resolve(ReaderSettings.load_recipe(recipe), {"seed": 9, "learning_rate": None})
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
        ReaderSettings.resolve(ReaderSettings.load_recipe(recipe), {})


def test_tinyroberta_recipe_has_the_seed_values():
    s = load(ROOT / "tinyroberta-mrqa.yaml")
    assert (s.distill.temperature, s.distill.distillation_loss_weight) == (1.5, 0.75)
    assert (s.optim.per_device_train_batch_size, s.optim.num_train_epochs, s.optim.learning_rate) == (96, 4.0, 3e-5)
    assert (s.optim.warmup_ratio, s.data.max_seq_length, s.data.doc_stride, s.data.max_query_length) == (0.2, 384, 128, 64)


def test_sst2_recipe_has_the_seed_values():
    s = load(ROOT / "bert-base-sst2.yaml")
    o = s.optim
    assert type(s).COMMAND == "classify" and s.data.max_seq_length == 128 and s.classify.text_column == "sentence"
    assert (o.learning_rate, o.per_device_train_batch_size, o.gradient_accumulation_steps) == (2e-5, 1, 32)
    assert (o.warmup_ratio, o.num_train_epochs, o.seed, o.lr_scheduler_type) == (0.25, 3.0, 1984, "linear")
