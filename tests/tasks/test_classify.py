"""`spanqa classify` (and its alias `train --task classification`): data reading, errors that name the row, and a tiny run that learns."""

from __future__ import annotations

import json
import random

import pytest
from conftest import fixture_texts

from spanqa.artifacts import ClassifierInfo
from spanqa.cli import main, task_aliases
from spanqa.data.text import split_sentences
from spanqa.errors import SpanqaError
from spanqa.tasks.classify import ClassifyConfig, read_rows


def _write_tsv(path, rows):
    path.write_text("sentence\tlabel\n" + "".join(f"{s}\t{label}\n" for s, label in rows))
    return path


@pytest.fixture(scope="module")
def marked(tmp_path_factory):
    """Sentences labelled by whether they open with the word "the": learnable by a tiny model."""
    sentences = list(dict.fromkeys(s for t in fixture_texts() for s in split_sentences(t) if 30 < len(s) < 200))
    rng = random.Random(0)
    rows = []
    for s in sentences:
        if rng.random() < 0.5:
            rows.append(("the " + s, "positive"))
        else:
            rows.append(("a " + s, "negative"))
    folder = tmp_path_factory.mktemp("sst")
    return _write_tsv(folder / "train.tsv", rows[: len(rows) * 4 // 5]), _write_tsv(folder / "dev.tsv", rows[len(rows) * 4 // 5 :])


def test_tsv_rows_with_string_labels(marked):
    rows = read_rows(str(marked[0]), "train", ClassifyConfig())
    assert len(rows.texts) > 100 and set(rows.labels) == {"positive", "negative"} and rows.pairs is None


def test_missing_column_and_empty_text_are_named(tmp_path):
    path = tmp_path / "bad.tsv"
    path.write_text("text\tlabel\nhello\t1\n")
    with pytest.raises(SpanqaError, match=r"line 2: no column 'sentence'.*--text-column"):
        read_rows(str(path), "train", ClassifyConfig())
    (tmp_path / "empty.jsonl").write_text(json.dumps({"sentence": " ", "label": 0}) + "\n")
    with pytest.raises(SpanqaError, match="line 1: 'sentence' must be non-empty"):
        read_rows(str(tmp_path / "empty.jsonl"), "train", ClassifyConfig())


def test_sentence_classification_learns_and_reports_accuracy(marked, tiny_model, tmp_path):
    out = tmp_path / "clf"
    assert main(["classify", "--model", str(tiny_model), "--train-data", str(marked[0]),
                 "--eval-data", str(marked[1]), "--output-dir", str(out), "--max-seq-length", "64",
                 "--per-device-train-batch-size", "16", "--num-train-epochs", "6", "--learning-rate", "3e-3",
                 "--eval-steps", "40", "--report-to", "none", "--precision", "fp32"]) == 0
    results = json.loads((out / "all_results.json").read_text())
    assert results["eval_accuracy"] > 0.9
    info = ClassifierInfo.load(out)
    assert info.labels == ["negative", "positive"] and info.eval["eval_accuracy"] == results["eval_accuracy"]
    assert json.loads((out / "spanqa_train_config.json").read_text())["command"] == "classify"
    card = (out / "README.md").read_text()
    assert "text classification" in card and "accuracy" in card
    from transformers import AutoModelForSequenceClassification

    assert AutoModelForSequenceClassification.from_pretrained(out).config.id2label[1] == "positive"


def test_an_unseen_evaluation_label_is_an_error_naming_the_row(marked, tiny_model, tmp_path):
    dev = _write_tsv(tmp_path / "dev.tsv", [("the cat sat", "positive"), ("a dog ran", "neutral")])
    code = main(["train", "--task", "classification", "--model", str(tiny_model), "--train-data", str(marked[0]),
                 "--eval-data", str(dev), "--output-dir", str(tmp_path / "o"), "--max-steps", "1", "--report-to", "none"])
    assert code == 2


def test_train_task_classification_is_an_alias_of_classify(capsys):
    assert task_aliases(["train", "--task", "classification", "--model", "m"]) == ["classify", "--model", "m"]
    assert task_aliases(["train", "--model", "m", "--task=qa"]) == ["train", "--model", "m"]
    assert task_aliases(["predict", "--task", "x"]) == ["predict", "--task", "x"]
    assert main(["train", "--task", "regression"]) == 2
    assert "--task regression: expected qa" in capsys.readouterr().err
