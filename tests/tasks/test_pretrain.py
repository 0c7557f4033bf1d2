"""Pretraining: masking statistics, corpus cache, sequence building, and phase 1 -> phase 2 -> fine-tuning."""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest
import torch
from conftest import FIXTURES, fixture_texts

from spanqa.cli import main
from spanqa.data.text import read_documents, split_sentences, tokenize_corpus
from spanqa.errors import SpanqaError
from spanqa.tasks.masking import IGNORE, mask_tokens
from spanqa.tasks.pretrain import nsp_sequences, packed_sequences

V1 = str(FIXTURES / "squad-v1.1-dev-fixture.json")


def _batch(seed=0, b=64, length=96):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(10, 1000, (b, length), generator=g)
    lengths = torch.randint(length // 3, length + 1, (b,), generator=g)
    maskable = torch.arange(length)[None] < lengths[:, None] - 1
    maskable[:, 0] = False  # [CLS]
    word_start = torch.rand(b, length, generator=g) < 0.6
    return ids, maskable, word_start


def test_token_masking_picks_15_percent_per_sequence_and_splits_80_10_10():
    ids, maskable, word_start = _batch()
    torch.manual_seed(0)
    inputs, labels = mask_tokens(ids, maskable, word_start, mask_id=3, vocab_size=1000)
    chosen = labels != IGNORE
    assert not (chosen & ~maskable).any()  # never a special token or padding
    expected = (maskable.sum(1).double() * 0.15).round().clamp(min=1)
    assert torch.equal(chosen.sum(1).double(), expected)  # BERT's exact count per sequence
    assert torch.equal(labels[chosen], ids[chosen])
    assert torch.equal(inputs[~chosen], ids[~chosen])
    n = chosen.sum().item()
    as_mask = (inputs[chosen] == 3).sum().item() / n
    unchanged = (inputs[chosen] == ids[chosen]).sum().item() / n
    assert 0.75 < as_mask < 0.85 and 0.06 < unchanged < 0.15 and 0.06 < 1 - as_mask - unchanged < 0.15


def test_whole_word_masking_never_masks_part_of_a_word():
    ids, maskable, word_start = _batch(seed=1)
    torch.manual_seed(1)
    _, labels = mask_tokens(ids, maskable, word_start, 3, 1000, whole_word=True)
    chosen = labels != IGNORE
    for row in range(ids.shape[0]):
        words = torch.cumsum((word_start[row] | ~torch.roll(maskable[row], 1)) & maskable[row], 0)
        for w in words[maskable[row]].unique().tolist():
            in_word = chosen[row][maskable[row] & (words == w)]
            assert in_word.all() or not in_word.any()
    share = chosen.sum().item() / maskable.sum().item()
    assert 0.10 < share <= 0.15  # whole words up to the 15% budget


def test_masks_are_drawn_anew_for_every_batch_but_follow_the_seed():
    ids, maskable, word_start = _batch()
    torch.manual_seed(5)
    first = mask_tokens(ids, maskable, word_start, 3, 1000)[1]
    second = mask_tokens(ids, maskable, word_start, 3, 1000)[1]
    torch.manual_seed(5)
    again = mask_tokens(ids, maskable, word_start, 3, 1000)[1]
    assert not torch.equal(first, second) and torch.equal(first, again)


@pytest.fixture(scope="module")
def corpus_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("corpus") / "corpus.txt"
    docs = list(dict.fromkeys(t for t in fixture_texts() if len(t) > 200))
    path.write_text("\n\n".join("\n".join(split_sentences(d)) for d in docs) + "\n")
    return path


def test_documents_are_blank_line_blocks_of_sentence_lines(tmp_path):
    path = tmp_path / "c.txt"
    path.write_text("First sentence.\nSecond one.\n\n\nOther document.\n")
    assert read_documents(str(path)) == [["First sentence.", "Second one."], ["Other document."]]
    (tmp_path / "empty.txt").write_text("\n \n")
    with pytest.raises(SpanqaError, match="empty"):
        read_documents(str(tmp_path / "empty.txt"))


def test_tokenized_corpus_is_cached_and_read_back_without_tokenizing(corpus_file, wordpiece, tmp_path, monkeypatch):
    first = tokenize_corpus([str(corpus_file)], wordpiece, tmp_path)
    import spanqa.data.text as text

    monkeypatch.setattr(text, "_tokenize", lambda *a: pytest.fail("tokenized again"))
    second = tokenize_corpus([str(corpus_file)], wordpiece, tmp_path)
    for field in ("ids", "word_start", "sentence_offsets", "sentence_doc"):
        assert np.array_equal(getattr(first, field), getattr(second, field))
    assert first.num_documents > 5 and first.word_start.mean() < 1  # some words span several tokens


def test_packed_sequences_are_full_and_keep_every_token_in_order(corpus_file, wordpiece, tmp_path):
    corpus = tokenize_corpus([str(corpus_file)], wordpiece, tmp_path)
    seq = packed_sequences(corpus, 64, wordpiece)
    assert (seq.lengths[:-1] == 64).all() and seq.lengths[-1] <= 64
    body = seq.ids[~seq.special]
    assert np.array_equal(body, corpus.ids)  # separators between documents are the only additions
    assert (seq.nsp_label == IGNORE).all()


def test_nsp_pairs_are_half_random_and_real_pairs_continue_their_document(corpus_file, wordpiece, tmp_path):
    corpus = tokenize_corpus([str(corpus_file)], wordpiece, tmp_path)
    seq = nsp_sequences(corpus, 128, wordpiece, short_seq_prob=0.1, seed=0)
    assert seq.lengths.max() <= 128 and 0 < seq.nsp_label.mean() < 1
    text = corpus.ids.tobytes()
    for i in np.flatnonzero(seq.nsp_label == 0)[:20]:
        lo, hi = seq.row_splits[i], seq.row_splits[i + 1]
        ids, types, special = seq.ids[lo:hi], seq.types[lo:hi], seq.special[lo:hi]
        a, b = ids[~special & (types == 0)], ids[~special & (types == 1)]
        at_a, at_b = text.find(a.tobytes()), text.find(b.tobytes())  # pairs may be trimmed at either end
        assert len(a) and len(b) and 0 <= at_a < at_b <= at_a + 4 * (len(a) + len(b) + 8)  # B follows A


def test_nsp_takes_a_random_next_segment_half_the_time(wordpiece):
    """On documents of many short sentences every chunk has two or more sentences, so the share of random
    next segments is BERT's coin flip (one-sentence chunks, which always take a random B, never occur)."""
    from spanqa.data.text import TokenizedCorpus

    docs, sentences, tokens = 200, 20, 5
    n = docs * sentences
    corpus = TokenizedCorpus(np.arange(n * tokens, dtype=np.int32) % 1000 + 10, np.ones(n * tokens, bool),
                             np.arange(n + 1, dtype=np.int64) * tokens, np.repeat(np.arange(docs), sentences).astype(np.int32))
    seq = nsp_sequences(corpus, 64, wordpiece, short_seq_prob=0.0, seed=0)
    assert len(seq) > 250 and 0.4 < seq.nsp_label.mean() < 0.6


def test_pretrain_phase1_then_phase2_then_fine_tune(corpus_file, tiny_model, tmp_path, caplog):
    """Phase 1 from random weights lowers the MLM loss; phase 2 starts from phase 1's weights at a longer
    length without tokenizing again; `spanqa train` fine-tunes the result into a reader."""
    common = ["--train-data", str(corpus_file), "--eval-data", str(corpus_file), "--report-to", "none",
              "--precision", "fp32", "--cache-dir", str(tmp_path / "cache"), "--optimizer", "lamb",
              "--lamb-bias-correction", "false", "--logging-steps", "5"]
    phase1, phase2 = tmp_path / "phase1", tmp_path / "phase2"
    assert main(["pretrain", "--model", str(tiny_model), "--output-dir", str(phase1), "--max-seq-length", "32",
                 "--per-device-train-batch-size", "16", "--max-steps", "60", "--learning-rate", "5e-2",
                 "--warmup-ratio", "0.1", *common]) == 0
    state = json.loads((phase1 / "trainer_state.json").read_text())
    losses = [r["loss"] for r in state["log_history"] if "loss" in r]
    thirds = [float(np.mean(part)) for part in np.array_split(losses, 3)]
    assert thirds[0] > thirds[1] > thirds[2] and thirds[2] < thirds[0] - 0.5  # MLM + NSP loss falls steadily
    results = json.loads((phase1 / "all_results.json").read_text())
    assert {"eval_mlm_loss", "eval_mlm_accuracy", "eval_nsp_accuracy", "eval_perplexity"} <= set(results)
    assert "LAMB" in (phase1 / "README.md").read_text()

    caplog.set_level(logging.INFO, logger="spanqa")
    assert main(["pretrain", "--model", str(phase1), "--init-weights", "pretrained", "--output-dir", str(phase2),
                 "--max-seq-length", "64", "--per-device-train-batch-size", "4", "--max-steps", "1",
                 "--learning-rate", "1e-12", *common]) == 0
    assert "tokenized corpus: cached" in caplog.text
    from safetensors.torch import load_file

    w1, w2 = load_file(str(phase1 / "model.safetensors")), load_file(str(phase2 / "model.safetensors"))
    assert w1.keys() == w2.keys()
    assert all(torch.allclose(w1[k], w2[k], atol=1e-6) for k in w1)

    from spanqa.reader import Reader

    with pytest.raises(SpanqaError, match="not a reader"):
        Reader.load(phase2)
    reader = tmp_path / "reader"
    assert main(["train", "--model", str(phase2), "--train-data", V1, "--output-dir", str(reader), "--max-steps", "3",
                 "--max-seq-length", "64", "--max-query-length", "16", "--doc-stride", "16", "--report-to", "none",
                 "--precision", "fp32"]) == 0
    answer = Reader.load(reader, device="cpu").answer("Who won?", "The Broncos won the game.")[0]
    assert answer.text in "The Broncos won the game."


def test_pretrain_bad_settings_are_named(tiny_model, tmp_path):
    assert main(["pretrain", "--model", str(tiny_model), "--train-data", str(tmp_path / "missing.txt"),
                 "--output-dir", str(tmp_path / "o"), "--report-to", "none"]) == 2
    assert main(["pretrain", "--model", str(tiny_model), "--output-dir", str(tmp_path / "o2"), "--report-to", "none"]) == 2
    with pytest.raises(SpanqaError, match="--init-weights"):
        from spanqa.tasks.pretrain import PretrainConfig

        PretrainConfig(init_weights="zeros")
