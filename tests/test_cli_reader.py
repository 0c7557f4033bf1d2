"""`spanqa predict` and `spanqa ask` end to end with a tiny model."""

import json

from conftest import FIXTURES

from spanqa.cli import main

V1 = str(FIXTURES / "squad-v1.1-dev-fixture.json")
V2 = str(FIXTURES / "squad-v2.0-dev-fixture.json")


def test_predict_writes_official_files_and_scores(tiny_model, tmp_path, capsys):
    out, na, nbest = tmp_path / "p.json", tmp_path / "na.json", tmp_path / "nbest.json"
    code = main(["predict", "--model", str(tiny_model), V2, "--output", str(out), "--na-probs-out", str(na),
                 "--nbest-out", str(nbest), "--json", "--allow-null", "--null-score-diff-threshold", "0.0"])
    captured = capsys.readouterr()
    assert code == 0
    preds, probs, lists = (json.loads(p.read_text()) for p in (out, na, nbest))
    assert len(preds) == 499 and all(isinstance(v, str) for v in preds.values())
    assert set(probs) == set(preds) and all(0 < v < 1 for v in probs.values())  # real no-answer probabilities
    assert all(len(v) <= 20 for v in lists.values())
    scores = json.loads(captured.out.strip().splitlines()[-1])
    assert scores["total"] == 499 and "HasAns_exact" in scores
    assert "questions/s" in captured.err
    # the files it wrote score the same through `spanqa evaluate`
    assert main(["evaluate", V2, str(out), "--json"]) == 0
    again = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert again["f1"] == scores["f1"]


def test_ask_shows_answers_and_the_highlighted_context(tiny_model, tmp_path, capsys):
    ctx = tmp_path / "ctx.txt"
    ctx.write_text("The Eiffel Tower was built in 1889 by Gustave Eiffel's company.")
    code = main(["ask", "--model", str(tiny_model), "--question", "When was it built?", "--context-file", str(ctx),
                 "--top-k", "2", "--no-color"])
    out = capsys.readouterr().out
    assert code == 0 and out.startswith(" 1. ") and " 2. " in out
    assert "[[" in out and "]]" in out


def test_ask_needs_exactly_one_context(tiny_model, capsys):
    assert main(["ask", "--model", str(tiny_model), "--question", "q?"]) == 2
    assert "exactly one of --context" in capsys.readouterr().err
