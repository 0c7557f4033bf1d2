"""Decoding parity with a brute-force decoder, and the no-answer rule."""

import numpy as np
import pytest
from brute_decode import brute_nbest
from conftest import FIXTURES, needs_shared

from spanqa.config import DataConfig, DecodeConfig
from spanqa.data import Example, load_examples
from spanqa.decode import band_max, decode
from spanqa.features import build_features


def random_logits(batch, seed):
    rng = np.random.default_rng(seed)
    shape = batch["input_ids"].shape
    return rng.standard_normal(shape).astype(np.float32), rng.standard_normal(shape).astype(np.float32)


def assert_matches_brute_force(examples, feats, config, allow_null, seed=0):
    batch = feats.pad(np.arange(len(feats)), pad_id=0)
    start, end = random_logits(batch, seed)
    preds = decode(start, end, batch, feats.example_index, examples, config, allow_null)
    ref = brute_nbest(start, end, batch, feats.example_index, config.n_best_size, config.max_answer_length)
    assert [p.id for p in preds] == [examples[i].id for i in sorted(ref)]
    for pred, i in zip(preds, sorted(ref)):
        want = [(int(batch["offsets"][w, s, 0]), int(batch["offsets"][w, e, 1]), sc) for sc, w, s, e in ref[i]]
        got = [(sp.start, sp.end, sp.score) for sp in pred.spans]
        assert [g[:2] for g in got] == [w[:2] for w in want]
        assert np.allclose([g[2] for g in got], [w[2] for w in want])
        assert all(sp.text == examples[i].context[sp.start : sp.end] for sp in pred.spans)
        if not allow_null:
            assert pred.answer == (pred.spans[0].text if pred.spans else "")


@pytest.mark.parametrize("version, allow_null", [("v1.1", False), ("v2.0", True)])
def test_nbest_equals_brute_force_on_fixture_windows(wordpiece, version, allow_null):
    examples = load_examples(FIXTURES / f"squad-{version}-dev-fixture.json").examples
    feats = build_features(examples, wordpiece, DataConfig(max_seq_length=128, doc_stride=32, max_query_length=32))
    assert len(feats) > len(examples)  # several windows per question are exercised
    assert_matches_brute_force(examples, feats, DecodeConfig(n_best_size=20, max_answer_length=30), allow_null)
    assert_matches_brute_force(examples, feats, DecodeConfig(n_best_size=3, max_answer_length=5), allow_null, 1)


def test_band_max_equals_naive():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((4, 50))
    for width in (1, 2, 3, 7, 16, 30):
        naive = np.array([[x[f, i : i + width].max() for i in range(50)] for f in range(4)])
        assert np.array_equal(band_max(x, width), naive)


def _one_window(start_logits, end_logits, context="ab cd"):
    """A hand-made window: [CLS] then two context tokens "ab" (0,2) and "cd" (3,5)."""
    batch = {
        "offsets": np.array([[[-1, -1], [0, 2], [3, 5]]]),
        "is_max_context": np.array([[False, True, True]]),
        "cls_index": np.array([0]),
    }
    return (np.array([start_logits], dtype=np.float32), np.array([end_logits], dtype=np.float32), batch,
            np.array([0]), [Example("q", "?", context)])


def test_null_threshold_worked_example():
    # null = 1 + 1 = 2.0; best span "cd" = 0.5 + 1.0 = 1.5; diff 0.5
    start, end, batch, idx, ex = _one_window([1.0, -5.0, 0.5], [1.0, -5.0, 1.0])
    (p,) = decode(start, end, batch, idx, ex, DecodeConfig(null_score_diff_threshold=0.0), allow_null=True)
    assert p.answer == "" and p.null_score == 2.0 and p.spans[0].text == "cd"
    assert p.na_prob == pytest.approx(1 / (1 + np.exp(-0.5)))
    (p,) = decode(start, end, batch, idx, ex, DecodeConfig(null_score_diff_threshold=1.0), allow_null=True)
    assert p.answer == "cd"
    (p,) = decode(start, end, batch, idx, ex, DecodeConfig(), allow_null=False)
    assert p.answer == "cd" and p.na_prob == 0.0  # v1.1 readers always answer


def test_null_score_is_minimum_over_windows(wordpiece):
    examples = load_examples(FIXTURES / "squad-v1.1-dev-fixture.json").examples
    feats = build_features(examples, wordpiece, DataConfig(max_seq_length=64, doc_stride=16, max_query_length=16))
    batch = feats.pad(np.arange(len(feats)), 0)
    start, end = random_logits(batch, 5)
    preds = decode(start, end, batch, feats.example_index, examples, DecodeConfig(), True)
    for p in preds[:20]:
        i = next(k for k, e in enumerate(examples) if e.id == p.id)
        rows = np.flatnonzero(feats.example_index == i)
        assert p.null_score == pytest.approx(min(start[r, 0] + end[r, 0] for r in rows))


def test_answer_text_keeps_the_contexts_own_casing_and_accents():
    start, end, batch, idx, ex = _one_window([0, 5, 0], [0, 0, 5], context="Ér Ça")
    (p,) = decode(start, end, batch, idx, ex, DecodeConfig(), allow_null=False)
    assert p.answer == "Ér Ça"


@pytest.mark.slow
@pytest.mark.parametrize("name", ["squad-v1.1/dev-v1.1.recon.json.gz", "squad-v2.0/dev-v2.0.recon.json.gz"])
def test_full_dev_decoding_parity(name):
    """Every window of the real dev sets (BERT uncased tokenizer, 384/128), random logits, brute force."""
    from spanqa.models.hub import load_tokenizer

    dataset = load_examples(needs_shared(*name.split("/")))
    feats = build_features(dataset.examples, load_tokenizer("minilm-l6"), DataConfig())
    assert_matches_brute_force(dataset.examples, feats, DecodeConfig(), dataset.scoring == "squad-v2.0")
