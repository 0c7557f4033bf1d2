"""What a finished run writes: results files, the seeds' hyperparameter list and card layout, curves."""

import json

from spanqa.tasks.reader_task import ReaderSettings
from spanqa.display import hms
from spanqa.train import outputs


def test_results_files_as_run_qa_writes_them(tmp_path):
    outputs.write_results(tmp_path, {"train_loss": 1.5}, {"eval_f1": 60.0})
    assert json.loads((tmp_path / "all_results.json").read_text()) == {"train_loss": 1.5, "eval_f1": 60.0}
    outputs.write_results(tmp_path / "no-eval", {"train_loss": 1.5}, {})
    assert not (tmp_path / "no-eval" / "eval_results.json").exists()


def test_hyperparameters_in_the_seeds_form():
    settings = ReaderSettings.resolve({}, {"learning_rate": 6e-5, "per_device_train_batch_size": 4,
                                           "gradient_accumulation_steps": 8, "optimizer": "lamb"}).to_dict()
    h = outputs.hyperparameters(settings, world_size=8, precision="bf16", device="cuda")
    assert h["total_train_batch_size"] == 4 * 8 * 8 and h["distributed_type"] == "cuda x 8"
    assert h["optimizer"].startswith("LAMB with betas=(0.9,0.999)") and h["training precision"] == "Mixed Precision (bf16)"
    assert h["doc_stride"] == 128 and hms(134.5) == "0:02:14.50"
    no_windows = {k: v for k, v in settings.items() if k != "doc_stride"}  # classification, pretraining
    assert "doc_stride" not in outputs.hyperparameters(no_windows, 1, "fp32", "cpu")


def test_card_has_the_seed_sections_and_the_figures(tmp_path):
    settings = ReaderSettings.resolve({}, {"train_data": "squad", "max_train_samples": 100}).to_dict()
    text = outputs.card("run", "Summary.", "About.", settings, {"learning_rate": 3e-5},
                        {"train_runtime": 75.0, "train_loss": 1.25}, {"eval_f1": 88.5}, "spanqa train ...", "questions")
    for part in ("# run", "## Intended uses & limitations", "(first 100 questions)", "- learning_rate: 3e-05",
                 "train_runtime = 0:01:15.00", "eval_f1 = 88.5000", "### Framework versions", "- torch "):
        assert part in text, part


def test_curves_are_drawn_from_the_log(tmp_path):
    log = [{"step": s, "loss": 5 - s, "learning_rate": 1e-4} for s in (1, 2, 3)] + [{"step": 3, "eval_f1": 40.0}]
    path = outputs.plot_curves(tmp_path, log)
    assert path.read_bytes()[:4] == b"\x89PNG" and not list(tmp_path.glob(".*"))
    assert outputs.plot_curves(tmp_path / "x", []) is None
