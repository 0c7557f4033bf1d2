"""Model FLOP utilisation: useful training FLOPs per second against the machine's measured matmul rate."""

from __future__ import annotations

import time

import torch


def matmul_rate(dtype: torch.dtype, n: int = 2048, repeats: int = 10) -> float:
    """Measured dense matmul GFLOP/s for `dtype` on this machine (CPU threads as configured)."""
    a, b = torch.randn(n, n).to(dtype), torch.randn(n, n).to(dtype)
    for _ in range(2):
        a @ b
    t0 = time.perf_counter()
    for _ in range(repeats):
        a @ b
    return 2 * n**3 * repeats / (time.perf_counter() - t0) / 1e9


def int8_matmul_rate(n: int = 2048, repeats: int = 10) -> float | None:
    """Measured int8 x int8 -> int32 matmul GOP/s (`torch._int_mm`, oneDNN's VNNI/AMX kernels); None where
    this torch has no CPU int8 matmul."""
    a = torch.randint(-128, 127, (n, n), dtype=torch.int8)
    b = torch.randint(-128, 127, (n, n), dtype=torch.int8)
    try:
        torch._int_mm(a, b)
    except (RuntimeError, AttributeError):
        return None
    t0 = time.perf_counter()
    for _ in range(repeats):
        torch._int_mm(a, b)
    return 2 * n**3 * repeats / (time.perf_counter() - t0) / 1e9


def matmul_rates(native_bf16: bool, int8: bool = False) -> dict:
    """{"fp32": GFLOP/s, "bf16": GFLOP/s or None[, "int8": GOP/s or None]}: bf16 is measured only where the
    CPU has bf16 units.

    Without them (AVX2 only) torch emulates bf16 at ~1 GFLOP/s, ~100x below fp32: measuring it at n=2048
    takes minutes, and no benchmark runs bf16 there, so there is no bf16 peak to compare against.
    """
    rates = {"fp32": matmul_rate(torch.float32), "bf16": matmul_rate(torch.bfloat16) if native_bf16 else None}
    if int8:
        rates["int8"] = int8_matmul_rate()
    return rates


def encoder_train_flops(config, n_params_nonembedding: int, tokens: list[int]) -> float:
    """Forward+backward FLOPs (3x forward) over windows of `tokens` real tokens each.

    Forward per window of T tokens: 2 * N * T for the weight matmuls plus 4 * layers * T^2 * hidden for
    attention scores and the weighted sum. Padding is not counted: it is not useful work.
    """
    layers, hidden = config.num_hidden_layers, config.hidden_size
    return sum(3 * (2 * n_params_nonembedding * t + 4 * layers * t * t * hidden) for t in tokens)


def nonembedding_params(model) -> int:
    return sum(p.numel() for n, p in model.named_parameters() if "embeddings" not in n)
