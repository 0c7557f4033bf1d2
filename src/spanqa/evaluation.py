"""Score an official-format predictions file against any supported data source."""

from __future__ import annotations

import math
from pathlib import Path

from spanqa.data import Example, QADataset
from spanqa.files import read_json
from spanqa.errors import SpanqaError
from spanqa.metrics import GoldQuestion, score_predictions


def gold_questions(dataset: QADataset) -> list[GoldQuestion]:
    """The metric view of a dataset: id, gold texts, has-answer (as the official v2 script decides it)."""
    return [gold_question(e) for e in dataset.examples]


def gold_question(example: Example) -> GoldQuestion:
    """The metric view of one question (what a stream of questions keeps for the scores)."""
    return GoldQuestion(example.id, tuple(example.gold_texts), bool(example.gold_texts))


def load_predictions(path: str | Path) -> dict[str, str]:
    """Read `{id: answer_text}`; `""` means "no answer".

    Raises:
        SpanqaError: the file is not a JSON object whose values are all strings.
    """
    obj = read_json(path, "an object {question id: answer text}")
    if not isinstance(obj, dict):
        raise SpanqaError(f"{path}: expected a JSON object {{question id: answer text}}, got {type(obj).__name__}.")
    bad = [k for k, v in obj.items() if not isinstance(v, str)]
    if bad:
        raise SpanqaError(
            f"{path}: the answer for id '{bad[0]}' is {type(obj[bad[0]]).__name__}, expected a string "
            f"({len(bad)} such ids)."
        )
    return obj


def load_na_probs(path: str | Path, ids: list[str]) -> dict[str, float]:
    """Read `{id: probability of no answer}` and check it covers `ids` with numbers in [0, 1].

    Raises:
        SpanqaError: not an object, a value that is not a number in [0, 1], or ids without a probability.
    """
    obj = read_json(path, "an object {question id: no-answer probability}")
    if not isinstance(obj, dict):
        raise SpanqaError(f"{path}: expected a JSON object {{question id: no-answer probability}}.")
    for k, v in obj.items():
        if isinstance(v, bool) or not isinstance(v, (int, float)) or math.isnan(v) or not 0.0 <= v <= 1.0:
            raise SpanqaError(f"{path}: the probability for id '{k}' is {v!r}, expected a number in [0, 1].")
    missing = [i for i in ids if i not in obj]
    if missing:
        raise SpanqaError(
            f"{path}: no probability for {len(missing)} question id(s), e.g. {', '.join(missing[:3])}; "
            "the file must cover every question in the data."
        )
    return {k: float(v) for k, v in obj.items()}


def evaluate(
    dataset: QADataset,
    predictions: dict[str, str],
    na_probs: dict[str, float] | None = None,
    na_prob_thresh: float = 1.0,
) -> dict[str, float | int]:
    """Official-equivalent scores of `predictions` on `dataset` (see `spanqa.metrics`)."""
    return score_predictions(gold_questions(dataset), predictions, dataset.scoring, na_probs, na_prob_thresh)
