"""Configuration: one frozen dataclass per concern.

Each field's `help` metadata becomes its `--help` line; `add_dataclass_args` maps fields to flags 1:1
(`max_seq_length` -> `--max-seq-length`), and cross-field checks in `__post_init__` name the flag.
"""

from __future__ import annotations

import argparse
import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, get_type_hints

import yaml

from spanqa.errors import SpanqaError


def setting(default: Any, help: str) -> Any:
    """A config dataclass field with its one-line doc: `--help` shows `help`, recipes and flags set it.

    Example: `max_seq_length: int = setting(384, "tokens per window")` becomes `--max-seq-length` (default 384).
    """
    return field(default=default, metadata={"help": help})


@dataclass(frozen=True)
class DataConfig:
    """How examples are cut into model windows."""

    max_seq_length: int = setting(384, "tokens per window, question and special tokens included")
    doc_stride: int = setting(128, "tokens of context shared by consecutive windows (overlap, as in transformers)")
    max_query_length: int = setting(64, "question tokens kept; longer questions are truncated")

    def __post_init__(self) -> None:
        if self.max_seq_length < 8:
            raise SpanqaError(f"--max-seq-length {self.max_seq_length}: must be at least 8.")
        if self.max_query_length < 1:
            raise SpanqaError(f"--max-query-length {self.max_query_length}: must be at least 1.")
        if self.doc_stride < 0:
            raise SpanqaError(f"--doc-stride {self.doc_stride}: must be >= 0.")

    def context_room(self, num_special: int) -> int:
        """Context tokens in a window when the question uses its full `max_query_length`.

        Raises:
            SpanqaError: no room is left for context, or `doc_stride` is not below that room (the next
                window would not advance).
        """
        room = self.max_seq_length - self.max_query_length - num_special
        if room <= 0:
            raise SpanqaError(
                f"--max-seq-length {self.max_seq_length} leaves no room for context after a "
                f"{self.max_query_length}-token question and {num_special} special tokens."
            )
        if self.doc_stride >= room:
            raise SpanqaError(
                f"--doc-stride {self.doc_stride}: windows hold as few as {room} context tokens "
                f"(max_seq_length {self.max_seq_length} - max_query_length {self.max_query_length} - "
                f"{num_special} special tokens), so an overlap of {self.doc_stride} would never advance; "
                f"use a doc_stride below {room}."
            )
        return room


@dataclass(frozen=True)
class DecodeConfig:
    """How start/end logits become answers."""

    n_best_size: int = setting(20, "answers kept per question")
    max_answer_length: int = setting(30, "longest answer, in tokens")
    null_score_diff_threshold: float = setting(
        0.0, "SQuAD v2: answer 'no answer' when null score - best span score is above this"
    )

    def __post_init__(self) -> None:
        if self.n_best_size < 1:
            raise SpanqaError(f"--n-best-size {self.n_best_size}: must be at least 1.")
        if self.max_answer_length < 1:
            raise SpanqaError(f"--max-answer-length {self.max_answer_length}: must be at least 1.")


def parse_bool(text: str) -> bool:
    """"true"/"false" (also 1/0, yes/no) -> bool."""
    if text.lower() not in ("true", "false", "1", "0", "yes", "no"):
        raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")
    return text.lower() in ("true", "1", "yes")


def add_dataclass_args(parser: argparse.ArgumentParser, cls: type, default_none: bool = False) -> None:
    """Add one `--flag` per field of `cls`, with the field's default and help.

    Boolean fields work as bare switches (`--resume`) or with a value (`--resume false`). With
    `default_none`, unset flags stay None so a recipe can fill them.
    """
    hints = get_type_hints(cls)
    group = parser.add_argument_group(cls.__name__)
    for f in dataclasses.fields(cls):
        kind, optional = field_type(hints[f.name])
        flag = "--" + f.name.replace("_", "-")
        if kind is bool and optional:  # None = "as the model says": --allow-null / --no-allow-null
            extra = {"action": argparse.BooleanOptionalAction}
        elif "bare" in f.metadata:  # a word-valued flag that also works bare: --resume = --resume yes
            extra = {"nargs": "?", "const": f.metadata["bare"], "type": kind}
        elif kind is bool:
            extra = {"nargs": "?", "const": True, "type": parse_bool}
        else:
            extra = {"type": kind}
        group.add_argument(
            flag, dest=f.name, default=None if default_none else f.default,
            help=f"{f.metadata.get('help', '')} (default: {f.default})".replace("%", "%%"), **extra,
        )


def field_type(hint) -> tuple[type, bool]:
    """(the value type, whether None is allowed) of a field hint such as `int`, `bool | None`."""
    args = [a for a in getattr(hint, "__args__", ()) if a is not type(None)]
    return (args[0], True) if args else (hint, False)


def from_args(cls: type, args: argparse.Namespace) -> Any:
    """Build `cls` from the parsed flags that `add_dataclass_args` added."""
    return cls(**{f.name: getattr(args, f.name) for f in dataclasses.fields(cls)})


def read_recipe(path: str | Path) -> dict[str, Any]:
    """A recipe file as a dict (empty for an empty file).

    Raises:
        SpanqaError: missing file, bad YAML, or not a mapping.
    """
    path = Path(path)
    if not path.is_file():
        raise SpanqaError(f"{path}: no such recipe file.")
    try:
        recipe = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise SpanqaError(f"{path}: not valid YAML ({str(exc).splitlines()[0]}).") from None
    if recipe is None:
        return {}
    if not isinstance(recipe, dict):
        raise SpanqaError(f"{path}: expected a mapping of settings, got {type(recipe).__name__}.")
    return recipe


BACKEND_CHOICES = ("auto", "torch", "onnxruntime", "openvino")


READER_PRECISIONS = ("auto", "bf16", "fp16", "fp32", "int8")


@dataclass(frozen=True)
class ReaderConfig:
    """How a reader runs. Fields left at None take the reader folder's own settings (as trained).

    `predict`, `ask`, `serve` and `export` take these as flags; `Reader.load(path, config)` as a value.
    """

    device: str = setting("", "cpu, cuda, cuda:1 ... (default: CUDA when available)")
    backend: str = setting("auto", "auto (the fastest backend measured on this CPU within the accuracy guard, for a "
                              "folder from `spanqa export --format all`; else the folder's own), torch, "
                              "onnxruntime or openvino")
    precision: str = setting("auto", "auto (bf16 where the hardware has bf16 units), bf16, fp16 (GPU), fp32, "
                                "int8 (dynamic int8 Linear layers, CPU)")
    batch_size: int = setting(32, "windows per forward pass")
    allow_null: bool | None = setting(None, "may answer 'no answer' (SQuAD v2); default: as the reader was trained "
                                       "(a plain hub QA model: no)")
    null_score_diff_threshold: float | None = setting(None, "answer 'no answer' when the null score minus the best "
                                                       "span score is above this (default: tuned at training, else 0)")
    max_seq_length: int | None = setting(None, "tokens per window (default: as trained)")
    doc_stride: int | None = setting(None, "context tokens shared by consecutive windows (default: as trained)")
    max_query_length: int | None = setting(None, "question tokens kept (default: as trained)")
    n_best_size: int | None = setting(None, "answers kept per question (default: as trained)")
    max_answer_length: int | None = setting(None, "longest answer in tokens (default: as trained)")
    allow_untrained_head: bool = setting(False, "run a model whose span head is initialised at load (an encoder, not a "
                                           "reader: random answers); refused otherwise")

    def __post_init__(self) -> None:
        if self.precision not in READER_PRECISIONS:
            raise SpanqaError(f"--precision {self.precision}: expected one of {', '.join(READER_PRECISIONS)}.")
        if self.batch_size < 1:
            raise SpanqaError(f"--batch-size {self.batch_size}: must be at least 1.")
        if self.backend not in BACKEND_CHOICES:
            raise SpanqaError(f"--backend {self.backend}: expected one of {', '.join(BACKEND_CHOICES)}.")

    def resolve(self, info) -> tuple[DataConfig, DecodeConfig, bool]:
        """(window settings, decode settings, allow_null): the folder's, with this config's fields on top."""
        return (_override(info.data, self), _override(info.decode, self),
                info.version_2_with_negative if self.allow_null is None else self.allow_null)


def _override(base, config: ReaderConfig):
    """`base` (a DataConfig or DecodeConfig) with the fields `config` sets (not None)."""
    given = {f.name: getattr(config, f.name) for f in dataclasses.fields(base) if getattr(config, f.name) is not None}
    return dataclasses.replace(base, **given)
