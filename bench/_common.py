"""Shared helpers for the benchmarks: data paths, the CPU banner and the one-JSON-line report."""

from __future__ import annotations

import json
import os
import platform
import time
from pathlib import Path

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
SQUAD_V1_DEV = SHARED_DATA / "squad-v1.1" / "dev-v1.1.recon.json.gz"
SQUAD_V1_TRAIN = SHARED_DATA / "squad-v1.1" / "train-v1.1.recon.json.gz"
SQUAD_V2_DEV = SHARED_DATA / "squad-v2.0" / "dev-v2.0.recon.json.gz"


def best_of(fn, repeats: int = 3):
    """(fastest wall time in seconds, last result) over `repeats` runs of `fn()`."""
    best, result = float("inf"), None
    for _ in range(repeats):
        t0 = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - t0)
    return best, result


CPU_FLAGS = ("avx2", "avx512f", "avx512_bf16", "amx_bf16")


def cpu_banner() -> dict:
    """Print, first, what CPU the figures come from; returns the same facts for the report's "cpu" key.

    Speed ratios depend on it: with AMX or AVX512-BF16 a bf16 matmul runs ~5x faster than fp32, without
    them (AVX2 only) bf16 is slower than fp32, so both spanqa and the references run fp32 there.
    """
    import torch

    from spanqa.precision import cpu_flags, cpu_has_native_bf16, cpu_model, isa_cap

    flags = cpu_flags()
    info = {"model": cpu_model() or platform.processor() or "unknown", "cores": os.cpu_count(),
            "torch_threads": torch.get_num_threads(), "flags": [f for f in CPU_FLAGS if f in flags],
            "native_bf16": cpu_has_native_bf16(), "isa_cap": isa_cap()}
    capped = f" (kernels capped at {info['isa_cap']} by ONEDNN_MAX_CPU_ISA)" if info["isa_cap"] else ""
    print(f"cpu: {info['model']} ({info['cores']} cores, torch uses {info['torch_threads']} threads); flags: "
          f"{', '.join(info['flags']) or 'none of ' + '/'.join(CPU_FLAGS)}{capped}; native bf16 units: "
          f"{'yes' if info['native_bf16'] else 'no (bf16 is slower than fp32 here: fp32 throughout)'}", flush=True)
    return info


def best_precision(cpu: dict) -> str:
    """What runs fastest on this CPU, for spanqa and the references alike: bf16 with native units, else fp32."""
    return "bf16" if cpu["native_bf16"] else "fp32"


def rss_mb(pid: int) -> float:
    """Resident memory of a process in MB (Linux /proc); 0 once it has exited."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def report(figures: dict, cpu: dict) -> None:
    """Print the figures as the last line: one JSON object, with the CPU they were measured on."""
    print(json.dumps({**figures, "cpu": cpu}))


def spanqa_train(**settings) -> dict:
    """Run `spanqa train` in-process on SQuAD v1.1 train with minilm-l6; returns its results plus wall_s."""
    from spanqa.tasks.reader_task import ReaderSettings, train

    base = {"model": "minilm-l6", "train_data": str(SQUAD_V1_TRAIN), "save_steps": 0, "report_to": "none"}
    t0 = time.perf_counter()
    results = train(ReaderSettings.resolve({}, {**base, **settings}))
    results["wall_s"] = time.perf_counter() - t0
    return results
