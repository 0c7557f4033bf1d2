"""Metric parity with the official SQuAD v1.1 / v2.0 and MRQA scripts."""

import gzip
import json
import random

import pytest
from conftest import FIXTURES, needs_shared

from spanqa.data import load_examples
from spanqa.evaluation import evaluate
from spanqa.metrics import GoldQuestion, f1_v1, f1_v2, find_best_threshold, normalize_answer, score_predictions

EXPECTED = json.loads((FIXTURES / "expected-scores.json").read_text())


@pytest.mark.parametrize(
    "text, normalized",
    [
        ("The Denver Broncos", "denver broncos"),
        ("an apple a day", "apple day"),
        ("Theatre", "theatre"),  # "the" inside a word stays
        ("U.S.A.", "usa"),  # ASCII punctuation is deleted, not replaced by a space
        ("rock-n-roll", "rocknroll"),
        ("«Paris» — 1889", "«paris» — 1889"),  # non-ASCII punctuation is kept, as the official scripts do
        ("  a\u00a0the\tb  ", "b"),  # Unicode whitespace splits words
        ("A", ""),
        ("", ""),
        ("Ångström", "ångström"),
    ],
)
def test_normalize_answer_matches_official_rule(text, normalized):
    assert normalize_answer(text) == normalized


def test_f1_v1_and_v2_differ_only_on_empty_answers():
    assert f1_v1("", "") == 0.0
    assert f1_v2("", "") == 1.0
    assert f1_v2("the", "") == 1.0  # "the" normalises to nothing
    assert f1_v1("x y z", "y z w") == pytest.approx(2 / 3)
    assert f1_v2("a b c", "b c d") == pytest.approx(0.8)  # "a" is an article
    assert f1_v1("x x y", "x y y") == pytest.approx(2 / 3)  # multiset overlap: one x, one y


def test_v2_drops_gold_answers_that_normalise_to_nothing():
    gold = [GoldQuestion("q", ("the", "Paris"), True)]
    assert score_predictions(gold, {"q": "a"}, "squad-v2.0")["exact"] == 0.0
    assert score_predictions(gold, {"q": "a"}, "squad-v1.1")["exact"] == 100.0  # v1.1 keeps "the"


@pytest.mark.parametrize("version", ["v1.1", "v2.0"])
def test_fixture_scores(version):
    dataset = load_examples(FIXTURES / f"squad-{version}-dev-fixture.json")
    predictions = json.loads((FIXTURES / f"squad-{version}-dev-fixture-predictions.json").read_text())
    for system, preds in predictions.items():
        got, want = evaluate(dataset, preds), EXPECTED[version][system]
        assert got.keys() == want.keys()
        for key in want:
            assert got[key] == pytest.approx(want[key], abs=1e-9), (system, key)


def test_mrqa_fixture_scores_keyed_by_qid():
    dataset = load_examples(FIXTURES / "mrqa-drop-fixture.jsonl.gz")
    preds = {e.id: " ".join(e.context.split()[:3]) for e in dataset.examples}
    assert dataset.scoring == "mrqa"
    assert evaluate(dataset, preds) == pytest.approx(EXPECTED["mrqa-drop-first3"], abs=1e-9)


def test_missing_predictions_score_zero_and_unknown_ids_are_ignored():
    gold = [GoldQuestion("a", ("x",), True), GoldQuestion("b", ("y",), True)]
    scores = score_predictions(gold, {"a": "x", "zzz": "y"}, "squad-v1.1")
    assert scores == {"exact": 50.0, "f1": 50.0, "total": 2, "missing": 1, "unknown": 1}
    v2 = score_predictions(gold + [GoldQuestion("c", (), False)], {"a": "x"}, "squad-v2.0")
    assert v2["missing"] == 2 and v2["HasAns_exact"] == 50.0 and v2["NoAns_exact"] == 0.0


def test_na_prob_thresh_turns_confident_no_answers_into_empty():
    gold = [GoldQuestion("q", (), False)]
    preds, probs = {"q": "Paris"}, {"q": 0.8}
    assert score_predictions(gold, preds, "squad-v2.0", probs, 1.0)["exact"] == 0.0
    assert score_predictions(gold, preds, "squad-v2.0", probs, 0.5)["exact"] == 100.0


def test_best_threshold_equals_exhaustive_search():
    rng = random.Random(3)
    gold = [GoldQuestion(str(i), ("a b",) if i % 2 else (), bool(i % 2)) for i in range(200)]
    preds = {q.id: rng.choice(["a b", "b", "c", ""]) for q in gold}
    probs = {q.id: rng.random() for q in gold}
    raw = {q.id: score_predictions([q], preds, "squad-v2.0")["f1"] / 100 for q in gold}
    best, thresh = find_best_threshold(raw, gold, preds, probs)
    candidates = [0.0] + sorted(probs.values())
    by_thresh = [score_predictions(gold, preds, "squad-v2.0", probs, t)["f1"] for t in candidates]
    assert best == pytest.approx(max(by_thresh), abs=1e-9)
    assert thresh == candidates[by_thresh.index(max(by_thresh))]


def test_best_threshold_keeps_official_quirk_for_texts_that_normalise_to_nothing():
    """The official walk charges any non-empty text on an unanswerable question, even "a" (which the
    thresholded scorer counts as a correct "no answer"); spanqa reproduces the walk, not an idealised one."""
    gold = [GoldQuestion("u", (), False), GoldQuestion("h", ("x",), True)]
    raw = {"u": 1.0, "h": 1.0}  # f1_v2("a", "") == 1
    probs = {"u": 0.2, "h": 0.3}
    assert find_best_threshold(raw, gold, {"u": "a", "h": "x"}, probs) == (50.0, 0.0)
    assert find_best_threshold(raw, gold, {"u": "", "h": "x"}, probs) == (100.0, 0.3)


OFFICIAL_V1 = {
    "bert-ensemble-google": (86.20624408703878, 92.19557978351145),
    "logistic-regression-baseline-stanford": (40.14191106906339, 50.98153647324461),
    "match-lstm-ansptr-boundary-ensemble-smu": (67.63481551561021, 76.75556184979695),
    "r-net-plus-ensemble-msra": (82.46925260170293, 88.47785965423249),
    "slqa-plus-ensemble-alibaba": (81.94891201513718, 88.38386312172166),
}
OFFICIAL_V2 = {
    "bert-single-google": (78.74168280973637, 81.77528052374723),
    "nlnet-single-msra": (75.82750779078582, 78.77776770381462),
    "bidaf-selfatt-elmo-single-ai2": (65.70369746483618, 67.87648921451334),
}


@pytest.mark.slow
def test_full_dev_parity_with_official_scripts():
    """The published official-script figures on the full dev files, to 1e-9."""
    v1 = load_examples(needs_shared("squad-v1.1", "dev-v1.1.recon.json.gz"))
    v2 = load_examples(needs_shared("squad-v2.0", "dev-v2.0.recon.json.gz"))
    preds_dir = needs_shared("squad-explorer-predictions")
    for dataset, version, official in ((v1, "v1.1", OFFICIAL_V1), (v2, "v2.0", OFFICIAL_V2)):
        for system, (em, f1) in official.items():
            with gzip.open(preds_dir / version / f"{system}.json.gz", "rt") as f:
                scores = evaluate(dataset, json.load(f))
            assert abs(scores["exact"] - em) < 1e-9 and abs(scores["f1"] - f1) < 1e-9, system
    bert = evaluate(v2, json.load(gzip.open(preds_dir / "v2.0" / "bert-single-google.json.gz", "rt")))
    assert abs(bert["HasAns_exact"] - 74.10593792172739) < 1e-9
    assert abs(bert["HasAns_f1"] - 80.18183293833508) < 1e-9
    assert abs(bert["NoAns_exact"] - 83.36417157275021) < 1e-9
    assert (bert["HasAns_total"], bert["NoAns_total"]) == (5928, 5945)


@pytest.mark.slow
@pytest.mark.parametrize(
    "name, em, f1",
    [
        ("SQuAD", 0.9231940611021224, 5.890633593013729),
        ("DROP", 0.0665335994677312, 2.5213593976069024),
        ("DuoRC.ParaphraseRC", 0.2664890073284477, 2.966155149601478),
        ("RelationExtraction", 0.30529172320217096, 4.274030281492975),
    ],
)
def test_full_mrqa_parity_first_three_tokens(name, em, f1):
    dataset = load_examples(needs_shared("mrqa-2019", "dev", f"{name}.jsonl.gz"))
    scores = evaluate(dataset, {e.id: " ".join(e.context.split()[:3]) for e in dataset.examples})
    assert abs(scores["exact"] - em) < 1e-9 and abs(scores["f1"] - f1) < 1e-9
