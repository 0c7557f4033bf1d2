"""Bundles for offline machines: made from local sources, verified, corrupted files named, recipes run from
them with the hub off; offline failures are immediate and name the fetch that fixes them."""

import json
import time

import pytest
import yaml
from conftest import V1

from spanqa.bundle import BundleManifest
from spanqa.commands.fetch import recipe_names
from spanqa.cli import main
from spanqa.config import read_recipe


@pytest.fixture()
def saved_dataset(tmp_path):
    import datasets

    from spanqa.data import load_examples

    rows = [{"id": e.id, "title": e.title, "question": e.question, "context": e.context,
             "answers": {"text": [a.text for a in e.answers], "answer_start": [a.start for a in e.answers]}}
            for e in load_examples(V1).examples]
    path = tmp_path / "squad-tiny"
    datasets.DatasetDict({"train": datasets.Dataset.from_list(rows),
                          "validation": datasets.Dataset.from_list(rows[:40])}).save_to_disk(str(path))
    return path


@pytest.fixture()
def bundle(tmp_path, tiny_model, saved_dataset, tiny_vectors, capsys):
    out = tmp_path / "bundle"
    assert main(["fetch", "--output", str(out), "--model", f"someorg/tiny-qa={tiny_model}",
                 "--dataset", f"someorg/squad-tiny={saved_dataset}", "--embeddings", str(tiny_vectors)]) == 0
    capsys.readouterr()
    return out


def test_a_bundle_from_local_sources_records_and_verifies_every_file(bundle, capsys):
    manifest = BundleManifest.load(bundle)
    kinds = {(e.kind, e.name) for e in manifest.entries}
    assert {("model", "someorg/tiny-qa"), ("dataset", "someorg/squad-tiny")} <= kinds
    model = manifest.find("model", "someorg/tiny-qa")
    names = {f.path.split("/")[-1] for f in model.files}
    assert "model.safetensors" in names and "tokenizer.json" in names and model.revision == "local"
    assert all(len(f.sha256) == 64 and f.size > 0 for e in manifest.entries for f in e.files)
    assert main(["fetch", "--verify", str(bundle)]) == 0
    assert "loads with the hub switched off" in capsys.readouterr().err


def test_a_corrupt_or_missing_file_is_named(bundle, capsys):
    manifest = BundleManifest.load(bundle)
    weights = next(f for f in manifest.find("model", "someorg/tiny-qa").files if f.path.endswith(".safetensors"))
    data = bytearray((bundle / weights.path).read_bytes())
    data[-10] ^= 0xFF
    (bundle / weights.path).write_bytes(bytes(data))
    vectors = manifest.find("vectors", next(e.name for e in manifest.entries if e.kind == "vectors")).files[0]
    (bundle / vectors.path).unlink()
    assert main(["fetch", "--verify", str(bundle)]) == 2
    err = capsys.readouterr().err
    assert f"{weights.path} does not match its sha256" in err and f"{vectors.path} is missing" in err


def test_a_recipe_runs_from_the_bundle_with_the_hub_off(bundle, tmp_path, capsys):
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(yaml.safe_dump({
        "command": "train", "model": "someorg/tiny-qa", "train_data": "someorg/squad-tiny",
        "eval_data": "someorg/squad-tiny", "max_steps": 3, "max_seq_length": 128, "doc_stride": 32,
        "output_dir": str(tmp_path / "run"), "report_to": "none", "precision": "fp32"}))
    assert main(["train", "--config", str(recipe), "--bundle", str(bundle), "--offline"]) == 0
    results = json.loads((tmp_path / "run" / "all_results.json").read_text())
    assert results["eval_samples"] > 0 and "eval_f1" in results


def test_offline_failures_are_immediate_and_name_the_fetch_that_fixes_them(tmp_path, capsys):
    import spanqa.tasks.reader_task  # noqa: F401 - imports first: the timing is of the failure, not of loading torch
    import transformers  # noqa: F401

    t0 = time.perf_counter()
    code = main(["train", "--model", "someorg/not-here", "--train-data", V1, "--output-dir", str(tmp_path / "a"),
                 "--offline", "--report-to", "none"])
    seconds = time.perf_counter() - t0
    err = capsys.readouterr().err
    assert code == 2 and seconds < 5, seconds
    assert "spanqa fetch --model someorg/not-here --output BUNDLE" in err and "hub is off" in err
    predictions = tmp_path / "predictions.json"
    predictions.write_text("{}")
    t0 = time.perf_counter()
    code = main(["evaluate", "someorg/no-such-data", str(predictions), "--offline"])
    err = capsys.readouterr().err
    assert code == 2 and time.perf_counter() - t0 < 5
    assert "spanqa fetch --dataset someorg/no-such-data" in err


def test_a_recipe_names_what_fetch_takes():
    models, datasets, vectors = recipe_names(read_recipe("recipes/roberta-base-squad2.yaml"))
    assert models == ["roberta-base"] and datasets == ["squad_v2"] and vectors == []
    assert recipe_names({"model": "bidaf", "embeddings": "glove-6b-50d", "train_data": V1})[1:] == ([], ["glove-6b-50d"])


@pytest.mark.parametrize("name", ["runs/does-not-exist", "./model", "a/b/c", "~/no-such-model-here"])
def test_a_name_that_looks_like_a_path_never_asks_the_hub(tmp_path, monkeypatch, capsys, name):
    """A mistyped path fails at once, naming the current directory, with the hub reachable or not."""
    import spanqa.bundle

    monkeypatch.chdir(tmp_path)
    (tmp_path / "runs").mkdir()

    def no_hub(*args, **kwargs):
        raise AssertionError("asked the hub about a path")

    monkeypatch.setattr(spanqa.bundle, "hub_unavailable", no_hub)
    monkeypatch.setattr("spanqa.models.hub.hub_unavailable", no_hub)
    monkeypatch.setattr("spanqa.models.hub.from_bundle", no_hub)
    t0 = time.perf_counter()
    assert main(["ask", "--model", name, "--question", "Who?", "--context", "Ada wrote it."]) == 2
    err = capsys.readouterr().err
    assert f"{name}: no such model folder (relative paths start at {tmp_path})" in err
    assert time.perf_counter() - t0 < 2
