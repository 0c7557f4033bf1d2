"""Recurrent readers end to end: train -> save -> Reader.load -> predict -> evaluate, on the same engine and
outputs as transformer readers; their settings and what they refuse."""

import json

import numpy as np
import pytest
from conftest import V1, V2, losses, recurrent_args, train_args

from spanqa.cli import main
from spanqa.tasks.reader_task import ReaderSettings


@pytest.mark.parametrize("architecture", ["bidaf", "lstm-baseline"])
def test_train_save_load_predict_evaluate(architecture, tiny_vectors, tmp_path, capsys, caplog):
    out = tmp_path / architecture
    with caplog.at_level("INFO", logger="spanqa"):
        code = main(recurrent_args(architecture, tiny_vectors, out, "--eval-data", V1, "--num-train-epochs", "4",
                                   "--optimizer", "adam", "--learning-rate", "1e-2", "--weight-decay", "0",
                                   "--warmup-ratio", "0", "--per-device-train-batch-size", "8", "--logging-steps", "5",
                                   "--ema-decay", "0.9", "--eval-steps", "100"))
    assert code == 0
    assert "covers" in caplog.text and "of the training tokens" in caplog.text  # the OOV rate is logged
    curve = losses(out)
    # Every gold position is one the reader can pick: a window's loss is at most ~2 ln(window length), while a gold
    # span the reader cannot see (its context read as question) costs ~1e9 and still lets the curve go down.
    assert max(curve) < 20, curve
    assert np.mean(curve[-3:]) < np.mean(curve[:3]) - 0.5  # it learns
    for name in ("model.safetensors", "config.json", "tokenizer.json", "spanqa_reader.json", "all_results.json",
                 "README.md", "training_curves.png"):
        assert (out / name).exists(), name
    from spanqa.data import load_examples
    from spanqa.evaluation import evaluate
    from spanqa.reader import Reader

    reader = Reader.load(out, device="cpu")
    assert reader.precision == "fp32"  # recurrent readers run in fp32 whatever the CPU
    dataset = load_examples(V1)
    preds = reader.predict(dataset.examples)
    scores = evaluate(dataset, {p.id: p.answer for p in preds})
    results = json.loads((out / "all_results.json").read_text())
    assert scores["f1"] == pytest.approx(results["eval_f1"], abs=1e-9)
    assert results["eval_f1"] > 5.0  # it has learned something of its own training questions (random: ~0)
    assert 0 < results["num_trainable_parameters"] < results["num_parameters"]  # the vectors are frozen
    ex = dataset.examples[0]
    answer = reader.answer(ex.question, ex.context)[0]
    assert ex.context[answer.start : answer.end] == answer.text
    card = (out / "README.md").read_text()
    assert f"{architecture} reader trained from scratch" in card and str(tiny_vectors) in card


def test_a_v2_recurrent_reader_says_no_answer_through_cls(tiny_vectors, tmp_path):
    out = tmp_path / "v2"
    assert main(recurrent_args("lstm-baseline", tiny_vectors, out, "--train-data", V2, "--eval-data", V2,
                               "--max-steps", "10", "--optimizer", "adam", "--learning-rate", "1e-2")) == 0
    results = json.loads((out / "all_results.json").read_text())
    assert json.loads((out / "spanqa_reader.json").read_text())["version_2_with_negative"] is True
    assert "eval_NoAns_f1" in results and "eval_null_score_diff_threshold" in results


def test_export_to_onnx_is_refused_with_the_way_out(tiny_vectors, tmp_path, capsys):
    out = tmp_path / "r"
    assert main(recurrent_args("lstm-baseline", tiny_vectors, out, "--max-steps", "2")) == 0
    capsys.readouterr()
    assert main(["export", "--model", str(out), "--output", str(tmp_path / "onnx")]) == 2
    err = capsys.readouterr().err
    assert "cannot be exported to ONNX" in err and "spanqa serve" in err
    assert not (tmp_path / "onnx").exists()


def test_recurrent_settings_only_for_recurrent_models(tiny_model, tiny_vectors, tmp_path, capsys):
    assert main(train_args(tiny_model, tmp_path / "x", "--hidden-size", "8")) == 2
    assert "--hidden-size: a setting of recurrent readers" in capsys.readouterr().err
    bert = ReaderSettings.resolve({}, {"model": "minilm-l6"})
    assert bert.recurrent is None and "embeddings" not in bert.to_dict()
    bidaf = ReaderSettings.resolve({}, {"model": "bidaf", "embeddings": str(tiny_vectors)})
    assert bidaf.optim.precision == "fp32" and bidaf.recurrent.hidden_size == 100
    assert bidaf.to_dict()["embeddings"] == str(tiny_vectors)


def test_a_missing_vectors_file_is_a_clear_error(tmp_path, capsys):
    assert main(recurrent_args("bidaf", tmp_path / "nope.txt", tmp_path / "r", "--max-steps", "1")) == 2
    assert "nope.txt: no such file, and not an alias" in capsys.readouterr().err


def test_unlabelled_training_questions_are_counted(tiny_vectors, tmp_path, caplog):
    with caplog.at_level("INFO", logger="spanqa"):
        assert main(recurrent_args("lstm-baseline", tiny_vectors, tmp_path / "r", "--max-steps", "1",
                                   "--max-seq-length", "24", "--doc-stride", "4", "--max-query-length", "8",
                                   "--max-answer-length", "30")) == 0
    assert "answerable training questions have no window holding their answer" in caplog.text
