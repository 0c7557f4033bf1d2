"""Batch plans: deterministic, length-grouped, identical across process counts."""

import numpy as np

from spanqa.train.batches import epoch_batches, eval_batches, rank_slice


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


def test_eval_batches_keep_questions_whole():
    example_index = np.repeat(np.arange(50), np.random.default_rng(1).integers(1, 4, 50))
    lengths = np.random.default_rng(2).integers(10, 300, len(example_index))
    batches = eval_batches(example_index, lengths, 8)
    seen = np.concatenate(batches)
    assert sorted(seen.tolist()) == list(range(len(example_index)))
    for b in batches:
        for ex in np.unique(example_index[b]):
            assert set(np.flatnonzero(example_index == ex)) <= set(b.tolist())
