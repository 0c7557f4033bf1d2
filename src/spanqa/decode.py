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

Window probabilities (what transformers' question-answering pipeline reported as `score`), computed only
when asked (`window_probabilities=True`; NaN otherwise, so evaluation does not pay for them): a span's
p(start) * p(end) under softmaxes over its window's context tokens and CLS; a question's null window
probability is the minimum over its windows of p(start = CLS) * p(end = CLS).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np

from spanqa.config import DecodeConfig

NEG_INF = -np.inf


class Span(NamedTuple):
    """One candidate answer: text cut from the context by char offsets [start, end), and its scores.

    A NamedTuple rather than a dataclass: decoding a dev set builds hundreds of thousands of them.
    """

    text: str
    start: int
    end: int
    score: float
    start_logit: float
    end_logit: float
    probability: float
    window_probability: float


class NBest:
    """A question's n-best spans, kept as columns of a batch-wide table until someone reads them.

    Evaluation needs only the best answer; building hundreds of thousands of `Span`s for a dev set would
    cost more than the decoding itself, so `Prediction.spans` materialises them on first access.
    """

    __slots__ = ("context", "columns", "lo", "hi")

    def __init__(self, context: str, columns: tuple[list, ...], lo: int, hi: int) -> None:
        self.context, self.columns, self.lo, self.hi = context, columns, lo, hi

    def __len__(self) -> int:
        return self.hi - self.lo

    def span(self, r: int) -> Span:
        a, b, score, start_logit, end_logit, prob, window_prob = (col[self.lo + r] for col in self.columns)
        return Span(self.context[a:b], a, b, score, start_logit, end_logit, prob, window_prob)

    def spans(self) -> tuple[Span, ...]:
        return tuple(self.span(r) for r in range(len(self)))


@dataclass(frozen=True)
class Prediction:
    """The decoded answer to one question.

    Attributes:
        id: the question id.
        answer: the final answer text; "" means "no answer".
        best: the best span (None when the windows hold no valid span), even when `answer` is "".
        null_score: min over windows of start[CLS] + end[CLS].
        na_prob: sigmoid(null_score - best span score) for SQuAD v2 readers; 0.0 for v1.1 readers.
        null_window_probability: min over windows of p(start = CLS) * p(end = CLS) (see the module doc).
        nbest: the n-best spans, best first (`spans` gives them as a tuple).
    """

    id: str
    answer: str
    best: Span | None
    null_score: float
    na_prob: float
    null_window_probability: float
    nbest: NBest = field(repr=False, compare=False)

    @property
    def spans(self) -> tuple[Span, ...]:
        """The n-best candidate spans, best first."""
        return self.nbest.spans()


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

    Start selection runs in the logits' own float32: maxima are exact and rounding a sum is monotone, so
    the k best starts by rounded m are the k best by exact m, unless the k-th and (k+1)-th rounded values
    tie; such rows are redone in float64. Span scores are summed in float64.

    Args:
        start, end: [F, L] logits.
        start_ok, end_ok: [F, L] bool, where a span may start / end.
        k: spans kept per window.
        max_len: longest span in tokens.
    Returns:
        scores [F, k] (-inf where a window has fewer valid spans), starts [F, k], ends [F, k].
    """
    s = np.where(start_ok, start, NEG_INF).astype(np.float32, copy=False)
    e = np.where(end_ok, end, NEG_INF).astype(np.float32, copy=False)
    f, length = s.shape
    best_from = s + band_max(e, max_len)  # [F, L]
    top = _top_starts(best_from, k)
    tied = _boundary_ties(best_from, top, k)
    top = top[:, :k]
    if tied.any():
        exact = s[tied].astype(np.float64) + band_max(e[tied].astype(np.float64), max_len)
        top[tied] = _top_starts(exact, k)[:, :k]
    e_pad = np.concatenate([e, np.full((f, max_len), NEG_INF, dtype=e.dtype)], axis=1)
    e_bands = np.lib.stride_tricks.sliding_window_view(e_pad, max_len, axis=1)  # [F, L + 1, A] view
    rows = np.arange(f)[:, None]
    cand = s[rows, top].astype(np.float64)[:, :, None] + e_bands[rows, top].astype(np.float64)  # [F, K, A]
    flat = cand.reshape(f, -1)
    k_out = min(k, flat.shape[1])
    pick = np.argpartition(-flat, k_out - 1, axis=1)[:, :k_out]  # [F, k]
    scores = np.take_along_axis(flat, pick, axis=1)
    starts = np.take_along_axis(top, pick // max_len, axis=1)
    return scores, starts, starts + pick % max_len


def _top_starts(best_from: np.ndarray, k: int) -> np.ndarray:
    """[F, min(k + 1, L)] starts with the highest `best_from`, sorted best first."""
    kk = min(k + 1, best_from.shape[1])
    top = np.argpartition(-best_from, kk - 1, axis=1)[:, :kk]
    order = np.argsort(-np.take_along_axis(best_from, top, axis=1), axis=1, kind="stable")
    return np.take_along_axis(top, order, axis=1)


def _boundary_ties(best_from: np.ndarray, top: np.ndarray, k: int) -> np.ndarray:
    """[F] rows whose k-th and (k+1)-th best values are equal and finite (the cut is ambiguous)."""
    if top.shape[1] <= k:
        return np.zeros(len(top), dtype=bool)
    vals = np.take_along_axis(best_from, top[:, k - 1 : k + 1], axis=1)
    return (vals[:, 0] == vals[:, 1]) & np.isfinite(vals[:, 0])


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
    return min_per_example(example_index, start[rows, cls_index].astype(np.float64) + end[rows, cls_index])


def min_per_example(example_index: np.ndarray, per_window: np.ndarray) -> dict:
    """{example: min of `per_window` over its windows}."""
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
    window_probabilities: bool = False,
) -> list[Prediction]:
    """Answers for every example that has windows in this batch.

    Args:
        start: [F, L] start logits of the windows.
        end: [F, L] end logits of the windows.
        batch: `Features.pad` output for the same windows: offsets [F, L, 2], is_max_context [F, L],
            cls_index [F].
        example_index: [F] index of each window's example in `examples`.
        examples: the `Example`s (for ids and contexts).
        config: n_best_size, max_answer_length, null_score_diff_threshold.
        allow_null: True for SQuAD v2 readers ("" when null wins by more than the threshold).
        window_probabilities: also compute the pipeline-style window probabilities (see the module doc).
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
    if window_probabilities:
        cls = batch["cls_index"]
        log_ps, log_pe = window_log_softmax(start, end, offsets, cls)  # [F, L] each
        rows = np.arange(len(cls))
        null_prob = min_per_example(example_index, np.exp(log_ps[rows, cls] + log_pe[rows, cls]))
        span_prob = np.exp(log_ps[win, s] + log_pe[win, e]).tolist()
    else:
        null_prob, span_prob = dict.fromkeys(nulls, float("nan")), [float("nan")] * len(score)
    # Everything a Span needs, gathered at once: [N] arrays -> Python lists
    fields = (
        offsets[win, s, 0].tolist(), offsets[win, e, 1].tolist(), score.tolist(),
        start[win, s].tolist(), end[win, e].tolist(), _group_softmax(ex, score).tolist(), span_prob,
    )
    wanted = np.array(sorted(nulls))
    lo_all = np.searchsorted(ex, wanted, side="left").tolist()
    hi_all = np.searchsorted(ex, wanted, side="right").tolist()
    return [
        _prediction(examples[i].id, NBest(examples[i].context, fields, lo, hi), nulls[i], null_prob[i], config,
                    allow_null)
        for i, lo, hi in zip(wanted.tolist(), lo_all, hi_all)
    ]


def window_log_softmax(
    start: np.ndarray, end: np.ndarray, offsets: np.ndarray, cls_index: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """[F, L] log-softmaxes of start and end logits over each window's context tokens and CLS (float64).

    Question, special and padding tokens get -inf (transformers' pipeline gives them a -10000 logit, which
    underflows to the same zero probability).
    """
    allowed = offsets[..., 0] >= 0  # [F, L] context tokens
    allowed[np.arange(len(cls_index)), cls_index] = True

    def log_softmax(x: np.ndarray) -> np.ndarray:
        x = np.where(allowed, x.astype(np.float64), NEG_INF)
        top = x.max(axis=1, keepdims=True)
        return x - top - np.log(np.exp(x - top).sum(axis=1, keepdims=True))

    return log_softmax(start), log_softmax(end)


def _group_softmax(groups: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """Softmax of `scores` within runs of equal `groups` (sorted, best score first in each run)."""
    if not len(scores):
        return scores
    firsts = np.flatnonzero(np.r_[True, groups[1:] != groups[:-1]])
    run = np.repeat(np.arange(len(firsts)), np.diff(np.r_[firsts, len(groups)]))
    z = np.exp(scores - scores[firsts][run])
    return z / np.add.reduceat(z, firsts)[run]


def _prediction(
    qid: str, nbest: NBest, null: float, null_window: float, config: DecodeConfig, allow_null: bool
) -> Prediction:
    best = nbest.span(0) if len(nbest) else None
    if best is None:
        return Prediction(qid, "", None, null, 1.0 if allow_null else 0.0, null_window, nbest)
    if not allow_null:
        return Prediction(qid, best.text, best, null, 0.0, null_window, nbest)
    na_prob, abstain = no_answer(null, best.score, config.null_score_diff_threshold)
    return Prediction(qid, "" if abstain else best.text, best, null, na_prob, null_window, nbest)


def no_answer(null: float, best_score: float, threshold: float) -> tuple[float, bool]:
    """(no-answer probability, abstain?): sigmoid(null - best), and whether that difference passes the
    threshold (the SQuAD v2 rule in the module doc; passages use it across passages too)."""
    diff = null - best_score
    return float(1.0 / (1.0 + np.exp(-diff))), diff > threshold
