"""SQuAD v1.1 / v2.0 and MRQA metrics, equal to the official scripts to the last digit.

The three official scripts share one normalisation (lower case, drop ASCII punctuation, drop the words
a/an/the, squeeze whitespace) but differ in small ways that change scores:

- v1.1 and MRQA: EM/F1 are the max over all gold texts; F1 is 0 when no token is shared, even when both
  sides normalise to nothing. A missing prediction scores 0 and still counts in the total.
- v2.0: gold texts that normalise to "" are dropped; a question with none left has gold [""]. F1 of
  two empty token lists is 1 (both say "no answer"). With no-answer probabilities, a prediction whose
  probability is above `na_prob_thresh` counts as "no answer".

Worked example of the no-answer threshold (v2.0): gold "" (unanswerable), prediction "Paris", na_prob 0.8.
With na_prob_thresh 1.0 the prediction stands (EM 0); with 0.5 it becomes "no answer" (EM 1).
The best-threshold search walks questions by rising na_prob, turning each into "no answer" in turn, and
keeps the threshold with the highest total: `best_f1_thresh` is what a reader should use later.

All scores are percentages, unrounded. Functions are pure; `score_predictions` is the accumulator.
"""

from __future__ import annotations

import re
import string
from collections import Counter
from dataclasses import dataclass

_PUNCT = frozenset(string.punctuation)
_ARTICLES = re.compile(r"\b(a|an|the)\b")


def normalize_answer(text: str) -> str:
    """Lower-case, strip ASCII punctuation and articles, squeeze whitespace (the official rule).

    >>> normalize_answer("The  Denver-Broncos!")
    'denverbroncos'
    """
    text = "".join(ch for ch in text.lower() if ch not in _PUNCT)
    return " ".join(_ARTICLES.sub(" ", text).split())


def exact_match(prediction: str, gold: str) -> float:
    """1.0 when both normalise to the same string."""
    return float(normalize_answer(prediction) == normalize_answer(gold))


def f1_v1(prediction: str, gold: str) -> float:
    """Token F1 as in evaluate-v1.1.py and MRQA: 0 when no token is shared (also when both are empty)."""
    return _token_f1(normalize_answer(prediction).split(), normalize_answer(gold).split(), empty_match=False)


def f1_v2(prediction: str, gold: str) -> float:
    """Token F1 as in evaluate-v2.0.py: two empty answers agree (1.0); one empty answer scores 0."""
    return _token_f1(normalize_answer(prediction).split(), normalize_answer(gold).split(), empty_match=True)


def _token_f1(pred: list[str], gold: list[str], empty_match: bool) -> float:
    if empty_match and (not pred or not gold):
        return float(pred == gold)
    common = sum((Counter(pred) & Counter(gold)).values())
    if common == 0:
        return 0.0
    precision, recall = common / len(pred), common / len(gold)
    return 2 * precision * recall / (precision + recall)


def score_question(prediction: str, golds: tuple[str, ...] | list[str], scoring: str) -> tuple[float, float]:
    """(EM, F1) of one prediction against its gold texts, each in [0, 1].

    Args:
        scoring: "squad-v1.1", "mrqa" or "squad-v2.0".
    """
    if scoring == "squad-v2.0":
        golds = [g for g in golds if normalize_answer(g)] or [""]
        return max(exact_match(prediction, g) for g in golds), max(f1_v2(prediction, g) for g in golds)
    if not golds:
        return 0.0, 0.0
    return max(exact_match(prediction, g) for g in golds), max(f1_v1(prediction, g) for g in golds)


@dataclass(frozen=True)
class GoldQuestion:
    """What the metrics need of one question: its id, gold texts and whether it has an answer."""

    id: str
    golds: tuple[str, ...]
    has_answer: bool


def score_predictions(
    gold: list[GoldQuestion],
    predictions: dict[str, str],
    scoring: str,
    na_probs: dict[str, float] | None = None,
    na_prob_thresh: float = 1.0,
) -> dict[str, float | int]:
    """Score predictions against gold questions like the official script for `scoring`.

    Returns:
        `exact`, `f1`, `total`, `missing` (gold ids without a prediction, scored 0), `unknown`
        (predicted ids not in the gold data, ignored); for v2.0 also the HasAns_/NoAns_ splits, and with
        `na_probs` the `best_exact`, `best_exact_thresh`, `best_f1`, `best_f1_thresh` search.
    """
    gold_ids = {q.id for q in gold}
    raw_em, raw_f1 = {}, {}
    for q in gold:
        pred = predictions.get(q.id)
        raw_em[q.id], raw_f1[q.id] = (0.0, 0.0) if pred is None else score_question(pred, q.golds, scoring)
    out: dict[str, float | int] = {}
    if scoring != "squad-v2.0":
        out.update(_means(raw_em, raw_f1, [q.id for q in gold], ""))
    else:
        probs = na_probs or {}
        em = _thresholded(raw_em, gold, probs, na_prob_thresh)
        f1 = _thresholded(raw_f1, gold, probs, na_prob_thresh)
        out.update(_means(em, f1, [q.id for q in gold], ""))
        out.update(_means(em, f1, [q.id for q in gold if q.has_answer], "HasAns_"))
        out.update(_means(em, f1, [q.id for q in gold if not q.has_answer], "NoAns_"))
        if na_probs is not None:
            out.update(best_thresholds(raw_em, raw_f1, gold, predictions, na_probs))
    out["missing"] = sum(1 for q in gold if q.id not in predictions)
    out["unknown"] = sum(1 for k in predictions if k not in gold_ids)
    return out


def _means(em: dict, f1: dict, ids: list[str], prefix: str) -> dict[str, float | int]:
    if not ids:
        return {}
    return {
        f"{prefix}exact": 100.0 * sum(em[i] for i in ids) / len(ids),
        f"{prefix}f1": 100.0 * sum(f1[i] for i in ids) / len(ids),
        f"{prefix}total": len(ids),
    }


def _thresholded(raw: dict, gold: list[GoldQuestion], na_probs: dict, thresh: float) -> dict[str, float]:
    """A question whose no-answer probability is above `thresh` scores 1 iff it has no gold answer."""
    return {
        q.id: float(not q.has_answer) if na_probs.get(q.id, 0.0) > thresh else raw[q.id] for q in gold
    }


def best_thresholds(
    raw_em: dict, raw_f1: dict, gold: list[GoldQuestion], predictions: dict[str, str], na_probs: dict
) -> dict[str, float]:
    """The official best no-answer threshold search, for EM and for F1."""
    out = {}
    for name, raw in (("exact", raw_em), ("f1", raw_f1)):
        score, thresh = find_best_threshold(raw, gold, predictions, na_probs)
        out[f"best_{name}"], out[f"best_{name}_thresh"] = score, thresh
    return out


def find_best_threshold(
    raw: dict[str, float], gold: list[GoldQuestion], predictions: dict[str, str], na_probs: dict[str, float]
) -> tuple[float, float]:
    """Best total score over thresholds, and the threshold (a no-answer probability) that gives it.

    Start with every question answered "no answer" (score = number of unanswerable questions), then
    walk questions by rising probability (ties in the order of `na_probs`), letting each answer: an
    answerable one gains its raw score, an unanswerable one loses 1 if the reader gave a non-empty text.
    """
    has_answer = {q.id: q.has_answer for q in gold}
    current = best = float(sum(1 for q in gold if not q.has_answer))
    best_thresh = 0.0
    for qid in sorted(na_probs, key=na_probs.__getitem__):
        if qid not in raw:
            continue
        if has_answer[qid]:
            current += raw[qid]
        elif predictions.get(qid):
            current -= 1
        if current > best:
            best, best_thresh = current, na_probs[qid]
    return 100.0 * best / len(raw), best_thresh
