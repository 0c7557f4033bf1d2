"""Ragged containers and batch orders: one `pad` for windows, classification rows and pretraining sequences."""

from dataclasses import dataclass

import numpy as np

from spanqa.batching import PAD_ID, Ragged, question_batches, sorted_batches


@dataclass(frozen=True)
class Toy(Ragged):
    TOKEN_FIELDS = {"ids": ("input_ids", PAD_ID, np.int64), "offsets": ("offsets", -1, None),
                    "special": ("special_tokens_mask", True, None)}
    ROW_FIELDS = {"label": "labels"}

    ids: np.ndarray
    offsets: np.ndarray
    special: np.ndarray
    row_splits: np.ndarray
    label: np.ndarray


def toy() -> Toy:
    # rows of 3, 1 and 2 tokens (the worked example in batching.py, plus one)
    return Toy(ids=np.array([5, 6, 7, 8, 9, 10], np.int32), offsets=np.arange(12, dtype=np.int32).reshape(6, 2),
               special=np.array([1, 0, 1, 1, 0, 0], bool), row_splits=np.array([0, 3, 4, 6]),
               label=np.array([0, 1, 0]))


def test_pad_fills_each_field_with_its_own_value_and_keeps_row_order():
    batch = toy().pad([1, 0], pad_id=99)
    assert batch["input_ids"].tolist() == [[8, 99, 99], [5, 6, 7]] and batch["input_ids"].dtype == np.int64
    assert batch["attention_mask"].tolist() == [[1, 0, 0], [1, 1, 1]]
    assert batch["offsets"][0].tolist() == [[6, 7], [-1, -1], [-1, -1]] and batch["offsets"].dtype == np.int32
    assert batch["special_tokens_mask"].tolist() == [[True, True, True], [True, False, True]]
    assert batch["labels"].tolist() == [1, 0] and batch["rows"].tolist() == [1, 0]


def test_pad_rounds_the_width_up_to_a_multiple():
    assert toy().pad([2], pad_id=0, multiple_of=8)["input_ids"].shape == (1, 8)


def test_take_keeps_the_first_rows_with_their_row_fields():
    first = toy().take(2)
    assert len(first) == 2 and first.lengths.tolist() == [3, 1] and first.label.tolist() == [0, 1]


def test_question_batches_keep_questions_whole():
    example_index = np.repeat(np.arange(50), np.random.default_rng(1).integers(1, 4, 50))
    lengths = np.random.default_rng(2).integers(10, 300, len(example_index))
    batches = question_batches(example_index, lengths, 8)
    seen = np.concatenate(batches)
    assert sorted(seen.tolist()) == list(range(len(example_index)))
    for b in batches:
        for ex in np.unique(example_index[b]):
            assert set(np.flatnonzero(example_index == ex)) <= set(b.tolist())


def test_sorted_batches_cover_every_row_in_length_order_longest_first():
    lengths = np.array([5, 1, 4, 2, 3])
    batches = sorted_batches(lengths, 2)
    assert [b.tolist() for b in batches] == [[0, 2], [4, 3], [1]]
