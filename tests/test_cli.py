"""The `spanqa` command: evaluate, data stats, quickstart; bad input is one paragraph and exit 2."""

import json
import time

import pytest
from conftest import FIXTURES

from spanqa.cli import main

V1 = str(FIXTURES / "squad-v1.1-dev-fixture.json")
V2 = str(FIXTURES / "squad-v2.0-dev-fixture.json")
EXPECTED = json.loads((FIXTURES / "expected-scores.json").read_text())


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def predictions_file(tmp_path, version, system):
    preds = json.loads((FIXTURES / f"squad-{version}-dev-fixture-predictions.json").read_text())[system]
    path = tmp_path / "preds.json"
    path.write_text(json.dumps(preds))
    return path, preds


def test_evaluate_json_last_line(tmp_path, capsys):
    path, _ = predictions_file(tmp_path, "v1.1", "bert-ensemble-google")
    code, out, _ = run(capsys, "evaluate", V1, str(path), "--json")
    scores = json.loads(out.strip().splitlines()[-1])
    assert code == 0 and scores == pytest.approx(EXPECTED["v1.1"]["bert-ensemble-google"], abs=1e-9)


def test_evaluate_v2_with_na_probs_adds_best_thresholds(tmp_path, capsys):
    path, preds = predictions_file(tmp_path, "v2.0", "bert-single-google")
    probs = tmp_path / "na.json"
    probs.write_text(json.dumps({k: (0.9 if v == "" else 0.1) for k, v in preds.items()}))
    code, out, _ = run(capsys, "evaluate", V2, str(path), "--na-probs", str(probs), "--json")
    scores = json.loads(out.strip().splitlines()[-1])
    assert code == 0
    assert {"best_exact", "best_exact_thresh", "best_f1", "best_f1_thresh", "HasAns_total", "NoAns_f1"} <= scores.keys()
    assert scores["best_f1"] >= scores["f1"]


def test_evaluate_table(tmp_path, capsys):
    path, _ = predictions_file(tmp_path, "v1.1", "r-net-plus-ensemble-msra")
    code, out, _ = run(capsys, "evaluate", V1, str(path))
    assert code == 0 and "squad-v1.1 scoring" in out and "exact" in out and "77.3333" in out


def test_quickstart_defaults_equal_the_quickstart_recipe():
    from pathlib import Path

    import yaml

    from spanqa.cli import QUICKSTART, asset, quickstart_recipe

    recipe = yaml.safe_load((Path(__file__).parents[1] / "recipes" / "quickstart.yaml").read_text())
    assert {k: v for k, v in recipe.items() if not k.endswith("_data")} == {
        k: v for k, v in QUICKSTART.items() if not k.endswith("_data")}
    for key in ("train_data", "eval_data"):
        assert Path(quickstart_recipe()[key]).name == Path(recipe[key]).name
        assert Path(quickstart_recipe()[key]).exists()
    assert asset("squad-v1.1-dev-sample-predictions.json").endswith(".json")


def test_evaluate_bundled_sample_predictions(capsys):
    from spanqa.cli import asset

    code, out, _ = run(capsys, "evaluate", asset("squad-v1.1-dev-sample.json.gz"),
                       asset("squad-v1.1-dev-sample-predictions.json"), "--json")
    scores = json.loads(out.strip().splitlines()[-1])
    assert code == 0 and scores["total"] == 870 and scores["missing"] == 0 and 85 < scores["f1"] < 100


def test_data_stats(saved_wordpiece, capsys):
    code, out, _ = run(capsys, "data", "stats", V1, "--model", str(saved_wordpiece), "--json",
                       "--max-seq-length", "128", "--doc-stride", "32")
    stats = json.loads(out)
    assert code == 0 and stats["questions"] == 300 and stats["paragraphs"] == 60
    assert stats["windows"] > 300 and 0.9 < stats["answer_coverage"] <= 1.0
    assert stats["settings"]["doc_stride"] == 32


def _bad(tmp_path, name, content):
    path = tmp_path / name
    path.write_text(content)
    return str(path)


@pytest.mark.parametrize(
    "make_args, message",
    [
        (lambda t: ["evaluate", str(t / "missing.json"), V1], "no such file"),
        (lambda t: ["evaluate", V1, _bad(t, "p.json", "[1, 2]")], "expected a JSON object"),
        (lambda t: ["evaluate", V1, _bad(t, "p.json", '{"a": 3}')], "expected a string"),
        (lambda t: ["evaluate", V1, _bad(t, "p.json", "")], "the file is empty"),
        (lambda t: ["evaluate", V2, _bad(t, "p.json", "{}"), "--na-probs", _bad(t, "n.json", '{"x": 1.5}')],
         r"expected a number in \[0, 1\]"),
        (lambda t: ["evaluate", V2, _bad(t, "p.json", "{}"), "--na-probs", _bad(t, "n.json", '{"x": "high"}')],
         r"expected a number in \[0, 1\]"),
        (lambda t: ["evaluate", V2, _bad(t, "p.json", "{}"), "--na-probs", _bad(t, "n.json", '{"x": 0.5}')],
         "no probability for 499 question id"),
        (lambda t: ["data", "stats", V1, "--model", str(t / "no-such-tokenizer")], "no such model folder"),
        (lambda t: ["data", "stats", V1, "--doc-stride", "400"], "--doc-stride 400"),
    ],
)
def test_bad_input_is_one_paragraph_and_exit_2(tmp_path, capsys, make_args, message):
    import re

    code, out, err = run(capsys, *make_args(tmp_path))
    assert code == 2 and "Traceback" not in err
    assert err.startswith("spanqa: error: ") and re.search(message, err)


def test_repair_answers_flag_fixes_bad_starts(tmp_path, capsys, saved_wordpiece):
    doc = json.loads(open(V1).read())
    qa = doc["data"][0]["paragraphs"][0]["qas"][0]
    qa["answers"][0]["answer_start"] += 1
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(doc))
    code, out, err = run(capsys, "data", "stats", str(bad), "--model", str(saved_wordpiece), "--repair-answers")
    assert code == 0 and "moved to the nearest occurrence" in err and qa["id"] in err


@pytest.mark.parametrize("command", ["quickstart", "train", "distill", "pretrain", "evaluate", "predict", "ask",
                                     "serve", "export", "data"])
def test_every_subcommand_prints_its_help(command, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([command, "--help"])
    assert exit_info.value.code == 0 and "usage: spanqa" in capsys.readouterr().out


def test_help_answers_fast_without_importing_torch_or_the_web_stack():
    """`spanqa --help` and every subcommand's help build the parser only: no torch, transformers or FastAPI."""
    import subprocess
    import sys

    probe = ("import sys; from spanqa.cli import build_parser; build_parser(); "
             "print(sorted(m for m in ('torch', 'transformers', 'fastapi', 'openvino') if m in sys.modules))")
    imported = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    assert imported.strip() == "[]"
    for command in ([], ["train"], ["serve"], ["export"], ["pretrain"], ["slurm"]):
        t0 = time.perf_counter()
        done = subprocess.run([sys.executable, "-m", "spanqa.cli", *command, "--help"], capture_output=True, text=True)
        seconds = time.perf_counter() - t0
        assert done.returncode == 0 and "usage: spanqa" in done.stdout
        assert seconds < 1.5, (command, seconds)


def test_the_quickstart_closing_line_says_what_the_planner_did():
    from spanqa.cli import steps_line

    assert steps_line({"total_steps": 384, "recipe_steps": 384}, 480) == "all 384 steps"
    assert steps_line({"total_steps": 366, "recipe_steps": 384}, 480) == "366 of 384 steps: all that fitted the 480 s budget"
    assert steps_line({"total_steps": 300, "recipe_steps": 384, "stopped_at_time_budget": True}, 480) == \
        "300 of 384 steps: the 480 s budget ran out"
