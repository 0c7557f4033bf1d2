"""End to end on a tiny random encoder: train -> save -> load -> predict -> evaluate; resume; DDP."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import FIXTURES

from spanqa.cli import main

V1 = str(FIXTURES / "squad-v1.1-dev-fixture.json")
V2 = str(FIXTURES / "squad-v2.0-dev-fixture.json")
SMALL = ["--max-seq-length", "128", "--doc-stride", "32", "--max-query-length", "32"]


def train_args(model, out, *extra):
    return ["train", "--model", str(model), "--train-data", V1, "--output-dir", str(out), *SMALL,
            "--report-to", "none", *extra]


def losses(out):
    state = json.loads((Path(out) / "trainer_state.json").read_text())
    return [r["loss"] for r in state["log_history"] if "loss" in r]


def test_train_save_load_predict_evaluate(tiny_model, tmp_path, capsys):
    out = tmp_path / "run"
    code = main(train_args(tiny_model, out, "--eval-data", V1, "--num-train-epochs", "3", "--learning-rate", "2e-3",
                           "--per-device-train-batch-size", "16", "--logging-steps", "5", "--eval-steps", "60",
                           "--report-to", "tensorboard"))
    assert code == 0
    curve = losses(out)
    assert np.mean(curve[-3:]) < np.mean(curve[:3]) - 0.5  # it learns
    for name in ("model.safetensors", "config.json", "tokenizer.json", "spanqa_reader.json", "train_results.json",
                 "eval_results.json", "all_results.json", "README.md", "training_curves.png"):
        assert (out / name).exists(), name
    assert list((out / "runs").iterdir())  # TensorBoard events
    train_results = json.loads((out / "train_results.json").read_text())
    assert {"train_runtime", "train_samples_per_second", "train_steps_per_second", "train_loss", "train_samples"} <= train_results.keys()
    card = (out / "README.md").read_text()
    for section in ("## Intended uses & limitations", "### Training hyperparameters", "***** train metrics *****",
                    "***** eval metrics *****", "### Framework versions", "- learning_rate: 0.002"):
        assert section in card
    # a fresh load from the folder predicts exactly what the run reported
    from transformers import AutoModelForQuestionAnswering, AutoTokenizer

    from spanqa.config import DataConfig, DecodeConfig
    from spanqa.data import load_examples
    from spanqa.evaluation import evaluate
    from spanqa.features import build_features
    from spanqa.inference import input_names_for, predict_features

    tokenizer = AutoTokenizer.from_pretrained(out)
    model = AutoModelForQuestionAnswering.from_pretrained(out)
    reader = json.loads((out / "spanqa_reader.json").read_text())
    dataset = load_examples(V1)
    feats = build_features(dataset.examples, tokenizer, DataConfig(**reader["data"]))
    preds = predict_features(model, feats, dataset.examples, DecodeConfig(**reader["decode"]), False,
                             input_names_for(tokenizer), tokenizer.pad_token_id, precision="bf16")
    scores = evaluate(dataset, {p.id: p.answer for p in preds})
    eval_results = json.loads((out / "eval_results.json").read_text())
    assert scores["f1"] == pytest.approx(eval_results["eval_f1"], abs=1e-9)
    assert eval_results["eval_f1"] > 5.0  # better than nothing on its own training questions


def test_squad_v2_run_stores_a_tuned_null_threshold(tiny_model, tmp_path):
    out = tmp_path / "v2"
    code = main(["train", "--model", str(tiny_model), "--train-data", V2, "--eval-data", V2, "--output-dir", str(out),
                 *SMALL, "--max-steps", "20", "--learning-rate", "2e-3", "--report-to", "none"])
    reader = json.loads((out / "spanqa_reader.json").read_text())
    results = json.loads((out / "eval_results.json").read_text())
    assert code == 0 and reader["version_2_with_negative"] is True
    assert {"eval_HasAns_f1", "eval_NoAns_f1", "eval_best_f1", "eval_best_f1_thresh"} <= results.keys()
    p = min(max(results["eval_best_f1_thresh"], 1e-12), 1 - 1e-12)
    assert reader["decode"]["null_score_diff_threshold"] == pytest.approx(np.log(p / (1 - p)))


def test_refuses_an_output_dir_with_another_run_and_a_missing_model(tiny_model, tmp_path, capsys):
    out = tmp_path / "taken"
    out.mkdir()
    (out / "something.txt").write_text("x")
    assert main(train_args(tiny_model, out, "--max-steps", "1")) == 2
    assert "already holds files" in capsys.readouterr().err
    assert main(train_args(tmp_path / "no-model", tmp_path / "new", "--max-steps", "1")) == 2
    assert "no such model folder" in capsys.readouterr().err
    assert main(train_args(tiny_model, tmp_path / "r", "--resume")) == 2
    assert "no checkpoint" in capsys.readouterr().err


def _weights(path):
    from safetensors.numpy import load_file

    return load_file(str(Path(path) / "model.safetensors"))


def _spanqa(*args):
    return [sys.executable, "-m", "spanqa.cli", *args]


@pytest.mark.slow
def test_sigterm_then_resume_gives_bitwise_the_same_weights(tiny_model, tmp_path):
    common = ["--max-steps", "120", "--save-steps", "10", "--learning-rate", "1e-3", "--precision", "fp32",
              "--per-device-train-batch-size", "8", "--logging-steps", "5"]
    straight = tmp_path / "straight"
    subprocess.run(_spanqa(*train_args(tiny_model, straight, *common)), check=True, capture_output=True)
    cut = tmp_path / "cut"
    proc = subprocess.Popen(_spanqa(*train_args(tiny_model, cut, *common)), stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while not (cut / "checkpoint-10").exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 0 and "stopped by SIGTERM" in err and "--resume" in err
    stopped_at = json.loads(max((p for p in cut.glob("checkpoint-*")), key=lambda p: int(p.name.split("-")[1]))
                            .joinpath("train_state.json").read_text())["step"]
    assert 10 <= stopped_at < 120
    subprocess.run(_spanqa(*train_args(tiny_model, cut, *common, "--resume")), check=True, capture_output=True)
    a, b = _weights(straight), _weights(cut)
    assert a.keys() == b.keys()
    assert all(np.array_equal(a[k], b[k]) for k in a)  # bitwise


@pytest.mark.slow
def test_two_process_ddp_matches_one_process_with_double_batch(tiny_model, tmp_path):
    common = ["--max-steps", "12", "--logging-steps", "1", "--precision", "fp32", "--learning-rate", "3e-4",
              "--config-overrides", "hidden_dropout_prob=0.0,attention_probs_dropout_prob=0.0"]
    one, two = tmp_path / "one", tmp_path / "two"
    subprocess.run(_spanqa(*train_args(tiny_model, one, *common, "--per-device-train-batch-size", "16")),
                   check=True, capture_output=True)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    launcher = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29561",
                "-m", "spanqa.cli", *train_args(tiny_model, two, *common, "--per-device-train-batch-size", "8")]
    done = subprocess.run(launcher, capture_output=True, text=True, env=env, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "2 process(es)" in done.stderr
    np.testing.assert_allclose(losses(two), losses(one), rtol=1e-4)


def test_regression_training_runs_with_dropout_on(tiny_model, tmp_path, monkeypatch):
    """from_pretrained returns eval mode; the loop must switch to train mode or dropout never acts."""
    from spanqa.train import loop

    seen = []
    original = loop._optimizer_step

    def spy(parts, *args):
        model = parts.model
        seen.append(model.training and all(m.training for m in model.modules()))
        return original(parts, *args)

    monkeypatch.setattr(loop, "_optimizer_step", spy)
    assert main(train_args(tiny_model, tmp_path / "run", "--max-steps", "6", "--eval-data", V1,
                           "--eval-steps", "3", "--max-eval-samples", "20")) == 0
    assert seen and all(seen)  # also after the evaluation at step 3


def test_several_eval_sources_are_scored_each_and_macro_averaged(tiny_model, tmp_path):
    out = tmp_path / "multi"
    mrqa = str(FIXTURES / "mrqa-drop-fixture.jsonl.gz")
    assert main(["train", "--model", str(tiny_model), "--train-data", f"{V1},{mrqa}", "--eval-data", f"{V1},{mrqa}",
                 "--output-dir", str(out), *SMALL, "--max-steps", "4", "--report-to", "none",
                 "--max-eval-samples", "30"]) == 0
    results = json.loads((out / "eval_results.json").read_text())
    parts = [results["eval_squad-v1.1-dev-fixture_f1"], results["eval_mrqa-drop-fixture_f1"]]
    assert results["eval_f1"] == pytest.approx(sum(parts) / 2)
