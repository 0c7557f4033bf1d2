"""Batch plans: deterministic, length-grouped, identical across process counts."""

import numpy as np

from spanqa.train.sampling import epoch_batches, rank_slice


def test_epoch_order_is_a_pure_function_of_seed_and_epoch():
    lengths = np.random.default_rng(0).integers(20, 384, 1000)
    a = epoch_batches(lengths, 16, seed=1, epoch=3, group_by_length=True)
    b = epoch_batches(lengths, 16, seed=1, epoch=3, group_by_length=True)
    c = epoch_batches(lengths, 16, seed=1, epoch=4, group_by_length=True)
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    assert not all(np.array_equal(x, y) for x, y in zip(a, c))
    assert sorted(np.concatenate(a).tolist()) == list(range(1000))


def test_length_grouping_cuts_padding():
    lengths = np.random.default_rng(0).integers(20, 384, 2000)
    def padded(batches):
        return sum(len(b) * lengths[b].max() for b in batches) / lengths.sum()
    grouped = padded(epoch_batches(lengths, 16, 0, 0, True))
    plain = padded(epoch_batches(lengths, 16, 0, 0, False))
    assert grouped < 1.05 < plain


def test_rank_slices_partition_the_global_batch():
    batch = np.arange(16)
    parts = [rank_slice(batch, r, 2) for r in range(2)]
    assert np.array_equal(np.concatenate(parts), batch) and len(parts[0]) == 8
