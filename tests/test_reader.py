"""The Reader: the one route from a model to answers. Old folders load; no-answer settings act."""

import json
import shutil

import numpy as np
import pytest
from conftest import FIXTURES

from spanqa.artifacts import ReaderInfo
from spanqa.cli import main
from spanqa.data import load_examples
from spanqa.errors import SpanqaError
from spanqa.reader import Reader, ReaderConfig

V2 = str(FIXTURES / "squad-v2.0-dev-fixture.json")
LEGACY = FIXTURES / "legacy-reader-v2"  # written by spanqa 195ab85, before ReaderInfo had a schema version


def test_a_folder_written_before_the_typed_artifact_loads_and_answers_as_it_did():
    recorded = json.loads((FIXTURES / "legacy-reader-v2-predictions.json").read_text())["predictions"]
    reader = Reader.load(LEGACY, precision="fp32", device="cpu")
    assert reader.allow_null and reader.data.max_seq_length == 128 and reader.data.doc_stride == 32
    examples = [e for e in load_examples(V2).examples if e.id in recorded]
    for pred in reader.predict(examples):
        want = recorded[pred.id]
        assert pred.answer == want["answer"]
        assert pred.na_prob == pytest.approx(want["na_prob"], abs=1e-6)
        assert [[s.text, s.start, s.end] for s in pred.spans[:3]] == [n[:3] for n in want["nbest"]]
        assert [s.score for s in pred.spans[:3]] == pytest.approx([n[3] for n in want["nbest"]], abs=1e-5)


def null_wins(pred, threshold: float) -> bool:
    """The SQuAD v2 rule, written out: abstain when null score - best span score > threshold."""
    return pred.null_score - pred.spans[0].score > threshold


def test_a_v2_reader_answers_empty_exactly_where_the_null_score_wins():
    examples = load_examples(V2).examples[:60]
    probe = Reader.load(LEGACY, precision="fp32", device="cpu", null_score_diff_threshold=0.0)
    diffs = np.array([p.null_score - p.spans[0].score for p in probe.predict(examples)])
    threshold = float(np.median(diffs))  # about half the questions abstain: both outcomes occur
    reader = Reader.load(LEGACY, precision="fp32", device="cpu", null_score_diff_threshold=threshold)
    preds = reader.predict(examples)
    empty = [p.answer == "" for p in preds]
    assert 0 < sum(empty) < len(preds)
    assert empty == [null_wins(p, threshold) for p in preds]
    assert all(0 < p.na_prob < 1 for p in preds)
    assert reader.answer(examples[0].question, examples[0].context)[0].is_no_answer == empty[0]


def test_a_plain_hub_qa_folder_abstains_only_when_allowed(tiny_model):
    examples = load_examples(V2).examples[:40]
    never = Reader.load(tiny_model, precision="fp32", device="cpu", null_score_diff_threshold=-1e9)
    assert not never.allow_null and all(p.answer and p.na_prob == 0 for p in never.predict(examples))
    always = Reader.load(tiny_model, ReaderConfig(precision="fp32", device="cpu", allow_null=True,
                                                  null_score_diff_threshold=-1e9))
    assert always.allow_null and all(p.answer == "" for p in always.predict(examples))


def test_the_v2_reader_can_be_told_never_to_abstain():
    reader = Reader.load(LEGACY, precision="fp32", device="cpu", allow_null=False)
    assert all(p.answer for p in reader.predict(load_examples(V2).examples[:20]))


def test_reader_config_overrides_window_and_decode_settings_of_the_folder():
    reader = Reader.load(LEGACY, ReaderConfig(precision="fp32", device="cpu", max_seq_length=96, doc_stride=16,
                                              n_best_size=3, batch_size=4))
    assert (reader.data.max_seq_length, reader.data.doc_stride, reader.data.max_query_length) == (96, 16, 32)
    assert reader.decode.n_best_size == 3 and reader.batch_size == 4
    assert reader.decode.null_score_diff_threshold == ReaderInfo.load(LEGACY).decode.null_score_diff_threshold


@pytest.mark.parametrize("flags, abstains", [(["--allow-null", "--null-score-diff-threshold=-1e9"], True),
                                             (["--null-score-diff-threshold=-1e9"], False),
                                             (["--no-allow-null", "--null-score-diff-threshold=-1e9"], False)])
def test_predict_and_ask_flags_reach_the_reader(tiny_model, tmp_path, capsys, flags, abstains):
    out = tmp_path / "p.json"
    assert main(["predict", "--model", str(tiny_model), V2, "--output", str(out), "--max-samples", "10",
                 "--precision", "fp32", *flags]) == 0
    answers = json.loads(out.read_text()).values()
    assert all(a == "" for a in answers) if abstains else all(a for a in answers)
    capsys.readouterr()
    assert main(["ask", "--model", str(tiny_model), "--question", "Who?", "--context", "Ann met Bob.",
                 "--no-color", *flags]) == 0
    first = capsys.readouterr().out.splitlines()[0]
    assert ("no answer" in first) == abstains


def test_a_classifier_folder_is_refused_with_what_to_do(tmp_path, tiny_model):
    folder = tmp_path / "clf"
    shutil.copytree(tiny_model, folder)
    (folder / "spanqa_classifier.json").write_text('{"labels": [0, 1]}')
    with pytest.raises(Exception, match="holds a classifier, not a reader.*spanqa train --model"):
        Reader.load(folder)


def test_a_lone_surrogate_is_a_clear_error_naming_the_field_and_position(tiny_model, capsys):
    reader = Reader.load(tiny_model, precision="fp32", device="cpu")
    with pytest.raises(SpanqaError, match=r"question '0': context character 8 is a lone surrogate \(U\+D83D"):
        reader.answer("Who?", "A smile \ud83d here")
    with pytest.raises(SpanqaError, match="question character 3 is a lone surrogate"):
        reader(question="Who\udc00?", context="A smile here")
    assert main(["ask", "--model", str(tiny_model), "--question", "Who\ud83d?", "--context", "Text."]) == 2
    assert "lone surrogate" in capsys.readouterr().err


@pytest.mark.parametrize("family", ["bert", "modernbert"])
def test_bf16_weights_keep_the_span_head_in_fp32_whatever_it_is_named(family):
    import torch
    from transformers import BertConfig, BertForQuestionAnswering, ModernBertConfig, ModernBertForQuestionAnswering

    from spanqa.reader import bf16_weights, span_head

    small = dict(vocab_size=100, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                 pad_token_id=0)
    model = (BertForQuestionAnswering(BertConfig(**small)) if family == "bert" else
             ModernBertForQuestionAnswering(ModernBertConfig(**small, bos_token_id=1, eos_token_id=2,
                                                             cls_token_id=1, sep_token_id=2)))
    name, _ = span_head(model)
    assert name == {"bert": "qa_outputs", "modernbert": "classifier"}[family]
    converted = bf16_weights(model)
    head = converted.get_submodule(name)
    assert type(head).__name__ == "_Float32Head" and head.head.weight.dtype == torch.float32
    ids = torch.randint(3, 100, (2, 12))
    with torch.no_grad():
        out = converted(input_ids=ids, attention_mask=torch.ones_like(ids))
    assert out.start_logits.dtype == torch.float32


@pytest.mark.parametrize("family", ["bert", "albert"])
def test_segment_ids_reach_a_model_built_for_them_whatever_the_tokenizer_lists(family):
    import copy

    import torch
    from conftest import make_tokenizer
    from transformers import AlbertConfig, AlbertForQuestionAnswering, BertConfig, BertForQuestionAnswering

    from spanqa.artifacts import ReaderInfo
    from spanqa.tokenization import input_names_for

    with_types = make_tokenizer("wordpiece")
    without = copy.deepcopy(with_types)  # the same vocabulary, minus token_type_ids in its list
    without.model_input_names = ["input_ids", "attention_mask"]
    small = dict(vocab_size=len(with_types), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                 num_attention_heads=2, type_vocab_size=2)
    torch.manual_seed(0)
    model = (BertForQuestionAnswering(BertConfig(**small)) if family == "bert" else
             AlbertForQuestionAnswering(AlbertConfig(**small, embedding_size=16))).eval()
    with torch.no_grad():  # segment embeddings that matter: make type 1 far from type 0
        embeddings = model.base_model.embeddings.token_type_embeddings
        embeddings.weight[1] = embeddings.weight[0] + 1.0
    assert "token_type_ids" not in input_names_for(without) and "token_type_ids" in input_names_for(without, model)
    pairs = [("Who designed the tower?", "The tower was designed by Gustave Eiffel's company in Paris.")]
    (got,), (want,) = (Reader.from_model(model, tok, ReaderInfo(), ReaderConfig(precision="fp32")).answer_batch(pairs)
                       for tok in (without, with_types))
    assert (got[0].start, got[0].end) == (want[0].start, want[0].end)  # a random model's lower n-best nearly ties
    assert got[0].score == pytest.approx(want[0].score, abs=1e-5)
    enc = with_types(*pairs[0], return_tensors="pt")
    with torch.no_grad():
        typed = model(**enc).start_logits
        untyped = model(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"]).start_logits
    assert not torch.allclose(typed, untyped)  # the segment ids change the logits: dropping them was a real loss


def test_an_encoder_without_a_trained_span_head_is_refused_unless_allowed(tmp_path, wordpiece, caplog, capsys):
    """An encoder folder loads as a QA model with a span head initialised at load: random answers dressed as a
    reader's. The Python API and the CLI refuse it; --allow-untrained-head runs it with a warning."""
    import logging

    from transformers import BertConfig, BertModel

    BertModel(BertConfig(vocab_size=len(wordpiece), hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                         intermediate_size=64)).save_pretrained(tmp_path)
    wordpiece.save_pretrained(tmp_path)
    with pytest.raises(SpanqaError, match=r"span head \(qa_outputs\) was initialised at load"):
        Reader.load(str(tmp_path), precision="fp32")
    with caplog.at_level(logging.WARNING, logger="spanqa.reader"):
        reader = Reader.load(str(tmp_path), precision="fp32", allow_untrained_head=True)
    assert "running it anyway" in caplog.text and reader.answer("Who wrote it?", "Ada wrote it.")
    assert main(["ask", "--model", str(tmp_path), "--question", "Who?", "--context", "Ada wrote it."]) == 2
    assert "--allow-untrained-head" in capsys.readouterr().err
    assert main(["ask", "--model", str(tmp_path), "--question", "Who?", "--context", "Ada wrote it.",
                 "--allow-untrained-head"]) == 0


def test_alternatives_are_distinct_answers_for_one_passage_as_for_many(tiny_reader):
    """Regression: one passage's top 3 were "radioactivity", "on radioactivity", "research on radioactivity"."""
    from spanqa.answering.passages import _overlaps

    reader = Reader.load(tiny_reader, precision="fp32")
    context = " ".join(["The tower was designed by the company of Gustave Eiffel and built in 1889 in Paris."] * 3)
    question = "Who designed the tower?"
    for ctx in (context, [context, context[:90]]):
        answers = reader.answer(question, ctx, top_k=8)
        assert len(answers) >= 2
        for i, a in enumerate(answers):
            assert not any(b.passage == a.passage and _overlaps(a, b, 0.01) for b in answers[:i])
    everything = reader.answer(question, context, top_k=8, overlap_threshold=None)
    assert any(_overlaps(a, b, 0.01) for i, a in enumerate(everything) for b in everything[:i])
