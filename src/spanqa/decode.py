"""Start/end logits -> n-best spans -> answers. Pure and vectorised: arrays in, arrays out, no I/O.

Legend: F = windows, L = padded window length, A = max_answer_length, K = n_best_size, E = examples.

A span (i, j) of a window is valid when i <= j < i + A, token i is a context token the window owns
(max context), token j is a context token, and both cover text. Its score is start[i] + end[j].

Exact n-best without an L x L grid: for each start i, the best end in its band is a sliding maximum of
the masked end logits, m[i] = start[i] + max(end[i : i + A]). Every span's score is <= m of its start,
so the K best spans of a window start at the K starts with the highest m (ties aside). Scoring those K
starts against their A ends ([F, K, A]) and keeping the K best gives the exact per-window n-best; a
question's n-best is the best K of its windows' n-bests.

The no-answer rule (SQuAD v2). Each window's null score is start[CLS] + end[CLS]; a question's null
score is the minimum over its windows (as in google-research/bert and transformers' run_qa).
Worked example: null 2.0, best span 1.5 -> diff = 2.0 - 1.5 = 0.5; with null_score_diff_threshold 0.0
the answer is "" (no answer); with threshold 1.0 it is the span. The no-answer probability is
sigmoid(diff), so a probability threshold p from the official best-threshold search is the score-diff
threshold logit(p).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from spanqa.config import DecodeConfig

NEG_INF = -np.inf


@dataclass(frozen=True)
class Span:
    """One candidate answer: text cut from the context by char offsets, and its scores."""

    text: str
    start: int
    end: int
    score: float
    start_logit: float
    end_logit: float
    probability: float


@dataclass(frozen=True)
class Prediction:
    """The decoded answer to one question.

    Attributes:
        id: the question id.
        answer: the final answer text; "" means "no answer".
        spans: the n-best candidate spans, best first.
        null_score: min over windows of start[CLS] + end[CLS].
        na_prob: sigmoid(null_score - best span score) for SQuAD v2 readers; 0.0 for v1.1 readers.
    """

    id: str
    answer: str
    spans: tuple[Span, ...]
    null_score: float
    na_prob: float


def band_max(end: np.ndarray, width: int) -> np.ndarray:
    """[F, L] -> [F, L]: out[f, i] = max(end[f, i : i + width]) (fewer terms near the end).

    O(F * L * log width) by doubling: max over 2w = max of two overlapping maxes over w.
    """
    f, length = end.shape
    x = np.concatenate([end, np.full((f, width), NEG_INF)], axis=1)  # [F, L + A]
    span = 1
    while span * 2 <= width:
        x = np.maximum(x[:, :-span], x[:, span:])
        span *= 2
    shift = width - span
    return np.maximum(x[:, :length], x[:, shift : shift + length])


def window_nbest(
    start: np.ndarray, end: np.ndarray, start_ok: np.ndarray, end_ok: np.ndarray, k: int, max_len: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Exact top-k valid spans of each window.

    Args:
        start, end: [F, L] logits.
        start_ok, end_ok: [F, L] bool, where a span may start / end.
        k: spans kept per window.
        max_len: longest span in tokens.
    Returns:
        scores [F, k] (-inf where a window has fewer valid spans), starts [F, k], ends [F, k].
    """
    s = np.where(start_ok, start, NEG_INF).astype(np.float64)
    e = np.where(end_ok, end, NEG_INF).astype(np.float64)
    f, length = s.shape
    k_starts = min(k, length)
    best_from = s + band_max(e, max_len)  # [F, L]
    top = np.argpartition(-best_from, k_starts - 1, axis=1)[:, :k_starts]  # [F, K]
    ends = top[:, :, None] + np.arange(max_len)[None, None, :]  # [F, K, A]
    e_pad = np.concatenate([e, np.full((f, max_len), NEG_INF)], axis=1)
    rows = np.arange(f)[:, None, None]
    cand = np.take_along_axis(s, top, axis=1)[:, :, None] + e_pad[rows, ends]  # [F, K, A]
    flat = cand.reshape(f, -1)
    k_out = min(k, flat.shape[1])
    pick = np.argpartition(-flat, k_out - 1, axis=1)[:, :k_out]  # [F, k]
    scores = np.take_along_axis(flat, pick, axis=1)
    starts = np.take_along_axis(top, pick // max_len, axis=1)
    return scores, starts, starts + pick % max_len


def merge_nbest(
    example_index: np.ndarray, scores: np.ndarray, starts: np.ndarray, ends: np.ndarray, k: int
) -> tuple[np.ndarray, ...]:
    """Keep the k best spans per example over all its windows, best first.

    Args:
        example_index: [F] example of each window.
        scores, starts, ends: [F, K] per-window n-best from `window_nbest`.
    Returns:
        (example, window, start, end, score), each [N], sorted by example then falling score; ties go
        to the earlier window, then the earlier start and end.
    """
    f, kk = scores.shape
    window = np.repeat(np.arange(f), kk)
    flat = scores.ravel()
    keep = np.isfinite(flat)
    window, flat = window[keep], flat[keep]
    start, end = starts.ravel()[keep], ends.ravel()[keep]
    example = example_index[window]
    order = np.lexsort((end, start, window, -flat, example))
    example, window, start, end, flat = (a[order] for a in (example, window, start, end, flat))
    first_of_group = np.searchsorted(example, example, side="left")
    rank = np.arange(len(example)) - first_of_group
    top = rank < k
    return example[top], window[top], start[top], end[top], flat[top]


def null_scores(example_index: np.ndarray, start: np.ndarray, end: np.ndarray, cls_index: np.ndarray) -> dict:
    """{example: min over its windows of start[CLS] + end[CLS]}."""
    rows = np.arange(len(cls_index))
    per_window = start[rows, cls_index].astype(np.float64) + end[rows, cls_index]
    order = np.lexsort((per_window, example_index))
    ex_sorted = example_index[order]
    firsts = np.flatnonzero(np.r_[True, ex_sorted[1:] != ex_sorted[:-1]])
    return {int(ex_sorted[i]): float(per_window[order[i]]) for i in firsts}


def decode(
    start: np.ndarray,
    end: np.ndarray,
    batch: dict[str, np.ndarray],
    example_index: np.ndarray,
    examples: list,
    config: DecodeConfig,
    allow_null: bool,
) -> list[Prediction]:
    """Answers for every example that has windows in this batch.

    Args:
        start, end: [F, L] logits of the windows.
        batch: `Features.pad` output for the same windows: offsets [F, L, 2], is_max_context [F, L],
            cls_index [F].
        example_index: [F] index of each window's example in `examples`.
        examples: the `Example`s (for ids and contexts).
        config: n_best_size, max_answer_length, null_score_diff_threshold.
        allow_null: True for SQuAD v2 readers ("" when null wins by more than the threshold).
    Returns:
        One `Prediction` per distinct example, in order of example index.
    """
    offsets = batch["offsets"]
    has_text = offsets[..., 1] > offsets[..., 0]  # [F, L]
    start_ok = batch["is_max_context"] & has_text
    end_ok = (offsets[..., 0] >= 0) & has_text
    k = config.n_best_size
    nb = window_nbest(start, end, start_ok, end_ok, k, config.max_answer_length)
    ex, win, s, e, score = merge_nbest(example_index, *nb, k)
    nulls = null_scores(example_index, start, end, batch["cls_index"])
    bounds = np.searchsorted(ex, np.array(sorted(nulls)), side="left")
    out = []
    for i, lo in zip(sorted(nulls), bounds):
        hi = int(np.searchsorted(ex, i, side="right"))
        spans = _spans(examples[i].context, offsets, start, end, win[lo:hi], s[lo:hi], e[lo:hi], score[lo:hi])
        out.append(_prediction(examples[i].id, spans, nulls[i], config, allow_null))
    return out


def _spans(context, offsets, start, end, win, s, e, score) -> tuple[Span, ...]:
    probs = np.exp(score - score.max()) if len(score) else score
    probs = probs / probs.sum() if len(score) else probs
    return tuple(
        Span(
            context[offsets[w, i, 0] : offsets[w, j, 1]], int(offsets[w, i, 0]), int(offsets[w, j, 1]),
            float(sc), float(start[w, i]), float(end[w, j]), float(p),
        )
        for w, i, j, sc, p in zip(win, s, e, score, probs)
    )


def _prediction(qid: str, spans: tuple[Span, ...], null: float, config: DecodeConfig, allow_null: bool) -> Prediction:
    if not allow_null:
        return Prediction(qid, spans[0].text if spans else "", spans, null, 0.0)
    if not spans:
        return Prediction(qid, "", spans, null, 1.0)
    diff = null - spans[0].score
    na_prob = float(1.0 / (1.0 + np.exp(-diff)))
    answer = "" if diff > config.null_score_diff_threshold else spans[0].text
    return Prediction(qid, answer, spans, null, na_prob)
