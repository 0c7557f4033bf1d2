"""Reader.__call__: transformers' question-answering pipeline's inputs, outputs and scores."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import V1

from spanqa.data import load_examples
from spanqa.errors import SpanqaError
from spanqa.answering.qa_pipeline import _answer, _word_spans
from spanqa.reader import Reader

REF_PYTHON = Path(__file__).parents[2] / "bench" / ".ref" / "transformers-4.57" / "bin" / "python"


@pytest.fixture(scope="module")
def reader(tiny_model):
    return Reader.load(tiny_model, precision="fp32", device="cpu")


@pytest.fixture(scope="module")
def short_examples():
    """Fixture questions whose context fits one 384-token window (the pipeline's and spanqa's answers agree)."""
    return [e for e in load_examples(V1).examples if len(e.context) < 900][:12]


def pipeline_reference(model, tokenizer, question, context, max_answer_len=15, top_k=1, impossible=False):
    """The 4.57 pipeline's single-window algorithm, written out: pair encoding, masked softmaxes with CLS
    kept in them, outer product of probabilities, band of max_answer_len, answer widened to whole words."""
    enc = tokenizer(question, context, return_offsets_mapping=True, truncation="only_second", max_length=384)
    with torch.no_grad():
        out = model(**{k: torch.tensor([enc[k]]) for k in ("input_ids", "token_type_ids", "attention_mask")})
    seq = np.array([s if s is not None else -1 for s in enc.sequence_ids()])
    undesired = seq != 1
    undesired[0] = False  # CLS stays in the softmax
    def probs(x):
        x = np.where(undesired, -10000.0, x[0].numpy().astype(np.float64))
        z = np.exp(x - x.max())
        return z / z.sum()
    ps, pe = probs(out.start_logits), probs(out.end_logits)
    null = ps[0] * pe[0]
    ps[0] = pe[0] = 0.0
    outer = np.triu(np.outer(ps, pe)) - np.triu(np.outer(ps, pe), max_answer_len)
    outer[:, seq != 1] = 0
    outer[seq != 1, :] = 0
    order = np.argsort(-outer, axis=None, kind="stable")[:top_k]
    answers = []
    for flat in order:
        i, j = divmod(int(flat), outer.shape[1])
        a = enc.word_to_chars(enc.token_to_word(i), sequence_index=1)[0]
        b = enc.word_to_chars(enc.token_to_word(j), sequence_index=1)[1]
        answers.append({"score": float(outer[i, j]), "start": a, "end": b, "answer": context[a:b]})
    if impossible:
        answers = sorted(answers + [{"score": float(null), "start": 0, "end": 0, "answer": ""}],
                         key=lambda a: -a["score"])[:top_k]
    return answers


def test_answers_and_scores_are_the_pipelines_on_single_window_contexts(reader, short_examples):
    from transformers import AutoModelForQuestionAnswering

    model = AutoModelForQuestionAnswering.from_pretrained(reader.name).eval()
    for ex in short_examples:
        want = pipeline_reference(model, reader.tokenizer, ex.question, ex.context, top_k=3, impossible=True)
        got = reader(question=ex.question, context=ex.context, top_k=3, handle_impossible_answer=True)
        assert [(a["start"], a["end"], a["answer"]) for a in got] == [(a["start"], a["end"], a["answer"]) for a in want]
        assert [a["score"] for a in got] == pytest.approx([a["score"] for a in want], rel=1e-4)


def test_every_input_form_of_the_pipeline_is_accepted_and_shaped_like_its_output(reader, short_examples):
    a, b = short_examples[:2]
    one = reader(question=a.question, context=a.context)
    assert set(one) == {"score", "start", "end", "answer"} and one["answer"] == a.context[one["start"]:one["end"]]
    assert reader(a.question, a.context) == one
    assert reader({"question": a.question, "context": a.context}) == one
    assert reader([{"question": a.question, "context": a.context}]) == one
    two = reader([{"question": a.question, "context": a.context}, {"question": b.question, "context": b.context}])
    assert isinstance(two, list) and two[0] == one and two[1] == reader(question=b.question, context=b.context)
    assert reader(question=[a.question, b.question], context=[a.context, b.context]) == two
    same_context = reader(question=[a.question, a.question + "?"], context=a.context)
    assert len(same_context) == 2 and same(same_context[0], one)  # batched with another: padding differs

    class SquadExample:
        question_text, context_text = a.question, a.context
    assert reader(SquadExample()) == one
    top = reader(question=a.question, context=a.context, top_k=3)
    assert isinstance(top, list) and len(top) == 3 and top[0] == one
    assert top[0]["score"] >= top[1]["score"] >= top[2]["score"]


def same(a: dict, b: dict) -> bool:
    return {k: a[k] for k in ("start", "end", "answer")} == {k: b[k] for k in ("start", "end", "answer")} and \
        a["score"] == pytest.approx(b["score"], rel=1e-5)


def test_bad_pipeline_calls_say_what_was_expected(reader, short_examples):
    a = short_examples[0]
    with pytest.raises(SpanqaError, match="same length"):
        reader(question=[a.question, a.question], context=[a.context])
    with pytest.raises(SpanqaError, match="unexpected argument.*topk"):
        reader(question=a.question, context=a.context, topk=2)
    with pytest.raises(SpanqaError, match="top_k 0"):
        reader(question=a.question, context=a.context, top_k=0)
    with pytest.raises(SpanqaError, match="'context' must be a non-empty string"):
        reader({"question": a.question, "context": "  "})
    with pytest.raises(SpanqaError, match="doc_stride 400"):
        reader(question=a.question, context=a.context, doc_stride=400)


def test_max_answer_len_bounds_the_answer_in_tokens(reader, short_examples):
    for ex in short_examples[:4]:
        tokens = reader.tokenizer(ex.context, add_special_tokens=False, return_offsets_mapping=True)
        single = {tuple(o) for o in tokens["offset_mapping"]}
        got = reader(question=ex.question, context=ex.context, max_answer_len=1, align_to_words=False, top_k=5)
        assert len(got) == 5 and all((a["start"], a["end"]) in single for a in got)


def test_align_to_words_widens_a_span_that_starts_or_ends_inside_a_word(wordpiece):
    context = "The unbelievably tall tower stood."
    words = _word_spans(wordpiece, context)
    pieces = wordpiece(context, add_special_tokens=False, return_offsets_mapping=True)["offset_mapping"]
    inside = [(a, b) for a, b in pieces if context[a - 1 : a].isalpha() and a > 4][0]  # a piece inside a word
    assert _answer(context, inside[0], inside[1], 0.5, words)["answer"] == "unbelievably"
    assert _answer(context, inside[0], inside[1], 0.5, None)["answer"] == context[inside[0]:inside[1]]


@pytest.mark.slow
def test_answers_equal_the_isolated_transformers_4_57_pipeline(tiny_model, reader, short_examples):
    """Where bench/inference.py has made its reference environment (transformers 4.57), ask the real pipeline."""
    if not REF_PYTHON.exists():
        pytest.skip("no reference environment: run python bench/inference.py once to make bench/.ref")
    items = [{"question": e.question, "context": e.context} for e in short_examples]
    script = ("import json, sys; from transformers import pipeline; qa = pipeline('question-answering', "
              f"model={str(tiny_model)!r}, device='cpu'); items = json.load(sys.stdin); "
              "print(json.dumps(qa(items, top_k=2, handle_impossible_answer=True)))")
    out = subprocess.run([str(REF_PYTHON), "-c", script], input=json.dumps(items), capture_output=True, text=True,
                         check=True, env={"PATH": "/usr/bin:/bin", "HF_HUB_OFFLINE": "1", "PYTHONNOUSERSITE": "1"})
    want = json.loads(out.stdout.strip().splitlines()[-1])
    got = reader(items, top_k=2, handle_impossible_answer=True)
    for w, g in zip(want, got):
        assert [(a["start"], a["end"], a["answer"]) for a in g] == [(a["start"], a["end"], a["answer"]) for a in w]
        assert [a["score"] for a in g] == pytest.approx([a["score"] for a in w], rel=1e-3)
