"""Isolated environments for the references a benchmark runs against.

Each reference gets its own virtual environment under bench/.ref/ (gitignored), made on first use with
pip and nothing from this environment (no --system-site-packages): the reference runs with exactly the
packages a user installing it would get, all its dependencies included. torch is pinned to the CPU wheel
the project uses (unpinned, pip would resolve a multi-GB CUDA build). A marker file is written only after
the environment has imported its packages, so an interrupted install is redone.

    python bench/_envs.py            # make every environment now (what the benchmarks do on first use)
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).parent / ".ref"
TORCH = "torch==2.13.0"

# Removed after install: optimum-intel pulls torchvision, whose PyPI wheel is built against the CUDA torch and
# fails to load its operators next to the CPU torch wheel ("operator torchvision::nms does not exist"), which
# breaks `import transformers.pipeline`; the QA model never uses it, and no CPU torchvision wheel is on the index.
REMOVE = {"optimum-openvino": ["torchvision"]}

# name -> (pip requirements, modules to import as the check, the package whose version identifies it)
PEERS = {
    "transformers-4.57": ([TORCH, "transformers==4.57.*"], ["transformers"], "transformers"),
    "optimum-onnxruntime": ([TORCH, "transformers==4.57.*", "optimum-onnx[onnxruntime]==0.1.0"],
                            ["transformers", "optimum.onnxruntime"], "optimum-onnx"),
    "optimum-openvino": ([TORCH, "transformers==4.57.*", "optimum-intel[openvino]==2.2.0"],
                         ["transformers", "optimum.intel"], "optimum-intel"),
    # collections (bench/collection.py): Haystack 3's in-memory BM25 + the extractive reader it moved out of core
    "haystack-3": ([TORCH, "haystack-ai==3.4.*", "transformers-haystack==2.0.*"],
                   ["haystack", "haystack_integrations.components.readers.transformers"], "haystack-ai"),
    # txtai's BM25 / embeddings index and its extractive QA pipeline
    "txtai": ([TORCH, "txtai==9.14.*"], ["txtai"], "txtai"),
}


def clean_env() -> dict:
    """This process's environment without what would put other packages ahead of the reference's own."""
    drop = ("PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP", "VIRTUAL_ENV")
    return {**{k: v for k, v in os.environ.items() if k not in drop}, "PYTHONNOUSERSITE": "1"}


def ensure(name: str) -> Path:
    """The interpreter of the environment `name` (see PEERS), made if it is missing or unfinished."""
    requirements, modules, package = PEERS[name]
    env = ROOT / name
    python, marker = env / "bin" / "python", env / "installed.json"
    if marker.exists() and python.exists():
        return python
    print(f"creating {env}: {' '.join(requirements)} (reference only, first use)", file=sys.stderr, flush=True)
    subprocess.run([sys.executable, "-m", "venv", "--clear", str(env)], check=True)
    subprocess.run([str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check", *requirements],
                   check=True, env=clean_env())
    if REMOVE.get(name):
        subprocess.run([str(python), "-m", "pip", "uninstall", "-y", "-q", *REMOVE[name]], check=True, env=clean_env())
    probe = (f"import importlib, importlib.metadata as m, json; [importlib.import_module(x) for x in {modules!r}]; "
             "from transformers import pipeline; "
             f"print(json.dumps({{p: m.version(p) for p in ('torch', 'transformers', {package!r})}}))")
    versions = subprocess.run([str(python), "-c", probe], check=True, capture_output=True, text=True,
                              env=clean_env()).stdout.strip().splitlines()[-1]
    marker.write_text(versions)
    return python


def versions(name: str) -> dict:
    return json.loads((ROOT / name / "installed.json").read_text())


if __name__ == "__main__":
    for peer in PEERS:
        print(peer, versions(peer) if ensure(peer) else "")
