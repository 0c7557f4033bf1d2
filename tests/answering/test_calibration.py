"""Calibration: Platt scaling fitted by logistic regression, ECE in 15 bins, the abstention threshold."""

import numpy as np
import pytest

from spanqa.answering.calibration import (abstention_threshold, expected_calibration_error, features,
                                          fit_logistic)
from spanqa.artifacts import Calibration, ReaderInfo


def test_the_worked_example():
    assert Calibration(slope=0.5, bias=-0.4).apply(0.9) == pytest.approx(0.66788, abs=1e-5)


def test_ece_of_known_bins():
    # 10 answers at 0.9 confidence, 6 right: |0.6 - 0.9| = 0.3, all in one bin
    assert expected_calibration_error(np.full(10, 0.9), np.r_[np.ones(6), np.zeros(4)]) == pytest.approx(0.3)
    # a perfectly calibrated pair of bins
    assert expected_calibration_error(np.r_[np.full(4, 0.25), np.full(4, 0.75)],
                                      np.r_[1, 0, 0, 0, 1, 1, 1, 0]) == pytest.approx(0.0)


def test_platt_scaling_fixes_an_overconfident_reader_on_held_out_questions():
    rng = np.random.default_rng(0)
    raw = rng.uniform(0.05, 0.99, 4000)
    right = (rng.uniform(size=4000) < raw ** 3).astype(float)  # truly right with p = raw^3: overconfident
    margin = np.zeros_like(raw)
    w = fit_logistic(features(raw[::2], margin[::2], False), right[::2])
    calibrated = Calibration(slope=w[0], bias=w[1]).apply(raw[1::2])
    before = expected_calibration_error(raw[1::2], right[1::2])
    after = expected_calibration_error(calibrated, right[1::2])
    assert before > 0.15 and after < 0.03


def test_the_abstention_threshold_answers_only_where_answering_pays():
    p = np.array([0.95, 0.9, 0.8, 0.6, 0.4, 0.3, 0.1])
    right = np.array([1, 1, 1, 1, 0, 1, 0])
    # answering the top 4: +4; top 6: +4 (one wrong, one right) -> the first best, threshold 0.6
    assert abstention_threshold(p, right) == 0.6
    assert abstention_threshold(p, np.zeros(7)) == 1.0  # never right: never answer


def test_a_reader_folder_keeps_its_calibration():
    info = ReaderInfo(calibration=Calibration(1.2, -0.3, 0.1, 0.45, 500, "dev", 0.2, 0.03))
    again = ReaderInfo.from_dict(info.to_dict())
    assert again.calibration == info.calibration and ReaderInfo.from_dict({}).calibration is None


def test_saturated_probabilities_are_fitted_without_overflow():
    """Regression: the quickstart reader's raw probabilities sit near 1 (logit up to 13.8); plain Newton steps
    overflowed and the 'calibrated' error went up (0.336 -> 0.487 on held-out questions)."""
    rng = np.random.default_rng(1)
    raw = 1 / (1 + np.exp(-rng.uniform(4, 16, 2000)))
    right = (rng.uniform(size=2000) < 0.5).astype(float)  # right half the time, whatever the reader says
    with np.errstate(over="raise", invalid="raise"):
        w = fit_logistic(features(raw[::2], np.zeros(1000), False), right[::2])
        calibrated = Calibration(slope=w[0], bias=w[1]).apply(raw[1::2])
    assert expected_calibration_error(calibrated, right[1::2]) < 0.05 < expected_calibration_error(raw[1::2], right[1::2])

