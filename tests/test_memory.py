"""Freed memory stays in the process: the next training step reuses it instead of faulting it in again."""

import os
import subprocess
import sys

import pytest

PROBE = """
import resource, sys
import torch
if sys.argv[1] == "kept":
    from spanqa.memory import keep_freed_memory
    assert keep_freed_memory()
torch.manual_seed(0)
layer = torch.nn.LSTM(256, 64, batch_first=True)
x = torch.randn(32, 200, 256, requires_grad=True)
def step():  # a training step's shape: ~7 MB activations allocated, used and freed
    y, _ = layer(torch.relu(x * 2))
    (y * 3).sum().backward()
step()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(5):
    step()
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def probe(script: str, arg: str) -> int:
    """The last number `script` prints, run in a fresh interpreter (its own heap) with `arg`."""
    out = subprocess.run([sys.executable, "-c", script, arg], capture_output=True, text=True, check=True,
                         env={**os.environ, "OMP_NUM_THREADS": "1"})
    return int(out.stdout.split()[-1])


def faults(mode: str) -> int:
    return probe(PROBE, mode)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
def test_a_kept_heap_reuses_large_blocks_instead_of_faulting_them_in():
    default, kept = faults("default"), faults("kept")
    assert default > 20_000  # the step's activations faulted in again, 4 KB at a time (measured: ~65,000)
    assert kept < default / 3  # measured: ~12,000


ORDER_PROBE = """
import os, sys
import numpy as np, torch
from spanqa.batching import sorted_batches
from spanqa.memory import keep_freed_memory
assert keep_freed_memory()
def rss_mb():  # resident now; the kept heap stays resident, and a peak would count the imports' transients too
    return int(open("/proc/self/statm").read().split()[1]) * os.sysconf("SC_PAGE_SIZE") // 2**20
lengths = np.random.default_rng(0).integers(40, 385, size=8000)
batches = sorted_batches(lengths, 64)
if sys.argv[1] == "ascending":
    batches = batches[::-1]
base = rss_mb()
kept = []
for rows in batches:  # an inference pass: activations grow with the batch's length, a small result outlives each
    L = int(lengths[rows].max())
    a, b = torch.ones(len(rows), L, L), torch.ones(len(rows), L, 384)
    kept.append(np.ones(len(rows) * 512))
    del a, b
print(rss_mb() - base)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
def test_longest_batch_first_keeps_a_kept_heap_at_one_batch():
    largest = 2 * 64 * 384 * 384 * 4 / 2**20  # the longest batch's two activations: 72 MB
    ours, ascending = probe(ORDER_PROBE, "ours"), probe(ORDER_PROBE, "ascending")  # RSS growth, MB
    assert ours < 1.1 * largest  # measured: 74 MB
    assert ascending > 1.25 * largest  # the order the teacher-logit cache ran out of memory in (measured: 149-302 MB)
