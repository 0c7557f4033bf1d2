"""Choosing the numeric precision: bf16 where the hardware multiplies bf16 natively, else fp32.

On CPUs with AMX or AVX512-BF16 a bf16 matmul runs ~5x faster than fp32; elsewhere bf16 autocast is
slower than fp32, so `auto` only picks it where the units exist.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
from pathlib import Path

import torch

from spanqa.errors import SpanqaError

log = logging.getLogger(__name__)
_warned: list[bool] = []  # the no-bf16-units warning, once per process
BF16_CPU_FLAGS = ("amx_bf16", "avx512_bf16")
SPEED_CPU_FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_bf16", "amx_int8")


@functools.lru_cache(maxsize=1)
def _cpuinfo() -> dict[str, str]:
    """The first processor's "key: value" lines of /proc/cpuinfo (empty where there is none)."""
    try:
        first = Path("/proc/cpuinfo").read_text().split("\n\n")[0]
    except OSError:
        return {}
    return {k.strip(): v.strip() for k, _, v in (line.partition(":") for line in first.splitlines() if ":" in line)}


def cpu_has_native_bf16() -> bool:
    """True when /proc/cpuinfo lists AMX-BF16 or AVX512-BF16 (Linux); False when unknown."""
    flags = _cpuinfo().get("flags", "").split()
    return any(f in flags for f in BF16_CPU_FLAGS)


def cpu_signature() -> str:
    """"model name | N cores | speed-relevant flags": which machine a speed measurement holds for."""
    info = _cpuinfo()
    flags = set(info.get("flags", "").split())
    have = " ".join(f for f in SPEED_CPU_FLAGS if f in flags) or "no vector flags known"
    return f"{info.get('model name', 'unknown CPU')} | {os.cpu_count()} cores | {have}"


def resolve_precision(requested: str, device: torch.device) -> str:
    """`auto` -> bf16 on GPUs that support it and on CPUs with native bf16 units, else fp32.

    Raises:
        SpanqaError: fp16 without a GPU, or bf16 on a GPU that lacks it.
    """
    if requested == "auto":
        if device.type == "cuda":
            return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
        return "bf16" if device.type == "cpu" and cpu_has_native_bf16() else "fp32"
    if requested == "fp16" and device.type != "cuda":
        raise SpanqaError("--precision fp16 needs a CUDA GPU; on CPU use bf16 (where supported) or fp32.")
    if requested == "bf16" and device.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise SpanqaError("--precision bf16: this GPU has no bf16 support; use fp16.")
    if requested == "bf16" and device.type == "cpu" and not cpu_has_native_bf16() and not _warned:
        _warned.append(True)
        log.warning("--precision bf16 on a CPU without bf16 units (no AMX or AVX512-BF16 in /proc/cpuinfo): torch "
                    "emulates it, several times slower than fp32 here; --precision fp32 (or auto) is faster")
    return requested


def autocast(precision: str, device: torch.device):
    """The autocast context for `precision` (a no-op for fp32)."""
    if precision == "fp32":
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    return torch.autocast(device_type=device.type, dtype=dtype)


def describe(precision: str, device: torch.device) -> str:
    """One line for the log: what precision runs where, and why."""
    if device.type == "cpu" and precision == "bf16":
        why = "native bf16 units (AMX/AVX512-BF16)" if cpu_has_native_bf16() else "requested"
        return f"bf16 autocast on CPU ({why}); --precision fp32 turns it off"
    if device.type == "cpu":
        return "fp32 on CPU" + ("" if cpu_has_native_bf16() else " (no native bf16 units found)")
    if precision == "fp32":
        return f"fp32 on {torch.cuda.get_device_name(device)}"
    return f"{precision} mixed precision on {torch.cuda.get_device_name(device)}"
