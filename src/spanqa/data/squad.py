"""SQuAD v1.1 / v2.0 JSON: {"version", "data": [{"title", "paragraphs": [{"context", "qas": [...]}]}]}."""

from __future__ import annotations

from typing import Any

from spanqa.data.types import Answer, Example, QADataset
from spanqa.files import get_field
from spanqa.errors import SpanqaError


def parse_squad(doc: Any, source: str) -> QADataset:
    """Turn a parsed SQuAD document into a `QADataset`.

    Raises:
        SpanqaError: naming the JSON path of the first field that is missing or of the wrong type.
    """
    if not isinstance(doc, dict) or not isinstance(doc.get("data"), list):
        raise SpanqaError(f"{source}: expected SQuAD JSON, an object with a 'data' list of articles.")
    examples = [ex for a, article in enumerate(doc["data"]) for ex in article_examples(article, a, source)]
    return QADataset(examples, source, "squad", str(doc.get("version", "")))


def article_examples(article: Any, a: int, source: str) -> list[Example]:
    """The questions of `data[a]`; errors name the JSON path."""
    where = f"data[{a}]"
    title = get_field(article, "title", str, source, where, default="")
    examples = []
    for p, para in enumerate(get_field(article, "paragraphs", list, source, where)):
        pwhere = f"{where}.paragraphs[{p}]"
        context = get_field(para, "context", str, source, pwhere)
        for q, qa in enumerate(get_field(para, "qas", list, source, pwhere)):
            examples.append(_example(qa, context, title, source, f"{pwhere}.qas[{q}]"))
    return examples


def _example(qa: Any, context: str, title: str, source: str, where: str) -> Example:
    qid = get_field(qa, "id", (str, int), source, where)
    question = get_field(qa, "question", str, source, where)
    raw = get_field(qa, "answers", list, source, where, default=[])
    answers = tuple(_answer(x, source, f"{where}.answers[{i}]") for i, x in enumerate(raw))
    impossible = bool(qa.get("is_impossible", False))
    return Example(str(qid), question, context, () if impossible else answers, impossible, title)


def _answer(obj: Any, source: str, where: str) -> Answer:
    text = get_field(obj, "text", str, source, where)
    start = get_field(obj, "answer_start", int, source, where, default=-1)
    return Answer(text, start)
