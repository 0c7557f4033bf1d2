"""Which training windows go in which batch: deterministic, length-grouped, identical for any number of processes.

The order of an epoch depends only on (seed, epoch), so a resumed run replays it exactly and a run on
N processes sees the same global batches as one process with N times the batch: each global batch
(per_device_batch * world_size windows) is split by rank.

Length grouping: shuffle, cut into mega-batches of 50 global batches, sort each by window length, cut into
global batches, shuffle the batch order. Padding shrinks to a few tokens per batch; order stays random.
"""

from __future__ import annotations

import numpy as np

MEGA = 50


def epoch_batches(lengths: np.ndarray, global_batch: int, seed: int, epoch: int, group_by_length: bool) -> list[np.ndarray]:
    """Global batches of window indices for one epoch (the last one may be smaller).

    Args:
        lengths: [F] tokens per window.
        global_batch: windows per global micro-batch (per-device batch x processes).
    """
    rng = np.random.default_rng([seed, epoch])
    order = rng.permutation(len(lengths))
    if group_by_length:
        chunks = [order[i : i + MEGA * global_batch] for i in range(0, len(order), MEGA * global_batch)]
        order = np.concatenate([c[np.argsort(-lengths[c], kind="stable")] for c in chunks])
    batches = [order[i : i + global_batch] for i in range(0, len(order), global_batch)]
    if group_by_length:
        batches = [batches[i] for i in rng.permutation(len(batches))]
    return batches


def rank_slice(batch: np.ndarray, rank: int, world_size: int) -> np.ndarray:
    """This process's share of a global batch (as even as possible; may be empty for a tiny last batch)."""
    return np.array_split(batch, world_size)[rank]
