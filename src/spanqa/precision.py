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
# oneDNN's ISA caps (ONEDNN_MAX_CPU_ISA, which torch's and OpenVINO's CPU kernels obey) that leave out bf16 units
NO_BF16_ISA_CAPS = ("SSE41", "AVX", "AVX2", "AVX2_VNNI", "AVX2_VNNI_2", "AVX512_CORE", "AVX512_CORE_VNNI")


@functools.lru_cache(maxsize=1)
def _cpuinfo() -> dict[str, str]:
    """The first processor's "key: value" lines of /proc/cpuinfo (empty where there is none)."""
    try:
        first = Path("/proc/cpuinfo").read_text().split("\n\n")[0]
    except OSError:
        return {}
    return {k.strip(): v.strip() for k, _, v in (line.partition(":") for line in first.splitlines() if ":" in line)}


def cpu_flags() -> set[str]:
    """The CPU's flags from /proc/cpuinfo (empty where there is none)."""
    return set(_cpuinfo().get("flags", "").split())


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo ("" where there is none)."""
    return _cpuinfo().get("model name", "")


def isa_cap() -> str:
    """The oneDNN ISA cap in force ("AVX2", ...), or "" when the kernels may use all the CPU has.

    Set with ONEDNN_MAX_CPU_ISA (DNNL_MAX_CPU_ISA before oneDNN 2.0), e.g. to make a cluster of mixed
    CPUs compute alike; torch's and OpenVINO's kernels obey it, so spanqa's precision choice does too.
    """
    cap = (os.environ.get("ONEDNN_MAX_CPU_ISA") or os.environ.get("DNNL_MAX_CPU_ISA") or "").strip().upper()
    return "" if cap in ("", "ALL", "DEFAULT") else cap


def cpu_has_native_bf16() -> bool:
    """True when /proc/cpuinfo lists AMX-BF16 or AVX512-BF16 (Linux) and no ISA cap hides them; False when unknown."""
    return not cpu_flags().isdisjoint(BF16_CPU_FLAGS) and isa_cap() not in NO_BF16_ISA_CAPS


def cpu_has_int8_dot() -> bool:
    """True when the CPU has an int8 dot-product instruction (AVX512-VNNI, AVX-VNNI or AMX-INT8).

    Without one, u8 x s8 products are summed in pairs into 16 bits (vpmaddubsw), which can saturate: ONNX Runtime
    advises 7-bit weights there.
    """
    return not cpu_flags().isdisjoint(("avx512_vnni", "avx_vnni", "amx_int8"))


def cpu_signature() -> str:
    """"model name | N cores | speed-relevant flags": which machine a speed measurement holds for."""
    flags, cap = cpu_flags(), isa_cap()
    have = " ".join(f for f in SPEED_CPU_FLAGS if f in flags) or "no vector flags known"
    capped = f" | oneDNN ISA <= {cap}" if cap else ""
    return f"{cpu_model() or 'unknown CPU'} | {os.cpu_count()} cores | {have}{capped}"


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
