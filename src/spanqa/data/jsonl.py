"""Row-shaped data: one question per row, as in simple JSONL files and Hugging Face `squad` rows.

Row: {"id", "question", "context", "answers": {"text": [...], "answer_start": [...]}, "title"?}.
A row whose answer list is empty is an unanswerable (SQuAD v2) question.
"""

from __future__ import annotations

from typing import Any

from spanqa.files import get_field, iter_jsonl
from spanqa.data.types import Answer, Example, QADataset
from spanqa.errors import SpanqaError


def parse_jsonl(text: str, source: str) -> QADataset:
    """Parse JSONL rows; errors name the line."""
    examples = [row_to_example(obj, source, f"line {n}") for n, obj in iter_jsonl(text, source)]
    return QADataset(examples, source, "jsonl")


def row_to_example(row: Any, source: str, where: str) -> Example:
    """Turn one row into an `Example`; errors name `where` (a line or a row index)."""
    qid = get_field(row, "id", (str, int), source, where)
    answers = get_field(row, "answers", dict, source, where, default={"text": [], "answer_start": []})
    texts = answers.get("text", [])
    starts = answers.get("answer_start", [-1] * len(texts))
    if not isinstance(texts, list) or not isinstance(starts, list) or len(texts) != len(starts):
        raise SpanqaError(
            f"{source}: {where}.answers: expected lists 'text' and 'answer_start' of the same length."
        )
    spans = tuple(Answer(str(t), int(s)) for t, s in zip(texts, starts))
    return Example(
        str(qid),
        get_field(row, "question", str, source, where),
        get_field(row, "context", str, source, where),
        spans,
        not spans,
        str(row.get("title") or ""),
    )
