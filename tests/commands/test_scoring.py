"""`spanqa evaluate --model RUN DATA... --out-of-domain DATA...`: a reader scored on many sets in one command."""

import json

import pytest
from conftest import FIXTURES

from spanqa.artifacts import ScoreTable, SetScore
from spanqa.cli import main
from spanqa.errors import SpanqaError

V1 = str(FIXTURES / "squad-v1.1-dev-fixture.json")
V2 = str(FIXTURES / "squad-v2.0-dev-fixture.json")
MRQA = str(FIXTURES / "mrqa-drop-fixture.jsonl.gz")


def test_each_set_scores_exactly_like_evaluate_on_predict_output(tiny_model, tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    for name in ("config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"):
        if (tiny_model / name).exists():
            (run / name).write_bytes((tiny_model / name).read_bytes())
    assert main(["evaluate", "--model", str(run), V1, "--out-of-domain", MRQA, V2, "--max-samples", "40"]) == 0
    out = capsys.readouterr().out
    table = ScoreTable.load(run)
    assert [(r.name, r.domain, r.scoring, r.questions) for r in table.sets] == [
        ("squad-v1.1-dev-fixture", "in", "squad-v1.1", 40), ("mrqa-drop-fixture", "out", "mrqa", 40),
        ("squad-v2.0-dev-fixture", "out", "squad-v2.0", 40)]
    assert table.sets[2].has_ans_f1 is not None and table.sets[0].has_ans_f1 is None
    assert (run / "eval_sets.md").read_text() == out and "| mean, out of domain (Test) | out |" in out
    for row in table.sets:  # the same numbers as `spanqa predict` then `spanqa evaluate DATA PREDICTIONS`
        preds = tmp_path / f"{row.name}.json"
        assert main(["predict", "--model", str(run), row.source, "--max-samples", "40", "--output", str(preds)]) == 0
        capsys.readouterr()
        assert main(["evaluate", row.source, str(preds), "--json"]) == 0
        scores = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
        # evaluate scores every question of the file; the 40 predicted, scaled back, are the set's figures
        assert scores["exact"] * scores["total"] / 40 == pytest.approx(row.exact)
        assert scores["f1"] * scores["total"] / 40 == pytest.approx(row.f1)
    assert table.mean("out") == pytest.approx(((table.sets[1].exact + table.sets[2].exact) / 2,
                                               (table.sets[1].f1 + table.sets[2].f1) / 2))


def test_a_score_table_refuses_an_unknown_domain_and_means_each_set_once():
    row = dict(name="a", source="a.json", scoring="mrqa", questions=10, exact=10.0, f1=20.0, has_ans_f1=None,
               no_ans_f1=None, questions_per_second=1.0, seconds=1.0)
    table = ScoreTable(sets=[SetScore(domain="out", **row), {**row, "domain": "out", "exact": 30.0, "questions": 1000},
                             {**row, "domain": "in"}])
    assert table.mean("out") == (20.0, 20.0) and table.mean("in") == (10.0, 20.0)
    assert ScoreTable(sets=[]).mean("out") is None
    with pytest.raises(SpanqaError, match="domain 'test'"):
        ScoreTable(sets=[{**row, "domain": "test"}])


def test_evaluate_says_which_forms_it_takes(capsys):
    assert main(["evaluate", V1, V1, V1]) == 2
    assert "--model RUN DATA [DATA ...]" in capsys.readouterr().err
    assert main(["evaluate", V1, "--out-of-domain", MRQA]) == 2
    assert "--out-of-domain scores a reader" in capsys.readouterr().err


def test_a_missing_set_fails_before_any_is_scored(tiny_model, tmp_path, capsys):
    missing = str(tmp_path / "DROP.jsonl.gz")
    assert main(["evaluate", "--model", str(tiny_model), V1, "--out-of-domain", missing]) == 2
    captured = capsys.readouterr()
    assert f"{missing}: no such file" in captured.err and "EM" not in captured.err
