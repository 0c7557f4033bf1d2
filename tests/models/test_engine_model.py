"""Engines that compile per shape run batches in bucket shapes: few shapes over a corpus, the answers of the
unpadded batch."""

import numpy as np
import pytest
import torch

from spanqa.models.engine_model import EngineQAModel, ShapeBuckets
from spanqa.reader import Reader


def test_the_worked_example_and_the_bucket_rules():
    buckets = ShapeBuckets(rows=8, tokens=32, max_tokens=384)
    assert buckets.shape(27, 203) == (32, 224)  # the module docstring's example
    assert [buckets.shape(b, 100)[0] for b in (1, 2, 3, 5, 8, 9, 33)] == [1, 2, 4, 8, 8, 16, 40]
    assert buckets.shape(4, 380) == (4, 384)  # never past the longest window the reader makes
    assert buckets.shape(4, 384) == (4, 384)
    assert ShapeBuckets().shape(3, 41) == (4, 41)  # max_tokens unknown: tokens are not padded


class Recording(EngineQAModel):
    """An engine whose logits depend on each row's own real tokens only (as an encoder's do under the mask):
    start = running sum of ids, end = the row's token count; masked positions give garbage."""

    input_names = ["input_ids", "attention_mask"]

    def __init__(self, buckets):
        self.buckets, self.shapes = buckets, set()

    def logits(self, feed):
        ids, mask = feed["input_ids"], feed["attention_mask"]
        self.shapes.add(ids.shape)
        start = np.cumsum(ids * mask, axis=1).astype(np.float32) + 1000 * (1 - mask)
        end = np.broadcast_to(mask.sum(1, keepdims=True), ids.shape).astype(np.float32) - 7 * (1 - mask)
        return start, end


def ragged_batch(rng, rows: int, longest: int) -> dict[str, torch.Tensor]:
    lengths = rng.integers(1, longest + 1, rows)
    lengths[0] = longest
    mask = (np.arange(longest)[None, :] < lengths[:, None]).astype(np.int64)
    return {"input_ids": torch.from_numpy(rng.integers(5, 900, (rows, longest)) * mask),
            "attention_mask": torch.from_numpy(mask), "token_type_ids": torch.zeros(rows, longest, dtype=torch.long)}


def test_bucketed_logits_equal_the_unpadded_ones_and_a_corpus_runs_in_few_shapes():
    rng = np.random.default_rng(0)
    bucketed, plain = Recording(ShapeBuckets(max_tokens=384)), Recording(None)
    for _ in range(300):
        batch = ragged_batch(rng, int(rng.integers(1, 33)), int(rng.integers(20, 385)))
        a, b = bucketed(**batch), plain(**batch)
        assert a.start_logits.shape == batch["input_ids"].shape
        torch.testing.assert_close(a.start_logits, b.start_logits, rtol=0, atol=0)
        torch.testing.assert_close(a.end_logits, b.end_logits, rtol=0, atol=0)
    assert len(plain.shapes) > 250  # dynamic padding: nearly a shape per batch
    assert len(bucketed.shapes) <= 7 * 12  # rows 1, 2, 4, 8, 16, 24, 32 x tokens 32, 64, ..., 384


def test_openvino_in_buckets_gives_the_unpadded_logits_and_answers(tiny_model, tmp_path):
    pytest.importorskip("openvino")
    from spanqa.commands.export import export_reader

    reader = Reader.load(str(export_reader(str(tiny_model), "openvino", "none", str(tmp_path / "ov"))), precision="fp32")
    assert reader.model.buckets.max_tokens == reader.data.max_seq_length
    batch = ragged_batch(np.random.default_rng(1), 5, 45)
    batch["input_ids"] = batch["input_ids"] % len(reader.tokenizer)
    padded = reader.model(**batch)
    reader.model.buckets = None
    exact = reader.model(**batch)
    mask = batch["attention_mask"].bool()
    for got, want in ((padded.start_logits, exact.start_logits), (padded.end_logits, exact.end_logits)):
        torch.testing.assert_close(got[mask], want[mask], rtol=1e-5, atol=1e-5)
