"""The training subcommands' settings (`spanqa train`, `distill`, `classify`, `pretrain`): plain dataclasses,
importable without torch, so building the command line (and `--help`) stays fast. Each task module
(`spanqa.tasks.reader_task`, ...) builds its `Task` from these.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from pathlib import Path

from spanqa.config import DataConfig, DecodeConfig, setting
from spanqa.errors import SpanqaError
from spanqa.tasks.recurrent_readers import RECURRENT_MODELS, RecurrentConfig, is_recurrent
from spanqa.train.run_config import LengthConfig, Settings

NULL_CHOICES = ("auto", "true", "false")
INITS = ("random", "pretrained")


@dataclass(frozen=True)
class DistillConfig:
    """What to distil from, and how hard."""

    teacher: str = setting("", "the teacher reader: a folder from `spanqa train`, a hub QA model")
    student_layers: int = setting(0, "make the student from the teacher, keeping N evenly spaced layers (0 = use --model)")
    temperature: float = setting(1.5, "softmax temperature for the soft targets")
    distillation_loss_weight: float = setting(0.75, "weight of the soft (teacher) loss; 1 - weight goes to the gold spans")
    cache_teacher_logits: bool = setting(True, "run the teacher once and memory-map its logits (no teacher per epoch)")
    hidden_loss_weight: float = setting(0.0, "TinyBERT-style intermediate distillation: weight of the MSE between the "
                                        "student's hidden states and the teacher's at mapped layers (same hidden "
                                        "size; the teacher then runs every batch)")

    def __post_init__(self) -> None:
        if self.temperature <= 0:
            raise SpanqaError(f"--temperature {self.temperature}: must be positive.")
        if not 0 <= self.distillation_loss_weight <= 1:
            raise SpanqaError(f"--distillation-loss-weight {self.distillation_loss_weight}: expected a number in [0, 1].")
        if self.student_layers < 0:
            raise SpanqaError(f"--student-layers {self.student_layers}: must be >= 0.")
        if self.hidden_loss_weight < 0:
            raise SpanqaError(f"--hidden-loss-weight {self.hidden_loss_weight}: must be >= 0.")


@dataclass(frozen=True)
class QAConfig:
    """Whether the reader learns to say "no answer"."""

    version_2_with_negative: str = setting("auto", "train for unanswerable questions: auto (from the data), true, false")

    def __post_init__(self) -> None:
        if self.version_2_with_negative not in NULL_CHOICES:
            raise SpanqaError(f"--version-2-with-negative {self.version_2_with_negative}: expected auto, true or false.")


@dataclass(frozen=True)
class ReaderSettings(Settings):
    """`spanqa train`: fine-tune an encoder into a reader, or train a recurrent reader (`recurrent` is set
    only for --model bidaf / lstm-baseline)."""

    COMMAND = "train"

    data: DataConfig
    decode: DecodeConfig
    qa: QAConfig
    recurrent: RecurrentConfig | None

    @classmethod
    def resolve(cls, recipe: dict, flags: dict):
        """As `Settings.resolve`; recurrent settings only for a recurrent --model, which trains in fp32 under
        --precision auto (LSTMs gain little from bf16 and lose resolution).

        Raises:
            SpanqaError: a recurrent-reader setting given for a transformer model.
        """
        settings = super().resolve(recipe, flags)
        if is_recurrent(settings.run.model):
            if settings.optim.precision == "auto":
                settings = dataclasses.replace(settings, optim=dataclasses.replace(settings.optim, precision="fp32"))
            return settings
        given = {**recipe, **{k: v for k, v in flags.items() if v is not None}}
        for f in dataclasses.fields(RecurrentConfig):
            if f.name in given:
                raise SpanqaError(f"--{f.name.replace('_', '-')}: a setting of recurrent readers (--model "
                                  f"{' or '.join(RECURRENT_MODELS)}), not of {settings.run.model}.")
        return dataclasses.replace(settings, recurrent=None)


@dataclass(frozen=True)
class DistillSettings(ReaderSettings):
    """`spanqa distill`: a reader trained against a teacher's soft start/end distributions."""

    COMMAND = "distill"

    distill: DistillConfig


@dataclass(frozen=True)
class ClassifyConfig:
    """Which columns hold the text and the label."""

    text_column: str = setting("sentence", "column with the (first) text")
    text_pair_column: str = setting("", "column with the second text of a pair (empty: single sentences)")
    label_column: str = setting("label", "column with the label (int or string)")
    dataset_config: str = setting("", "configuration of a hub dataset (e.g. sst2 for nyu-mll/glue)")


@dataclass(frozen=True)
class ClassifySettings(Settings):
    """`spanqa classify`: fine-tune an encoder with a sequence classification head."""

    COMMAND = "classify"

    data: LengthConfig
    classify: ClassifyConfig


@dataclass(frozen=True)
class PretrainConfig:
    """What to pretrain and how to mask."""

    init_weights: str = setting("random", "random: a new model from --model's config (phase 1, from scratch); "
                                     "pretrained: start from --model's weights (phase 2 from phase 1's output)")
    tokenizer: str = setting("", "tokenizer folder, alias or hub name (default: --model's)")
    next_sentence_prediction: bool = setting(True, "sentence pairs with the NSP head (BERT); false packs documents "
                                              "into full sequences (RoBERTa)")
    mlm_probability: float = setting(0.15, "share of tokens predicted (80% [MASK], 10% random, 10% unchanged)")
    whole_word_masking: bool = setting(False, "mask all tokens of a word together")
    short_seq_prob: float = setting(0.1, "NSP: share of pairs cut to a random shorter length (as BERT)")
    cache_dir: str = setting("", "where tokenized corpora are cached as Arrow (default: $SPANQA_CACHE or ~/.cache/spanqa)")

    def __post_init__(self) -> None:
        if self.init_weights not in INITS:
            raise SpanqaError(f"--init-weights {self.init_weights}: expected one of {', '.join(INITS)}.")
        if not 0 < self.mlm_probability < 1:
            raise SpanqaError(f"--mlm-probability {self.mlm_probability}: expected a number in (0, 1).")
        if not 0 <= self.short_seq_prob <= 1:
            raise SpanqaError(f"--short-seq-prob {self.short_seq_prob}: expected a number in [0, 1].")

    def cache_folder(self) -> Path:
        return Path(self.cache_dir or os.environ.get("SPANQA_CACHE") or Path.home() / ".cache" / "spanqa").expanduser() / "tokenized"


@dataclass(frozen=True)
class PretrainSettings(Settings):
    """`spanqa pretrain`: masked-LM (+ NSP) pretraining of an encoder."""

    COMMAND = "pretrain"

    data: LengthConfig
    pretrain: PretrainConfig
