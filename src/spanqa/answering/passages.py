"""Answers across many passages: one question, the passages a retriever found, one ranked list.

Each passage is decoded as usual (windows, max-context ownership, n-best by start + end logit). Spans are
ranked across passages by that raw score: one model puts every passage's logits on one scale, whereas a
per-passage softmax would not compare (each passage's probabilities sum to 1 whatever its relevance).
Passages are treated like the windows of one long document: the "no answer" score is the minimum of the
passages' null scores, and a SQuAD v2 reader abstains when it beats the best span by more than its
threshold (the rule `decode` applies across windows).

Passages a retriever ranked (`rank_weight` > 0): a span of the passage at rank r (1 = first) is ranked by
score - rank_weight * ln(r), i.e. the retriever's order as a prior P(passage) proportional to r^-rank_weight
(BERTserini fuses retriever and reader scores the same way; a rank needs no calibration between BM25, cosine
and fused scores). Without it the reader's logits alone decide, and every extra passage is one more place to
find a plausible wrong span. Worked example, weight 3: a span scoring 9.0 in passage 1 beats one scoring 10.5
in passage 2 (10.5 - 3 ln 2 = 8.42).

Duplicates: windows overlap and n-best lists hold near-copies ("Eiffel", "Gustave Eiffel"), so a span that
overlaps a better span of the same passage by more than `overlap_threshold` of either one's length is
dropped. Worked example, threshold 0.01: "Gustave Eiffel" [26, 40) is kept first; "Eiffel" [34, 40) overlaps
it by 6 chars, 100% of its length: dropped; "1889" elsewhere in the passage: kept.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from spanqa.decode import Prediction, Span, no_answer


@dataclass(frozen=True)
class Ranked:
    """One span of one passage in the pooled ranking.

    Attributes:
        passage: index of the passage in the caller's list.
        span: the decoded span (text and char offsets within that passage).
        probability: softmax of the span scores over all kept spans of all passages.
    """

    passage: int
    span: Span
    probability: float


@dataclass(frozen=True)
class Pooled:
    """A question's answers over many passages: ranked spans, and the no-answer verdict."""

    ranked: list[Ranked]
    null_score: float
    no_answer_probability: float
    abstain: bool


def pool(preds: list[Prediction], allow_null: bool, null_score_diff_threshold: float,
         overlap_threshold: float | None = 0.01, rank_weight: float = 0.0) -> Pooled:
    """Rank the n-best spans of every passage's prediction together (see the module doc).

    Args:
        preds: one `Prediction` per passage, in passage order.
        allow_null: a SQuAD v2 reader (may abstain).
        overlap_threshold: drop spans overlapping a better one of the same passage by more than this
            fraction of either's length; None keeps every span.
        rank_weight: `preds` are in a retriever's order: discount passage i's spans by rank_weight * ln(i + 1).
    """
    prior = [-rank_weight * math.log(i + 1) for i in range(len(preds))]
    candidates = [(i, s) for i, p in enumerate(preds) for s in p.spans]
    candidates.sort(key=lambda c: (-(c[1].score + prior[c[0]]), c[0], c[1].start, c[1].end))
    kept: list[tuple[int, Span]] = []
    for passage, span in candidates:
        if overlap_threshold is None or not any(
            q == passage and _overlaps(span, other, overlap_threshold) for q, other in kept
        ):
            kept.append((passage, span))
    scores = np.array([s.score + prior[i] for i, s in kept], dtype=np.float64)
    probs = np.exp(scores - scores.max()) if len(scores) else scores
    probs = probs / probs.sum() if len(probs) else probs
    null = min(p.null_score for p in preds)
    if not allow_null:
        return Pooled([Ranked(i, s, float(p)) for (i, s), p in zip(kept, probs)], null, 0.0, False)
    if not kept:
        return Pooled([], null, 1.0, True)
    na_prob, abstain = no_answer(null, kept[0][1].score, null_score_diff_threshold)  # the reader's own verdict
    return Pooled([Ranked(i, s, float(p)) for (i, s), p in zip(kept, probs)], null, na_prob, abstain)


def _overlaps(a: Span, b: Span, threshold: float) -> bool:
    """True when a and b share more than `threshold` of either one's length (in chars)."""
    shared = min(a.end, b.end) - max(a.start, b.start)
    if shared <= 0:
        return False
    return shared / max(a.end - a.start, 1) > threshold or shared / max(b.end - b.start, 1) > threshold
