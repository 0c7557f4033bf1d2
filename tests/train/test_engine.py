"""The engine under a task: output folders, pre-emption and exact resume, DDP, dropout, the time budget.

The reader task drives it (the engine itself knows no task).
"""

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import V1, losses, train_args

from spanqa.cli import main



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


def test_resume_auto_starts_a_new_run_continues_a_checkpointed_one_and_spares_a_finished_one(tiny_model, tmp_path,
                                                                                            capsys, caplog):
    out = tmp_path / "auto"
    common = ["--precision", "fp32", "--save-steps", "2", "--max-steps", "4", "--resume", "auto",
              "--keep-final-checkpoint"]
    assert main(train_args(tiny_model, out, *common)) == 0  # nothing there yet: starts
    straight = _weights(out)
    assert (out / "checkpoint-2").is_dir()
    for name in ("config.json", "all_results.json", "model.safetensors"):  # as if pre-empted after step 2
        (out / name).unlink()
    with caplog.at_level("INFO", logger="spanqa.train.engine"):
        assert main(train_args(tiny_model, out, *common)) == 0  # a checkpoint: resumes it
    assert "resuming from" in caplog.text and "checkpoint-2" in caplog.text
    again = _weights(out)
    assert all(np.array_equal(straight[k], again[k]) for k in straight)  # the same run, continued exactly
    shutil.rmtree(out / "checkpoint-2")
    assert main(train_args(tiny_model, out, *common)) == 2  # a finished model and no checkpoint: left alone
    assert "already holds files" in capsys.readouterr().err
    assert main(train_args(tiny_model, tmp_path / "x", "--resume", "sometimes")) == 2
    assert "expected yes, no or auto" in capsys.readouterr().err


def test_resume_skips_a_newest_checkpoint_cut_short_and_ends_equal_to_an_uninterrupted_run(tiny_model, tmp_path,
                                                                                            caplog):
    common = ["--precision", "fp32", "--save-steps", "2", "--max-steps", "6", "--keep-final-checkpoint"]
    straight, cut = tmp_path / "straight", tmp_path / "cut"
    assert main(train_args(tiny_model, straight, *common)) == 0
    assert main(train_args(tiny_model, cut, *common)) == 0
    for name in ("config.json", "all_results.json", "model.safetensors"):  # pre-empted after step 4 was saved...
        (cut / name).unlink()
    weights = cut / "checkpoint-4" / "model.safetensors"  # ...and the newest checkpoint's copy stopped half way
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    with caplog.at_level("INFO"):
        assert main(train_args(tiny_model, cut, *common, "--resume", "auto")) == 0
    assert "skipped checkpoint-4: model.safetensors has" in caplog.text and "checkpoint-2 (step 2)" in caplog.text
    a, b = _weights(straight), _weights(cut)
    assert all(np.array_equal(a[k], b[k]) for k in a)  # steps 3-6 trained again, to the same weights


@pytest.fixture
def small_disk(tmp_path):
    """A function that mounts a tmpfs of N bytes and returns its folder (unmounted after the test); the test
    skips, with the reason, where this machine does not let the test mount one (not root, no CAP_SYS_ADMIN)."""
    mounted = []

    def mount(size: int) -> Path:
        folder = tmp_path / f"disk{len(mounted)}"
        folder.mkdir()
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)],
                              capture_output=True, text=True)
        if done.returncode != 0:
            pytest.skip(f"cannot mount a small tmpfs here ({done.stderr.strip() or done.returncode}); the patched-write "
                        "test in test_checkpoint.py covers a full disk instead")
        mounted.append(folder)
        return folder

    yield mount
    for folder in mounted:
        subprocess.run(["umount", str(folder)], capture_output=True)


@pytest.mark.slow
def test_a_disk_that_fills_stops_training_with_the_space_needed_and_keeps_the_last_checkpoint(tiny_model, tmp_path,
                                                                                          small_disk, capsys):
    common = ["--precision", "fp32", "--save-steps", "2", "--max-steps", "6", "--keep-final-checkpoint"]
    sized = tmp_path / "sized"
    assert main(train_args(tiny_model, sized, *common)) == 0
    one = sum(f.stat().st_size for f in (sized / "checkpoint-2").iterdir())
    disk = small_disk(int(one * 1.5) // 4096 * 4096)  # room for the first checkpoint, not the second
    out = disk / "run"
    assert main(train_args(tiny_model, out, *common)) == 2
    err = capsys.readouterr().err
    assert re.search(r"could not write \S+checkpoint-4: the disk is full \([\d.]+ \w+ free\); it needs about [\d.]+ (KB|MB)",
                     err), err
    assert sorted(p.name for p in out.iterdir() if p.name.startswith(("checkpoint", ".tmp"))) == ["checkpoint-2"]
    from spanqa.train.checkpoint import latest_checkpoint

    assert latest_checkpoint(out).name == "checkpoint-2"  # whole, verified: --resume continues from it


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
    env = {**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}  # two CPU processes (gloo), GPU or not
    subprocess.run(_spanqa(*train_args(tiny_model, one, *common, "--per-device-train-batch-size", "16")),
                   check=True, capture_output=True, env=env)
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


def run_budget(seconds: float, recipe_total: int, step_seconds) -> tuple[int, int, int]:
    """Drive `_Budget` like `train_loop` does, on a fake clock where step n takes step_seconds(n); returns
    (steps trained, the final plan, re-plans)."""
    from types import SimpleNamespace

    from spanqa.train.loop import TrainState, _Budget
    from spanqa.train.optim import StepPlan

    state, plan = TrainState(planned_total=recipe_total), StepPlan(total=recipe_total, warmup_ratio=0.1)
    budget = _Budget(seconds, state, SimpleNamespace(num_processes=1), recipe_total)
    while state.step < plan.total:
        state.step += 1
        state.train_seconds += step_seconds(state.step)
        budget.replan(plan)
        if state.step < plan.total and budget.spent():
            break
    return state.step, plan.total, budget.replans


def test_a_time_budget_re_plans_after_a_slow_start_and_trains_the_steps_that_fit():
    # the first 6 steps take 3 s (warming up), the rest 1 s: 18 s + 82 steps fill the 100 s budget
    steps, planned, replans = run_budget(100.0, 200, lambda n: 3.0 if n <= 6 else 1.0)
    assert 84 <= steps <= 88 and steps == planned  # the plan ran to its end, not cut by the budget
    assert replans >= 2  # first from the slow steps (too few), then from the fast ones (given back)
    # planning once from the first timed steps alone, as before, would have planned 33 + 1 steps
    assert run_budget(100.0, 200, lambda n: 3.0)[0] == 33


def test_a_time_budget_never_plans_past_the_recipe_and_stops_when_spent():
    assert run_budget(1000.0, 50, lambda n: 1.0) == (50, 50, 0)  # fits: the recipe's plan, untouched
    steps, planned, _ = run_budget(100.0, 500, lambda n: 1.0 if n < 40 else 5.0)  # slows down late
    assert steps < planned or steps * 1.0 <= 100.0  # stopped by the budget, or re-planned to fit it
    assert sum(1.0 if n < 40 else 5.0 for n in range(1, steps)) < 100.0  # never a step started after it


def test_a_time_budget_stops_training_then_saves_and_evaluates(tiny_model, tmp_path, monkeypatch):
    # the loop's clock is fake: every call moves it 25 ms on, so a step (timed by two calls) takes 25 ms whatever
    # the machine's load, and the 1.5 s budget fits 60 steps of the recipe's 4,000
    from spanqa.train import loop

    now = [0.0]

    def tick() -> float:
        now[0] += 0.025
        return now[0]

    monkeypatch.setattr(loop.time, "perf_counter", tick)
    out = tmp_path / "budget"
    assert main(train_args(tiny_model, out, "--num-train-epochs", "50", "--max-time", "1.5", "--eval-data", V1,
                           "--max-eval-samples", "20", "--precision", "fp32", "--learning-rate", "1e-3",
                           "--logging-steps", "1")) == 0
    results = json.loads((out / "all_results.json").read_text())
    assert results["recipe_steps"] == 50 * 80 and "eval_f1" in results
    assert 55 <= results["total_steps"] <= 61 and results["train_runtime"] <= 1.5 + 0.05
    assert (out / "model.safetensors").exists() and (out / "spanqa_reader.json").exists()
    lrs = [r["learning_rate"] for r in json.loads((out / "trainer_state.json").read_text())["log_history"]
           if "learning_rate" in r]
    # the plan fitted the budget: warmup (10% of ~60 steps) reaches the peak, and the rate decays by the end
    assert 0.5e-3 <= max(lrs) <= 1e-3 and lrs[-1] < 0.5 * max(lrs)
