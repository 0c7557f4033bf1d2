"""`spanqa report`: the model-family comparison table from finished run folders, in and out of domain."""

import csv
import json

import pytest
import torch

from spanqa.artifacts import RUN_FILE
from spanqa.cli import main
from spanqa.errors import SpanqaError
from spanqa.commands.report import markdown, read_run


def fake_run(folder, model, train_s, f1, **extra):
    folder.mkdir(parents=True)
    results = {"train_runtime": train_s, "eval_runtime": 41.5, "eval_exact_match": f1 - 10, "eval_f1": f1,
               "eval_total": 10570, **extra}
    (folder / "all_results.json").write_text(json.dumps(results))
    (folder / RUN_FILE).write_text(json.dumps({"model": model, "eval_data": "data/dev-v1.1.json", "run_name": ""}))
    return folder


def test_rows_in_the_seeds_layout(tmp_path):
    run = fake_run(tmp_path / "bidaf-cpu", "bidaf", 7199.5, 62.125, num_parameters=21_238_743,
                   num_trainable_parameters=1_507_993)
    row = read_run(run)
    assert row.cells() == ["bidaf-cpu", "21,238,743", "1,507,993", "1:59:59.50", "0:00:41.50", "52.12", "62.12",
                           "", "", "", "dev-v1.1.json (10,570 questions)"]  # no out-of-domain scores yet
    table = markdown([row])
    assert table.splitlines()[0].startswith("Model | Parameters | Trainable | Training Time | Eval Time | Eval EM | "
                                            "Eval F1 | Test EM | Test F1 | q/s")
    assert table.splitlines()[1] == "|".join(["---"] * 11) + "|"


def test_test_columns_are_the_mean_of_the_out_of_domain_sets(tmp_path):
    from spanqa.artifacts import ScoreTable, SetScore

    run = fake_run(tmp_path / "minilm", "minilm-l6", 3000.0, 70.0, num_parameters=22_000_000)
    row = dict(scoring="mrqa", has_ans_f1=None, no_ans_f1=None, seconds=10.0)
    ScoreTable(sets=[SetScore("SQuAD", "SQuAD.jsonl.gz", "in", questions=10507, exact=66.0, f1=77.0,
                              questions_per_second=40.0, **row),
                     SetScore("DROP", "DROP.jsonl.gz", "out", questions=1503, exact=20.0, f1=30.0,
                              questions_per_second=30.0, **row),
                     SetScore("RelationExtraction", "RE.jsonl.gz", "out", questions=2948, exact=50.0, f1=61.0,
                              questions_per_second=35.0, **row)], model="runs/minilm").save(run)
    got = read_run(run)
    assert got.cells()[5:] == ["66.00", "77.00", "35.00", "45.50", "40.0", "SQuAD (10,507 questions)"]
    assert got.test_sets == "DROP 20.00/30.00; RelationExtraction 50.00/61.00"


def test_parameters_are_counted_from_the_weights_when_the_run_did_not_record_them(tmp_path):
    from safetensors.torch import save_file

    run = fake_run(tmp_path / "old", "minilm-l6", 60.0, 40.0)
    save_file({"w": torch.zeros(3, 4), "b": torch.zeros(4, dtype=torch.bfloat16), "ids": torch.zeros(7, dtype=torch.int64)},
              str(run / "model.safetensors"))
    row = read_run(run)
    assert row.parameters == 16 and row.trainable is None and row.cells()[0] == "old (minilm-l6)"


def test_not_a_run_is_named(tmp_path):
    with pytest.raises(SpanqaError, match=r"empty: not a finished run \(no all_results.json"):
        (tmp_path / "empty").mkdir()
        read_run(tmp_path / "empty")


def test_cli_prints_and_writes_markdown_csv_and_plot(tmp_path, capsys):
    runs = [fake_run(tmp_path / "a", "bidaf", 3600.0, 65.0, num_parameters=10),
            fake_run(tmp_path / "b", "lstm-baseline", 900.0, 45.0, num_parameters=5)]
    out = tmp_path / "report"
    assert main(["report", *map(str, runs), "--output-dir", str(out)]) == 0
    printed = capsys.readouterr().out
    assert printed == (out / "report.md").read_text() and "a (bidaf) | 10 |" in printed
    rows = list(csv.DictReader((out / "report.csv").open()))
    assert [r["name"] for r in rows] == ["a", "b"] and float(rows[1]["train_seconds"]) == 900.0
    assert (out / "report.png").stat().st_size > 1000
    assert main(["report", str(tmp_path / "missing")]) == 2


def test_a_reader_scored_but_not_trained_here_gets_a_row(tmp_path):
    from safetensors.torch import save_file

    from spanqa.artifacts import ScoreTable, SetScore

    folder = tmp_path / "hub-reader"
    folder.mkdir()
    save_file({"w": torch.zeros(10, 10)}, str(folder / "model.safetensors"))
    ScoreTable(sets=[SetScore("dev", "dev.json", "in", "squad-v1.1", 100, 80.0, 88.0, None, None, 50.0, 2.0)],
               model="deepset/minilm-uncased-squad2").save(folder)
    row = read_run(folder)
    assert row.cells()[:3] == ["hub-reader (deepset/minilm-uncased-squad2)", "100", ""]
    assert row.cells()[3] == "" and row.f1 == 88.0
