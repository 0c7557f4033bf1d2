"""What every training run shares: `RunConfig` (what and where), `OptimConfig` (how), and `Settings`, the
base of each task's settings (one config dataclass per field). A YAML recipe and the CLI flags map 1:1
onto the configs' fields; flags override the recipe; a recipe names the subcommand it is for.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, get_type_hints

import yaml

from spanqa.config import field_type, read_recipe, setting  # noqa: F401 - read_recipe: where recipes are read
from spanqa.errors import SpanqaError

PRECISIONS = ("auto", "bf16", "fp16", "fp32")
SCHEDULES = ("linear", "cosine", "constant")
OPTIMIZERS = ("adamw", "lamb", "adam", "adadelta")
TRACKERS = ("tensorboard", "wandb", "mlflow", "none")


RESUME_CHOICES = ("yes", "no", "auto")


@dataclass(frozen=True)
class RunConfig:
    """What to train and where to write it."""

    model: str = setting("minilm-l6", "encoder to fine-tune: a model folder, a hub name, or the offline alias minilm-l6")
    train_data: str = setting("", "training data: any source `spanqa evaluate` reads")
    eval_data: str = setting("", "evaluation data (optional): any source `spanqa evaluate` reads")
    train_split: str = setting("train", "split of a hub or saved dataset to train on")
    eval_split: str = setting("validation", "split of a hub or saved dataset to evaluate on")
    max_train_samples: int = setting(0, "use only the first N training questions (0 = all)")
    max_eval_samples: int = setting(0, "use only the first N evaluation questions (0 = all)")
    output_dir: str = setting("", "folder for checkpoints, the final model, metrics, model card and plots")
    overwrite_output_dir: bool = setting(False, "allow writing into a folder that holds another run")
    resume: str = field(default="no", metadata={
        "help": "continue from the latest checkpoint in output_dir: yes (a bare --resume), no, or auto (resume if "
                "a checkpoint exists, else start: what a requeued cluster job runs)", "bare": "yes"})
    config_overrides: str = setting("", "model config overrides, e.g. 'attention_probs_dropout_prob=0.0,layer_norm_eps=1e-3'")
    report_to: str = setting("tensorboard", "tracking: tensorboard, wandb, mlflow or none")
    push_to_hub: str = setting("", "after training, upload the final model folder to this hub repo (ORG/NAME)")
    hub_private: bool = setting(False, "make the hub repo private (with --push-to-hub)")
    hub_revision: str = setting("", "push to this branch of the hub repo (with --push-to-hub)")
    run_name: str = setting("", "name for trackers and the model card (default: the output folder's name)")

    def __post_init__(self) -> None:
        if self.report_to not in TRACKERS:
            raise SpanqaError(f"--report-to {self.report_to}: expected one of {', '.join(TRACKERS)}.")
        resume = {True: "yes", False: "no", "true": "yes", "false": "no"}.get(self.resume, self.resume)
        if resume not in RESUME_CHOICES:
            raise SpanqaError(f"--resume {self.resume}: expected yes, no or auto.")
        object.__setattr__(self, "resume", resume)

    def overrides(self) -> dict[str, Any]:
        """`config_overrides` parsed into {name: value} (numbers and booleans converted)."""
        out = {}
        for item in filter(None, (s.strip() for s in self.config_overrides.split(","))):
            key, sep, value = item.partition("=")
            if not sep:
                raise SpanqaError(f"--config-overrides: '{item}' is not NAME=VALUE.")
            out[key.strip()] = yaml.safe_load(value)
        return out


@dataclass(frozen=True)
class OptimConfig:
    """How to train: optimiser, schedule, batches, precision, evaluation and checkpoint cadence."""

    learning_rate: float = setting(3e-5, "peak learning rate")
    num_train_epochs: float = setting(2.0, "passes over the training windows")
    max_steps: int = setting(0, "stop after this many optimizer steps (0 = use num_train_epochs)")
    max_time: float = setting(0.0, "training time budget in seconds (0 = none): the schedule is re-planned to end "
                              "within it from the measured step time, and the loop stops there, saves and evaluates")
    per_device_train_batch_size: int = setting(12, "windows per device per micro-batch")
    per_device_eval_batch_size: int = setting(64, "windows per device in evaluation")
    gradient_accumulation_steps: int = setting(1, "micro-batches per optimizer step")
    optimizer: str = setting("adamw", "adamw, lamb, adam (L2 weight decay, as the seed's recurrent readers) or "
                                 "adadelta (BiDAF's)")
    weight_decay: float = setting(0.01, "decoupled weight decay (not applied to biases and LayerNorm)")
    adam_beta1: float = setting(0.9, "first-moment decay")
    adam_beta2: float = setting(0.999, "second-moment decay")
    adam_epsilon: float = setting(1e-8, "denominator epsilon (every optimizer)")
    adadelta_rho: float = setting(0.95, "AdaDelta: decay of the squared-gradient and squared-update averages")
    ema_decay: float = setting(0.0, "keep an exponential moving average of the weights with this decay, evaluate and "
                               "save it (BiDAF: 0.999; 0 = off)")
    lamb_bias_correction: bool = setting(True, "LAMB: correct the moment estimates' bias")
    lr_scheduler_type: str = setting("linear", "linear, cosine or constant (after warmup)")
    warmup_ratio: float = setting(0.1, "share of steps spent warming up linearly from 0")
    max_grad_norm: float = setting(1.0, "clip the global gradient norm to this (0 = off)")
    precision: str = setting("auto", "auto (bf16 where the hardware has it), bf16, fp16 (GPU), fp32")
    loss_scale: float = setting(65536.0, "fp16 only: initial dynamic loss scale")
    seed: int = setting(42, "seed for weights of new heads, dropout and data order")
    group_by_length: bool = setting(True, "batch windows of similar length together (order still shuffled)")
    logging_steps: int = setting(10, "log loss and learning rate every N steps")
    eval_steps: int = setting(0, "evaluate every N steps (0 = only at the end)")
    save_steps: int = setting(500, "checkpoint every N steps (0 = only at the end)")
    save_total_limit: int = setting(2, "keep the last K checkpoints")
    keep_final_checkpoint: bool = setting(False, "keep the checkpoints (optimizer state included) of a completed run; by "
                                            "default they are removed once the final model is saved (a pre-empted "
                                            "run always keeps them, to resume)")
    metric_for_best_model: str = setting(
        "", "eval metric that picks the best checkpoint (f1, exact, best_f1, accuracy, loss...; "
        "default: the task's own: f1 for readers, accuracy for classification, loss for pretraining)")

    def __post_init__(self) -> None:
        checks = [
            (self.optimizer in OPTIMIZERS, "--optimizer", f"one of {', '.join(OPTIMIZERS)}"),
            (self.lr_scheduler_type in SCHEDULES, "--lr-scheduler-type", f"one of {', '.join(SCHEDULES)}"),
            (self.precision in PRECISIONS, "--precision", f"one of {', '.join(PRECISIONS)}"),
            (self.learning_rate > 0, "--learning-rate", "a positive number"),
            (0 <= self.warmup_ratio < 1, "--warmup-ratio", "in [0, 1)"),
            (self.per_device_train_batch_size >= 1, "--per-device-train-batch-size", "at least 1"),
            (self.per_device_eval_batch_size >= 1, "--per-device-eval-batch-size", "at least 1"),
            (self.gradient_accumulation_steps >= 1, "--gradient-accumulation-steps", "at least 1"),
            (self.num_train_epochs > 0 or self.max_steps > 0, "--num-train-epochs", "positive (or set --max-steps)"),
            (self.save_total_limit >= 1, "--save-total-limit", "at least 1"),
            (self.max_time >= 0, "--max-time", "0 (no budget) or a number of seconds"),
            (0 <= self.ema_decay < 1, "--ema-decay", "in [0, 1)"),
        ]
        for ok, flag, expected in checks:
            if not ok:
                raise SpanqaError(f"{flag} {getattr(self, flag[2:].replace('-', '_'))}: expected {expected}.")


@dataclass(frozen=True)
class LengthConfig:
    """Sequence length for tasks without sliding windows (classification, pretraining)."""

    max_seq_length: int = setting(384, "tokens per sequence, special tokens included (BERT phase 1: 128, phase 2: 512)")

    def __post_init__(self) -> None:
        if self.max_seq_length < 8:
            raise SpanqaError(f"--max-seq-length {self.max_seq_length}: must be at least 8.")


@dataclass(frozen=True)
class Settings:
    """Everything a run was started with, resolved: saved with every checkpoint.

    Each task subclasses it, adding one field per config dataclass it needs (`data: DataConfig`, ...), and
    sets `COMMAND`, the subcommand that runs it (recipes name it as `command:`).
    """

    COMMAND: ClassVar[str] = ""

    run: RunConfig
    optim: OptimConfig

    @classmethod
    def config_classes(cls) -> dict[str, type]:
        """{field: config dataclass} in declaration order (a field typed `X | None` gives X)."""
        hints = get_type_hints(cls)
        return {f.name: field_type(hints[f.name])[0] for f in dataclasses.fields(cls)}

    def to_dict(self) -> dict[str, Any]:
        """Flat {setting: value}, the shape of a recipe."""
        out: dict[str, Any] = {"command": self.COMMAND}
        for f in dataclasses.fields(self):
            part = getattr(self, f.name)
            if part is not None:
                out.update(dataclasses.asdict(part))
        return out

    @classmethod
    def resolve(cls, recipe: dict[str, Any], flags: dict[str, Any]):
        """Defaults, then the recipe, then the flags that were given (not None)."""
        values = {**recipe, **{k: v for k, v in flags.items() if v is not None}}
        parts = {}
        for name, kind in cls.config_classes().items():
            kwargs = {f.name: _coerce(values[f.name], f.default, f.name) for f in dataclasses.fields(kind)
                      if f.name in values}
            parts[name] = kind(**kwargs)
        return cls(**parts)

    @classmethod
    def load_recipe(cls, path: str | Path) -> dict[str, Any]:
        """Read a YAML recipe for this task: a flat mapping of config fields (and `command:`).

        Raises:
            SpanqaError: missing file, bad YAML, not a mapping, a recipe for another subcommand, or an unknown
                key (named).
        """
        recipe = read_recipe(path)
        command = recipe.pop("command", cls.COMMAND)
        if command != cls.COMMAND:
            raise SpanqaError(f"{path}: a recipe for `spanqa {command}` (command: {command}); run "
                              f"`spanqa {command} --config {path}`.")
        known = {f.name for kind in cls.config_classes().values() for f in dataclasses.fields(kind)}
        for key in recipe:
            if key not in known:
                raise SpanqaError(f"{path}: unknown setting '{key}' (see `spanqa {cls.COMMAND} --help` for the fields).")
        return recipe


def _coerce(value: Any, default: Any, name: str) -> Any:
    kind = type(default)
    try:
        if kind is bool and isinstance(value, str):
            if value.lower() not in ("true", "false", "1", "0", "yes", "no"):
                raise ValueError(value)
            return value.lower() in ("true", "1", "yes")
        return kind(value)
    except (TypeError, ValueError):
        raise SpanqaError(f"{name}: {value!r} is not a {kind.__name__}.") from None
