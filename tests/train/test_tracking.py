"""Trackers: a resumed run (a requeued cluster job) continues its tracker run instead of opening another."""

import sys
from types import ModuleType, SimpleNamespace

from spanqa.train.tracking import make_tracker


def fake_mlflow(calls: list) -> ModuleType:
    module = ModuleType("mlflow")

    def start_run(run_id=None, run_name=None):
        calls.append(("start_run", run_id, run_name))
        return SimpleNamespace(info=SimpleNamespace(run_id=run_id or f"new-{len(calls)}"))

    module.start_run = start_run
    module.log_params = lambda params: calls.append(("log_params",))
    module.log_metrics = lambda metrics, step: calls.append(("log_metrics", step))
    module.end_run = lambda: calls.append(("end_run",))
    return module


def fake_wandb(calls: list) -> ModuleType:
    module = ModuleType("wandb")
    ids = iter(["w1", "w2", "w3"])
    module.util = SimpleNamespace(generate_id=lambda: next(ids))

    def init(**kwargs):
        calls.append(kwargs)
        return SimpleNamespace(log=lambda *a, **k: None, finish=lambda: None)

    module.init = init
    return module


def test_mlflow_and_wandb_runs_continue_after_a_restart(tmp_path, monkeypatch):
    calls = []
    monkeypatch.setitem(sys.modules, "mlflow", fake_mlflow(calls))
    first = make_tracker("mlflow", tmp_path, "run", {"lr": 1e-3})
    first.log({"loss": 1.0}, 5)
    first.close()
    again = make_tracker("mlflow", tmp_path, "run", {"lr": 1e-3})  # the requeued job
    again.close()
    starts = [c for c in calls if c[0] == "start_run"]
    assert starts[0] == ("start_run", None, "run") and starts[1] == ("start_run", "new-1", None)
    assert sum(c[0] == "log_params" for c in calls) == 1  # parameters are logged once per run

    wandb_calls = []
    monkeypatch.setitem(sys.modules, "wandb", fake_wandb(wandb_calls))
    other = tmp_path / "w"
    other.mkdir()
    make_tracker("wandb", other, "run", {})
    make_tracker("wandb", other, "run", {})
    assert [c["id"] for c in wandb_calls] == ["w1", "w1"] and all(c["resume"] == "allow" for c in wandb_calls)
