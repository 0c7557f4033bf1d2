"""Calibrated answer probabilities: an answer said to be 70% sure is right about 70% of the time.

A reader's raw `probability` is a softmax over its candidate spans: it says how the reader ranks the candidates,
not how often its best one is right, and it is not comparable across questions (haystack#893: scores "rather
random" across documents). Platt scaling maps it to the probability that the answer is right:

    p = sigmoid(slope * logit(raw) + null_weight * (score - null_score) + bias)

where `score - null_score` (span score minus the no-answer score) is used by SQuAD 2.0 readers only. The three
numbers are fitted by logistic regression on held-out questions: the best answer of each, labelled right when it
matches a gold answer exactly (the official normalisation). Worked example, slope 0.5, bias -0.4, no null
weight: raw 0.9 (logit 2.197) -> sigmoid(0.699) = 0.668.

`abstain_below` is the probability under which an answer is not worth giving: chosen on the same questions as
the threshold that maximises (right answers given) - (wrong answers given), which for calibrated probabilities
sits near 0.5. Collections use it to say "no answer in the collection".

Expected calibration error (15 equal-width bins, Guo et al. 2017) is reported before and after, on questions the
fit did not see (every other question is held out).
"""

from __future__ import annotations

import numpy as np

from spanqa.answering.passages import pool
from spanqa.artifacts import EPS, Calibration
from spanqa.metrics import exact_match

MIN_QUESTIONS = 20  # fewer held-out questions than this fit nothing worth keeping


def features(raw: np.ndarray, margin: np.ndarray, with_null: bool) -> np.ndarray:
    """[N, 3] (or [N, 2]) design matrix: logit(raw), (score - null_score), 1."""
    raw = np.clip(raw, EPS, 1 - EPS)
    cols = [np.log(raw / (1 - raw))] + ([margin] if with_null else []) + [np.ones_like(raw)]
    return np.stack(cols, axis=1)


def log_loss(x: np.ndarray, y: np.ndarray, w: np.ndarray, l2: float) -> float:
    """Mean log loss of sigmoid(x @ w) against y, plus (l2 / 2) |w|^2; stable for large |x @ w|."""
    z = x @ w
    return float(np.mean(np.logaddexp(0.0, z) - y * z) + 0.5 * l2 * w @ w)


def fit_logistic(x: np.ndarray, y: np.ndarray, l2: float = 1e-3, steps: int = 100) -> np.ndarray:
    """Weights w minimising `log_loss`, by Newton's method with a backtracking line search.

    The plain Newton step diverges when many raw probabilities sit at the clip (logit +-13.8): the curvature
    there is near zero and one step overshoots to overflow. Halving the step until the loss goes down keeps
    every step an improvement.
    """
    w = np.zeros(x.shape[1])
    w[0] = 1.0  # start from the identity map on logit(raw)
    loss = log_loss(x, y, w, l2)
    for _ in range(steps):
        p = 0.5 * (1.0 + np.tanh(0.5 * (x @ w)))  # sigmoid without overflow
        grad = x.T @ (p - y) / len(y) + l2 * w
        hess = (x * (p * (1 - p))[:, None]).T @ x / len(y) + l2 * np.eye(len(w))
        step, scale = np.linalg.solve(hess, grad), 1.0
        while scale > 1e-6 and log_loss(x, y, w - scale * step, l2) > loss:
            scale /= 2
        if scale <= 1e-6:
            break
        w = w - scale * step
        new = log_loss(x, y, w, l2)
        if loss - new < 1e-12:
            break
        loss = new
    return w


def expected_calibration_error(confidence: np.ndarray, correct: np.ndarray, bins: int = 15) -> float:
    """Sum over equal-width confidence bins of (share of questions) x |accuracy - mean confidence|."""
    confidence, correct = np.asarray(confidence, np.float64), np.asarray(correct, np.float64)
    which = np.minimum((confidence * bins).astype(int), bins - 1)
    ece = 0.0
    for b in range(bins):
        mask = which == b
        if mask.any():
            ece += mask.mean() * abs(correct[mask].mean() - confidence[mask].mean())
    return float(ece)


def abstention_threshold(probability: np.ndarray, correct: np.ndarray) -> float:
    """The threshold t maximising sum over answers with p >= t of (+1 right, -1 wrong); ties: the lowest."""
    order = np.argsort(-probability, kind="stable")
    gain = np.cumsum(np.where(correct[order] > 0, 1.0, -1.0))  # answering the i+1 most confident questions
    if len(gain) == 0 or gain.max() <= 0:
        return 1.0 if len(gain) else 0.0
    best = int(np.argmax(gain))
    return float(probability[order][best])


def question_labels(predictions, examples, with_null: bool, null_threshold: float
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(raw probability, span - null score, right?) of each question's best answer, against its gold.

    The raw probability is the one `Reader` answers with (`answering.passages.pool`: the softmax over the
    candidates left once overlapping spans are merged), so the fit maps exactly what it will be applied to.
    """
    raw, margin, right = [], [], []
    for pred, ex in zip(predictions, examples):
        pooled = pool([pred], with_null, null_threshold)
        best = pooled.ranked[0] if pooled.ranked else None
        raw.append(best.probability if best is not None else EPS)
        margin.append((best.span.score - pooled.null_score) if best is not None else 0.0)
        text = best.span.text if best is not None else ""
        right.append(float(bool(ex.gold_texts) and max(exact_match(text, g) for g in ex.gold_texts) == 1.0))
    return np.array(raw), np.array(margin), np.array(right)


def fit(predictions, examples, with_null: bool, null_threshold: float = 0.0, data: str = "") -> Calibration | None:
    """Fit on every other question, measure ECE on the rest, then refit on all.

    Returns None (keep the raw probabilities) below MIN_QUESTIONS, when every answer is right or every one wrong,
    or when the fit does not lower the calibration error on the held-out half.
    """
    raw, margin, right = question_labels(predictions, examples, with_null, null_threshold)
    if len(raw) < 2 * MIN_QUESTIONS or right.min() == right.max():
        return None
    x = features(raw, margin, with_null)
    fit_rows, held = np.arange(0, len(raw), 2), np.arange(1, len(raw), 2)
    held_out = _calibration(fit_logistic(x[fit_rows], right[fit_rows]), with_null)
    before = expected_calibration_error(raw[held], right[held])
    after = expected_calibration_error(held_out.apply(raw[held], margin[held]), right[held])
    if after >= before:  # no better on questions the fit did not see: keep the raw probabilities
        return None
    final = _calibration(fit_logistic(x, right), with_null)
    calibrated = final.apply(raw, margin)
    return Calibration(final.slope, final.bias, final.null_weight, abstention_threshold(calibrated, right),
                       len(raw), data, before, after)


def _calibration(w: np.ndarray, with_null: bool) -> Calibration:
    return Calibration(slope=float(w[0]), bias=float(w[-1]), null_weight=float(w[1]) if with_null else 0.0)
