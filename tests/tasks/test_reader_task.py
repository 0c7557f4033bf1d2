"""The reader task end to end on a tiny random encoder: train -> save -> load -> predict -> evaluate."""

import json

import numpy as np
import pytest
from conftest import FIXTURES, SMALL, V1, V2, losses, train_args

from spanqa.cli import main



def test_train_save_load_predict_evaluate(tiny_model, tmp_path, capsys):
    out = tmp_path / "run"
    code = main(train_args(tiny_model, out, "--eval-data", V1, "--num-train-epochs", "3", "--learning-rate", "2e-3",
                           "--per-device-train-batch-size", "16", "--logging-steps", "5", "--eval-steps", "60",
                           "--report-to", "tensorboard", "--precision", "fp32"))
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
    # a fresh load from the folder predicts exactly what the run reported (both in fp32: any CPU has it)
    from spanqa.data import load_examples
    from spanqa.evaluation import evaluate
    from spanqa.reader import Reader

    dataset = load_examples(V1)
    preds = Reader.load(out, precision="fp32", device="cpu").predict(dataset.examples)
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


def test_several_eval_sources_are_scored_each_and_macro_averaged(tiny_model, tmp_path):
    out = tmp_path / "multi"
    mrqa = str(FIXTURES / "mrqa-drop-fixture.jsonl.gz")
    assert main(["train", "--model", str(tiny_model), "--train-data", f"{V1},{mrqa}", "--eval-data", f"{V1},{mrqa}",
                 "--output-dir", str(out), *SMALL, "--max-steps", "4", "--report-to", "none",
                 "--max-eval-samples", "30"]) == 0
    results = json.loads((out / "eval_results.json").read_text())
    parts = [results["eval_squad-v1.1-dev-fixture_f1"], results["eval_mrqa-drop-fixture_f1"]]
    assert results["eval_f1"] == pytest.approx(sum(parts) / 2)


def test_the_model_card_carries_metadata_the_hub_reads_with_the_runs_real_figures(tiny_model, tmp_path):
    from huggingface_hub import ModelCard

    out = tmp_path / "card"
    assert main(train_args(tiny_model, out, "--max-steps", "3", "--eval-data", V1, "--max-eval-samples", "30",
                           "--precision", "fp32")) == 0
    card = ModelCard.load(out / "README.md")
    results = json.loads((out / "all_results.json").read_text())
    assert "spanqa" in card.data.tags and "question-answering" in card.data.tags
    index = card.data.to_dict()["model-index"][0]
    assert index["name"] == out.name
    metrics = {m["name"]: m["value"] for r in index["results"] for m in r["metrics"]}
    assert metrics["Exact Match"] == pytest.approx(results["eval_exact_match"], abs=1e-4)
    assert metrics["F1"] == pytest.approx(results["eval_f1"], abs=1e-4)
    assert index["results"][0]["task"]["type"] == "question-answering"
    assert card.text.lstrip().startswith(f"# {out.name}")  # the seeds' card follows the metadata


def test_the_licence_comes_from_the_base_models_card_when_it_is_at_hand():
    from spanqa.train.outputs import base_licence

    assert base_licence("minilm-l6") == "apache-2.0"  # the packaged all-MiniLM-L6-v2 card says so
    assert base_licence("someorg/not-here") is None
