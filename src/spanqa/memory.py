"""Keep freed memory in the process, so each batch's tensors do not page-fault their memory in again.

glibc's malloc serves every allocation above 32 MB (and smaller ones, by its adaptive threshold) with its
own `mmap` and hands it back to the kernel on `free`. A training step allocates and frees the same large
activations every batch (BiDAF's [60, 300, 800] attention-flow output is 57 MB; an encoder's attention
scores are larger), so the next step faults all of it in again, 4 KB at a time, zero-filled by the kernel.
Measured on a 2-core AMD EPYC, BiDAF training: 327,000 page faults and 0.77 s of kernel time per step,
against 22,000 and 0.07 s with the heap kept (2.6 s instead of 3.6 s a step).

`keep_freed_memory()` tells glibc to serve large blocks from its heap and not to trim the heap, so freed
blocks are reused. The process keeps its peak memory until it exits. `SPANQA_MALLOC=default` leaves malloc
as it is; other C libraries (macOS, musl) are left alone.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os

log = logging.getLogger(__name__)
M_TRIM_THRESHOLD, M_MMAP_MAX = -1, -4  # glibc's mallopt parameters (malloc.h)
TRIM_THRESHOLD = 1 << 30  # keep up to 1 GB of freed memory at the top of the heap
_applied = False


def keep_freed_memory() -> bool:
    """Apply the setting once per process; returns whether glibc accepted it."""
    global _applied
    if _applied or os.environ.get("SPANQA_MALLOC", "") == "default":
        return _applied
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    _applied = bool(mallopt(M_MMAP_MAX, 0)) and bool(mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD))
    log.debug("malloc keeps freed memory: %s", _applied)
    return _applied
