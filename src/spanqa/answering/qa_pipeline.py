"""`Reader.__call__`: the calls and outputs of transformers' `pipeline("question-answering")`.

transformers 5.3 removed the pipeline; code written for it moves to spanqa with one changed line:

    qa = pipeline("question-answering", model="runs/minilm")      # before
    qa = Reader.load("runs/minilm")                               # after
    qa(question="Who?", context="...", top_k=2)  ->  [{"score": 0.71, "start": 26, "end": 40, "answer": "..."}, ...]

Accepted as in transformers 4.57: `qa(question=..., context=...)` with strings or lists (one context for
many questions, or pairs), `qa({"question": ..., "context": ...})` or a list of such dicts, `qa(question,
context)`, objects with `question_text` / `context_text` (SquadExample); and the keywords `top_k`,
`handle_impossible_answer`, `max_answer_len`, `max_seq_len`, `doc_stride`, `max_question_len`,
`align_to_words`, `batch_size`, with the pipeline's defaults (not the reader's trained settings: answers
must not change in the move). Output: a dict per question for one answer, a list of dicts for several,
a list of those for several questions.

`score` is the pipeline's: p(start) * p(end) under softmaxes over the window's context tokens and CLS
(`decode.window_log_softmax`); with `handle_impossible_answer` the "no answer" candidate {"answer": "",
"start": 0, "end": 0} scores the minimum over windows of p(CLS) * p(CLS). `align_to_words` widens an
answer to whole words. On a context that fits one window the answers are the pipeline's; on longer ones
spanqa lets only the window where a token has most context start an answer (the pipeline decodes every
window on its own and can return one span twice).
"""

from __future__ import annotations

import dataclasses

import numpy as np

from spanqa.data import Example
from spanqa.errors import SpanqaError

PIPELINE_DEFAULTS = {"top_k": 1, "handle_impossible_answer": False, "max_answer_len": 15, "max_seq_len": None,
                     "doc_stride": 128, "max_question_len": 64, "align_to_words": True, "batch_size": None}


def pipeline_call(reader, args: tuple, kwargs: dict):
    """Answer pipeline-style inputs with `reader`; returns the pipeline's output shape (see the module doc)."""
    given = dict(kwargs)
    pairs = _pairs(args, given)
    unknown = sorted(set(given) - set(PIPELINE_DEFAULTS))
    if unknown:
        raise SpanqaError(f"unexpected argument(s) {', '.join(unknown)}; a question-answering call takes "
                          f"question, context and {', '.join(PIPELINE_DEFAULTS)}.")
    opts = {**PIPELINE_DEFAULTS, **given}
    top_k = _positive_int("top_k", opts["top_k"])
    max_seq_len = opts["max_seq_len"] or min(384, getattr(reader.tokenizer, "model_max_length", 384) or 384)
    doc_stride = int(opts["doc_stride"])
    if doc_stride > max_seq_len:
        raise SpanqaError(f"doc_stride {doc_stride} is larger than max_seq_len {max_seq_len}; "
                          "the overlap between windows must be shorter than a window.")
    run = dataclasses.replace(
        reader,
        data=dataclasses.replace(reader.data, max_seq_length=_positive_int("max_seq_len", max_seq_len),
                                 doc_stride=doc_stride,
                                 max_query_length=_positive_int("max_question_len", opts["max_question_len"])),
        decode=dataclasses.replace(reader.decode, max_answer_length=_positive_int("max_answer_len",
                                                                                   opts["max_answer_len"]),
                                   n_best_size=max(top_k, reader.decode.n_best_size)),
        allow_null=False,
        batch_size=_positive_int("batch_size", opts["batch_size"] or reader.batch_size),
    )
    examples = [Example(str(i), q, c) for i, (q, c) in enumerate(pairs)]
    results = []
    for ex, pred in zip(examples, run.predict(examples, window_probabilities=True)):
        words = _word_spans(reader.tokenizer, ex.context) if opts["align_to_words"] else None
        answers = [_answer(ex.context, s.start, s.end, s.window_probability, words) for s in pred.spans]
        if opts["handle_impossible_answer"]:
            answers.append({"score": float(pred.null_window_probability), "start": 0, "end": 0, "answer": ""})
        answers = sorted(answers, key=lambda a: a["score"], reverse=True)[:top_k]
        results.append(answers[0] if len(answers) == 1 else answers)
    return results[0] if len(results) == 1 else results


def _pairs(args: tuple, kwargs: dict) -> list[tuple[str, str]]:
    """(question, context) pairs from any input form the pipeline accepted; removes them from `kwargs`."""
    if args:
        if len(args) == 2 and all(isinstance(a, str) for a in args):
            items = [{"question": args[0], "context": args[1]}]
        else:
            items = args[0] if len(args) == 1 else list(args)
            items = items if isinstance(items, (list, tuple)) else [items]
        return [_pair(item, i) for i, item in enumerate(items)]
    if "question" not in kwargs or "context" not in kwargs:
        raise SpanqaError("give question= and context= (strings or lists), a {'question', 'context'} dict, "
                          "or a list of such dicts.")
    question, context = kwargs.pop("question"), kwargs.pop("context")
    if isinstance(question, str) and isinstance(context, str):
        return [_pair({"question": question, "context": context}, 0)]
    if isinstance(question, list) and isinstance(context, str):
        return [_pair({"question": q, "context": context}, i) for i, q in enumerate(question)]
    if isinstance(question, list) and isinstance(context, list):
        if len(question) != len(context):
            raise SpanqaError(f"{len(question)} questions and {len(context)} contexts: lists of questions and "
                              "contexts are paired one to one, so they must have the same length.")
        return [_pair({"question": q, "context": c}, i) for i, (q, c) in enumerate(zip(question, context))]
    raise SpanqaError(f"question is a {type(question).__name__} and context a {type(context).__name__}; "
                      "expected two strings, a list of questions with one context, or two lists of equal length.")


def _pair(item, i: int) -> tuple[str, str]:
    if isinstance(item, dict):
        question, context = item.get("question"), item.get("context")
    else:  # a SquadExample, or anything shaped like one
        question, context = getattr(item, "question_text", None), getattr(item, "context_text", None)
    for name, value in (("question", question), ("context", context)):
        if not isinstance(value, str) or not value.strip():
            raise SpanqaError(f"input {i}: '{name}' must be a non-empty string, got {value!r:.60}.")
    return question, context


def _positive_int(name: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise SpanqaError(f"{name} {value!r}: expected a whole number of at least 1.")
    return int(value)


def _word_spans(tokenizer, context: str) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """(word of each char or -1, word starts, word ends) from the tokenizer's own word split; None when the
    tokenizer gives no word ids (then answers keep their token offsets, as the pipeline's fallback did)."""
    try:
        enc = tokenizer(context, add_special_tokens=False, return_offsets_mapping=True)
        word_ids = enc.word_ids()
    except (ValueError, AttributeError, NotImplementedError):
        return None
    n_words = max((w for w in word_ids if w is not None), default=-1) + 1
    starts, ends = np.full(n_words, len(context)), np.zeros(n_words, dtype=np.int64)
    for w, (a, b) in zip(word_ids, enc["offset_mapping"]):
        if w is not None and b > a:
            starts[w], ends[w] = min(starts[w], a), max(ends[w], b)
    char_word = np.full(len(context), -1)
    for w in range(n_words):
        if ends[w] > starts[w]:
            char_word[starts[w] : ends[w]] = w
    return char_word, starts, ends


def _answer(context: str, start: int, end: int, score: float, words) -> dict:
    """The pipeline's answer dict, widened to whole words when `words` is given."""
    if words is not None:
        char_word, word_starts, word_ends = words
        first, last = char_word[start], char_word[end - 1]
        if first >= 0 and last >= 0:
            start, end = int(word_starts[first]), int(word_ends[last])
    return {"score": float(score), "start": int(start), "end": int(end), "answer": context[start:end]}
