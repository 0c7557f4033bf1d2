"""MRQA 2019 jsonl(.gz): a header line, then one context per line with its `qas`.

Each question is keyed by `qid`. Training spans come from `detected_answers[].char_spans` (inclusive
ends); scoring uses the `answers` strings, as `mrqa_official_eval.py` does.
"""

from __future__ import annotations

from typing import Iterator

from spanqa.files import get_field, iter_jsonl
from spanqa.data.types import Answer, Example, QADataset
from spanqa.errors import SpanqaError


def parse_mrqa(text: str, source: str) -> QADataset:
    """Parse MRQA jsonl text into a `QADataset`; errors name the line."""
    examples = list(mrqa_examples(iter_jsonl(text, source), source))
    if not examples:
        raise SpanqaError(f"{source}: MRQA file with a header but no questions.")
    return QADataset(examples, source, "mrqa")


def mrqa_examples(lines, source: str) -> Iterator[Example]:
    """The questions of MRQA (line number, object) pairs, in order; errors name the line."""
    dataset_name = ""
    for lineno, obj in lines:
        if "header" in obj:
            header = obj["header"] if isinstance(obj["header"], dict) else {}
            dataset_name = str(header.get("dataset", ""))
            continue
        where = f"line {lineno}"
        context = get_field(obj, "context", str, source, where)
        for q, qa in enumerate(get_field(obj, "qas", list, source, where)):
            yield _example(qa, context, dataset_name, source, f"{where}: qas[{q}]")


def _example(qa: dict, context: str, title: str, source: str, where: str) -> Example:
    qid = get_field(qa, "qid", str, source, where)
    question = get_field(qa, "question", str, source, where)
    gold = get_field(qa, "answers", list, source, where, default=[])
    spans = []
    for d, det in enumerate(get_field(qa, "detected_answers", list, source, where, default=[])):
        char_spans = get_field(det, "char_spans", list, source, f"{where}.detected_answers[{d}]")
        if char_spans:
            start, end = char_spans[0]
            spans.append(Answer(context[start : end + 1], int(start)))
    return Example(qid, question, context, tuple(spans), False, title, tuple(str(g) for g in gold))
