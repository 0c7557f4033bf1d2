"""Windowing: sliding windows, max-context ownership, char offsets, labels."""

import functools
import os
import re

import numpy as np
import pytest
from conftest import FIXTURES
from hypothesis import given, settings
from hypothesis import strategies as st

from spanqa.config import DataConfig
from spanqa.data import Answer, Example, load_examples
from spanqa.errors import SpanqaError
from spanqa.features import (
    PairTemplate,
    answer_token_span,
    build_features,
    max_context_owner,
    trim_offsets,
    window_starts,
)

V1 = load_examples(FIXTURES / "squad-v1.1-dev-fixture.json").examples
V2 = load_examples(FIXTURES / "squad-v2.0-dev-fixture.json").examples


def test_window_starts_worked_example():
    # 10 context tokens, room for 4, overlap 2 -> [0,4) [2,6) [4,8) [6,10)
    assert window_starts(10, 4, 2).tolist() == [0, 2, 4, 6]
    assert window_starts(4, 4, 2).tolist() == [0]
    assert window_starts(11, 4, 2).tolist() == [0, 2, 4, 6, 8]  # the last window reaches the end


def test_max_context_owner_worked_example():
    owner = max_context_owner(np.array([0, 2, 4, 6]), 10, 4)
    assert owner[3] == 1  # min(3, 0) in [0,4) vs min(1, 2) in [2,6)
    assert owner[0] == 0 and owner[9] == 3


def test_offsets_worked_example_and_trimming():
    context = "in Paris."
    # a byte-level BPE token "ĠParis" reports " Paris" = (2, 8); trimming makes it "Paris"
    trimmed = trim_offsets(context, np.array([[0, 2], [2, 8], [8, 9]], dtype=np.int32))
    assert trimmed.tolist() == [[0, 2], [3, 8], [8, 9]]
    assert answer_token_span(trimmed, 3, 8) == (1, 1)
    assert trim_offsets("a  b", np.array([[1, 2]], dtype=np.int32)).tolist() == [[2, 2]]  # all-space: empty


def test_windows_equal_transformers_pair_encoding_with_overflow(wordpiece):
    """Our assembled windows are token for token what the tokenizer's own overflow gives."""
    config = DataConfig(max_seq_length=96, doc_stride=16, max_query_length=40)
    examples = [e for e in V1[:100] if len(wordpiece(e.question.strip())["input_ids"]) <= 42]
    feats = build_features(examples, wordpiece, config)
    ref = wordpiece(
        [e.question.strip() for e in examples], [e.context for e in examples], truncation="only_second",
        max_length=96, stride=16, return_overflowing_tokens=True,
    )
    assert len(feats) == len(ref["input_ids"])
    for f in range(len(feats)):
        ours = feats.input_ids[feats.row_splits[f] : feats.row_splits[f + 1]].tolist()
        assert ours == ref["input_ids"][f]
    assert feats.example_index.tolist() == ref["overflow_to_sample_mapping"]


def test_labels_point_at_the_answer_in_every_family(any_tokenizer):
    feats = build_features(V1, any_tokenizer, DataConfig(max_seq_length=96, doc_stride=32, max_query_length=24))
    labelled = np.flatnonzero(feats.start_positions != feats.cls_index)
    assert len(labelled) > 0.9 * len(V1)
    for f in labelled:
        base, ex = feats.row_splits[f], V1[feats.example_index[f]]
        s = feats.offsets[base + feats.start_positions[f], 0]
        e = feats.offsets[base + feats.end_positions[f], 1]
        assert ex.answers[0].text in ex.context[s:e] or ex.context[s:e] in ex.answers[0].text


def test_unanswerable_windows_point_at_cls(wordpiece):
    feats = build_features(V2, wordpiece, DataConfig(max_seq_length=128, doc_stride=32))
    impossible = np.array([V2[i].is_impossible for i in feats.example_index])
    assert (feats.start_positions[impossible] == feats.cls_index[impossible]).all()
    assert (feats.cls_index == 0).all()  # BERT-style: [CLS] first


def test_each_context_token_is_owned_by_exactly_one_window(wordpiece):
    feats = build_features(V1[:40], wordpiece, DataConfig(max_seq_length=48, doc_stride=16, max_query_length=16))
    for i in range(40):
        rows = np.flatnonzero(feats.example_index == i)
        owned = np.concatenate([_context_offsets(feats, r, owned_only=True) for r in rows])
        every = np.unique(np.concatenate([_context_offsets(feats, r) for r in rows]), axis=0)
        assert len(owned) == len(np.unique(owned, axis=0)) == len(every)


def _context_offsets(feats, row, owned_only=False):
    lo, hi = feats.row_splits[row], feats.row_splits[row + 1]
    keep = feats.offsets[lo:hi, 0] >= 0
    if owned_only:
        keep &= feats.is_max_context[lo:hi]
    return feats.offsets[lo:hi][keep]


def test_long_question_is_truncated_not_the_reason_a_window_is_lost(wordpiece):
    ex = Example("q", "why " * 300, V1[0].context, V1[0].answers)
    feats = build_features([ex], wordpiece, DataConfig(max_seq_length=128, doc_stride=32, max_query_length=20))
    assert len(feats) >= 1 and feats.lengths.max() <= 128
    assert feats.token_type_ids[: feats.row_splits[1]].tolist().count(0) == 20 + 2  # [CLS] q[:20] [SEP]


def test_stored_truncation_in_tokenizer_json_is_ignored(wordpiece):
    """Regression: all-MiniLM-L6-v2's tokenizer.json truncates at 128, which cut every context."""
    import copy

    tok = copy.deepcopy(wordpiece)
    tok.backend_tokenizer.enable_truncation(16)
    ex = V1[0]
    ours = build_features([ex], tok, DataConfig(max_seq_length=384, doc_stride=128))
    plain = build_features([ex], wordpiece, DataConfig(max_seq_length=384, doc_stride=128))
    assert ours.input_ids.tolist() == plain.input_ids.tolist() and len(ours.input_ids) > 16


@pytest.mark.parametrize(
    "config, message",
    [
        (dict(max_seq_length=64, max_query_length=64, doc_stride=8), "no room for context"),
        (dict(max_seq_length=128, max_query_length=64, doc_stride=61), "--doc-stride 61"),
    ],
)
def test_impossible_window_settings_are_refused(wordpiece, config, message):
    with pytest.raises(SpanqaError, match=message):
        build_features(V1[:2], wordpiece, DataConfig(**config))


def test_left_padding_tokenizer_puts_context_first(wordpiece):
    import copy

    tok = copy.deepcopy(wordpiece)
    tok.padding_side = "left"
    assert not PairTemplate.from_tokenizer(tok).question_first
    feats = build_features(V1[:5], tok, DataConfig(max_seq_length=384, doc_stride=128))
    assert (feats.offsets[1 : 1 + 5, 0] >= 0).all()  # context right after [CLS]


# What a "word" is to each family's pre-tokenizer: BERT splits letters/digits from punctuation;
# byte-level BPE also splits letters from digits and keeps contractions ("'s") whole; Metaspace
# (SentencePiece) splits on whitespace only.
WORD_PATTERNS = {
    "wordpiece": r"\w+",
    "bytebpe": r"'(?:s|t|re|ve|m|ll|d)\b|[^\W\d_]+|\d+",
    "unigram": r"\S+",
}


@functools.lru_cache(maxsize=None)
def _words(family):
    return [(e.context, [(m.start(), m.end()) for m in re.finditer(WORD_PATTERNS[family], e.context)])
            for e in V1[:60]]


@pytest.mark.parametrize("family", ["wordpiece", "bytebpe", "unigram"])
@settings(max_examples=int(os.environ.get("SPANQA_PROPERTY_EXAMPLES", 80)), deadline=None, derandomize=True)
@given(data=st.data())
def test_word_aligned_answers_map_to_tokens_and_back_exactly(family, data):
    """Property: any answer made of whole words survives char -> tokens -> chars unchanged."""
    tok = _cached(family)
    context, words = data.draw(st.sampled_from(_words(family)))
    i = data.draw(st.integers(0, len(words) - 1))
    j = data.draw(st.integers(i, min(i + 5, len(words) - 1)))
    start, end = words[i][0], words[j][1]
    ex = Example("p", "What?", context, (Answer(context[start:end], start),))
    feats = build_features([ex], tok, DataConfig(max_seq_length=512, doc_stride=128))
    f = int(np.flatnonzero(feats.start_positions != feats.cls_index)[0])
    base = feats.row_splits[f]
    s = feats.offsets[base + feats.start_positions[f], 0]
    e = feats.offsets[base + feats.end_positions[f], 1]
    assert context[s:e] == context[start:end]


_TOKENIZERS: dict = {}


def _cached(family):
    from conftest import make_tokenizer

    if family not in _TOKENIZERS:
        _TOKENIZERS[family] = make_tokenizer(family)
    return _TOKENIZERS[family]


def test_xlnet_style_templates_give_cls_its_own_segment_id(wordpiece):
    """XLNet: `A <sep> B <sep> <cls>` with types 0.. 0, 1.. 1, 2 (its <cls> is segment 2), padded on the left."""
    import copy

    from tokenizers.processors import TemplateProcessing

    from spanqa.config import DataConfig
    from spanqa.data import Example
    from spanqa.features import build_features

    tok = copy.deepcopy(wordpiece)
    sep, cls = tok.sep_token_id, tok.cls_token_id
    tok.backend_tokenizer.post_processor = TemplateProcessing(
        single="$A:0 [SEP]:0 [CLS]:2", pair="$A:0 [SEP]:0 $B:1 [SEP]:1 [CLS]:2",
        special_tokens=[("[SEP]", sep), ("[CLS]", cls)])
    tok.padding_side = "left"
    features = build_features([Example("q", "Who built it?", "The tower was built by Eiffel.")], tok,
                              DataConfig(max_seq_length=64, doc_stride=16, max_query_length=16))
    ids, types = features.input_ids, features.token_type_ids
    assert ids[-1] == cls and types[-1] == 2 and types[-2] == 1  # <cls> keeps segment 2, its <sep> segment 1
    assert features.cls_index[0] == len(ids) - 1
    enc = tok("The tower was built by Eiffel.", "Who built it?")  # context first: the tokenizer's own pair
    assert types.tolist() == enc["token_type_ids"]
