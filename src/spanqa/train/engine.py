"""The training engine every task runs on: output folder, precision, optimizer, schedule, resume, the loop,
evaluation, checkpoints and the final outputs. It knows nothing about questions and answers.

A task (`spanqa.tasks.*`) hands `fit` a `Task`: the model and tokenizer, its training data (a ragged
container with `lengths` and `pad`), the objective, an evaluator, how to save the final model folder and
how to write its card. Adding a task means writing one module that builds one.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch

from spanqa.artifacts import RUN_FILE, WEIGHTS_FILE
from spanqa.files import file_mode, write_failed, write_json_atomic
from spanqa.errors import SpanqaError
from spanqa.memory import keep_freed_memory
from spanqa.models.cpu_kernels import use_fast_cpu_training
from spanqa.models.hub import quiet_transformers
from spanqa.precision import describe, resolve_precision
from spanqa.train import outputs
from spanqa.train.checkpoint import (EMA_FILE, latest_checkpoint, list_checkpoints, load_checkpoint, load_weights,
                                    rng_state, save_checkpoint, set_rng_state)
from spanqa.train.run_config import Settings
from spanqa.train.ema import EMA
from spanqa.train.loop import LoopParts, TrainState, plan_steps, train_loop
from spanqa.train.optim import StepPlan, build_optimizer, build_schedule
from spanqa.train.tracking import check_tracker, make_tracker

log = logging.getLogger(__name__)


@dataclass
class Task:
    """What differs between fine-tuning a reader, classification and pretraining; `fit` does the rest.

    Attributes:
        data: training rows, a `batching.Ragged` (`lengths`, `len()`, `pad(rows, pad_id, multiple_of)`).
        objective: objective(model, batch) -> [b] per-row loss.
        evaluator: evaluator(model) -> {"eval_...": value} (None: no evaluation); its `main_metric` names
            the default metric for picking the best checkpoint (lower is better for a "...loss" metric).
        n_examples: training examples (questions, sentences, documents) behind `data`.
        save: save(folder, model, last eval metrics) writes the final model folder's own files.
        card: card(name, hyperparameters, train metrics, eval metrics) -> the README.md text.
        command: the subcommand that runs this task (for the resume hint after a pre-emption).
    """

    model: torch.nn.Module
    tokenizer: object
    data: object
    objective: Callable
    evaluator: Callable | None
    n_examples: int
    save: Callable
    card: Callable
    command: str = "train"


@dataclass(frozen=True)
class Run:
    """What `start` prepared: the output folder, the Accelerator and the resolved precision."""

    out: Path
    acc: object
    precision: str

    @property
    def main(self) -> bool:
        return self.acc.is_main_process


def start(settings: Settings) -> Run:
    """What every task does first: the output folder checked, the tracker checked, Accelerate started, the
    precision resolved and the seed set for new weights."""
    from accelerate import Accelerator

    out = check_output_dir(settings)
    check_tracker(settings.run.report_to)
    keep_freed_memory()  # the same activations are freed and allocated again every step
    acc = Accelerator(cpu=not torch.cuda.is_available())
    precision = resolve_precision(settings.optim.precision, acc.device)
    if acc.is_main_process:
        log.info("precision: %s", describe(precision, acc.device))
    torch.manual_seed(settings.optim.seed)
    return Run(out, acc, precision)


def check_output_dir(settings: Settings) -> Path:
    """The output folder, refusing one that holds another run unless resuming or overwriting.

    Raises:
        SpanqaError: no --output-dir, a folder with another run, or --resume with nothing to resume.
    """
    run = settings.run
    if not run.output_dir:
        raise SpanqaError("--output-dir is required: where the model, checkpoints and metrics go.")
    out = Path(run.output_dir)
    if run.resume == "yes":
        if not list_checkpoints(out):
            raise SpanqaError(f"--resume: {out} has no checkpoint-* folder to resume from.")
        return out
    if run.resume == "auto" and (list_checkpoints(out) or not _holds_a_model(out)):
        return out  # a checkpoint to resume, or a folder a pre-empted run left before its first checkpoint
    if out.exists() and any(out.iterdir()) and not run.overwrite_output_dir:
        raise SpanqaError(
            f"{out} already holds files (another run?). Use --resume to continue it, --overwrite-output-dir to "
            "write over it, or another --output-dir."
        )
    return out


def _holds_a_model(out: Path) -> bool:
    """A finished run's files (a model or final results), which --resume auto must not write over."""
    return any((out / name).exists() for name in ("config.json", "all_results.json", "model.safetensors"))


def resumes(settings: Settings, out: Path) -> bool:
    """Whether this run continues from a checkpoint (--resume yes, or auto with a checkpoint there)."""
    return settings.run.resume == "yes" or (settings.run.resume == "auto" and bool(list_checkpoints(out)))


def fit(settings: Settings, run: Run, task: Task) -> dict:
    """Train `task` to the end (or a stop signal); returns all_results ({} after a stop)."""
    optim, acc, out = settings.optim, run.acc, run.out
    model = task.model
    if acc.device.type == "cpu":
        changed = use_fast_cpu_training(model)
        if changed and run.main:
            log.info("CPU training kernels replaced: %s", "; ".join(changed))
    steps_per_epoch, total = plan_steps(len(task.data), optim, acc.num_processes)
    plan = StepPlan(total, optim.warmup_ratio)
    optimizer = build_optimizer(
        model, optim.optimizer, optim.learning_rate, optim.weight_decay, (optim.adam_beta1, optim.adam_beta2),
        optim.adam_epsilon, optim.lamb_bias_correction, optim.adadelta_rho,
    )
    scheduler = build_schedule(optimizer, optim.lr_scheduler_type, plan)
    scaler = torch.amp.GradScaler("cuda", init_scale=optim.loss_scale) if run.precision == "fp16" else None
    model.train()  # from_pretrained returns eval mode: without this, dropout never acts
    model = acc.prepare_model(model)
    # the average lives where the weights do (made after they moved to the GPU), by the unwrapped model's names
    ema = EMA(acc.unwrap_model(model), optim.ema_decay) if optim.ema_decay else None
    torch.manual_seed(optim.seed + acc.process_index)  # dropout streams differ by process
    state = TrainState(planned_total=total)
    if resumes(settings, out):
        state = _resume(out, acc, model, optimizer, scheduler, scaler, ema)
        plan.total = state.planned_total or total
    elif run.main:
        out.mkdir(parents=True, exist_ok=True)
    acc.wait_for_everyone()
    tracker = make_tracker(settings.run.report_to, out, settings.run.run_name or out.name, settings.to_dict()) \
        if run.main else None
    hooks = _Hooks(run, model, optimizer, scheduler, scaler, state, settings, task.evaluator, tracker, ema)
    parts = LoopParts(
        model, optimizer, scheduler, scaler, acc, task.data, task.tokenizer.pad_token_id or 0, task.objective,
        run.precision, hooks.evaluate, hooks.save, hooks.on_log, plan, ema,
    )
    if run.main:
        log.info("training %s on %d sequences (%d examples): %d steps, %d per epoch, %d process(es)",
                 settings.run.model, len(task.data), task.n_examples, plan.total, steps_per_epoch, acc.num_processes)
    with _progress(run.main, plan, state.step) as bar:
        outcome = train_loop(parts, optim, state, bar)
    if outcome not in ("done", "time"):
        if run.main:
            print(f"spanqa: stopped by {outcome} after step {state.step}; checkpoint saved in {out}. "
                  f"Resume with: spanqa {task.command} --resume --output-dir {out} "
                  "(and the same settings).", file=sys.stderr)
        acc.wait_for_everyone()
        return {}
    if outcome == "time" and run.main:
        log.info("time budget of %.0f s reached after step %d of %d: saving and evaluating this model",
                 optim.max_time, state.step, plan.total)
    elif run.main and plan.total < total:
        log.info("all %d planned steps done in %.0f s (the %.0f s budget fitted %d of the recipe's %d steps)",
                 state.step, state.train_seconds, optim.max_time, plan.total, total)
    results = hooks.finish(task, outcome) if run.main else {}
    acc.wait_for_everyone()
    if tracker:
        tracker.close()
    return results


def run_task(settings: Settings, build: Callable, command: str = "") -> dict:
    """`start`, then `fit` the task that `build(settings, run, command)` makes; returns all_results."""
    run = start(settings)
    return fit(settings, run, build(settings, run, command))


def _resume(out: Path, acc, model, optimizer, scheduler, scaler, ema) -> TrainState:
    latest = latest_checkpoint(out)  # the newest that verifies; newer ones cut short are logged and skipped
    saved, rng = load_checkpoint(latest, acc.unwrap_model(model), optimizer, scheduler, scaler, ema)
    set_rng_state(rng[acc.process_index])
    if acc.is_main_process:
        log.info("resuming from %s (step %d)", latest, saved["step"])
    return TrainState(**saved)


class _Hooks:
    """Evaluation, checkpointing and logging for one run (the main process does the writing)."""

    def __init__(self, run: Run, model, optimizer, scheduler, scaler, state, settings, evaluator, tracker, ema=None):
        self.run, self.acc, self.out = run, run.acc, run.out
        self.model, self.optimizer, self.scheduler, self.scaler = model, optimizer, scheduler, scaler
        self.state, self.settings, self.evaluator, self.tracker = state, settings, evaluator, tracker
        self.ema = ema
        self.last_eval: dict = {}

    def _evaluated_weights(self):
        """The weights evaluation and the saved model use: the moving average when there is one."""
        model = self.acc.unwrap_model(self.model)
        return self.ema.applied(model) if self.ema is not None else contextlib.nullcontext(model)

    def on_log(self, record: dict) -> None:
        if self.tracker:
            self.tracker.log(record, record["step"])

    def evaluate(self, step: int) -> None:
        if self.evaluator is not None:
            with self._evaluated_weights() as model:
                metrics = self.evaluator(model)
            self.last_eval = metrics
            self.state.log_history.append({"step": step, **metrics})
            self.on_log({"step": step, **metrics})
            key = self._metric_key()
            log.info("step %d: %s", step, "  ".join(
                f"{k[5:]} {metrics[k]:.4g}" for k in dict.fromkeys(("eval_exact_match", "eval_f1", key)) if k in metrics))
            if self._improved(metrics):
                self.state.best_metric = metrics[key]
                self.state.best_checkpoint = f"checkpoint-{step}"
        self.acc.wait_for_everyone()
        if self.state.best_checkpoint == f"checkpoint-{step}":
            self.save(step)

    def _metric_key(self) -> str:
        name = self.settings.optim.metric_for_best_model or getattr(self.evaluator, "main_metric", "f1")
        return name if name.startswith("eval_") else f"eval_{'exact_match' if name == 'exact' else name}"

    def _improved(self, metrics: dict) -> bool:
        value, best = metrics.get(self._metric_key()), self.state.best_metric
        if value is None:
            return False
        lower_is_better = self._metric_key().endswith("loss")
        return best is None or (value < best if lower_is_better else value > best)

    def save(self, step: int) -> None:
        states = self._gather_rng()
        if self.acc.is_main_process:
            save_checkpoint(
                self.out, step, self.acc.unwrap_model(self.model), self.optimizer, self.scheduler, self.scaler,
                self.state.to_dict(), self.settings.to_dict(), states, self.settings.optim.save_total_limit,
                protect=self.state.best_checkpoint, ema=self.ema,
            )
        self.acc.wait_for_everyone()

    def _gather_rng(self) -> list[dict]:
        if self.acc.num_processes == 1:
            return [rng_state()]
        gathered = [None] * self.acc.num_processes
        torch.distributed.all_gather_object(gathered, rng_state())
        return gathered

    def finish(self, task: Task, outcome: str) -> dict:
        """Final evaluation, best weights, the model folder, results, card and curves."""
        model = self.acc.unwrap_model(self.model)
        if self.evaluator is not None:
            self.evaluate(self.state.step)
        if self.ema is not None:
            self.ema.copy_to(model)
        if self.evaluator is not None:
            self._restore_best(model)
        task.save(self.out, model, self.last_eval)
        write_json_atomic(self.out / RUN_FILE, self.settings.to_dict(), indent=1)
        train_metrics = self._train_metrics(len(task.data), task.n_examples, outcome)
        train_metrics["num_parameters"] = sum(p.numel() for p in model.parameters())
        train_metrics["num_trainable_parameters"] = sum(p.numel() for p in model.parameters() if p.requires_grad)
        eval_metrics = {k: v for k, v in self.last_eval.items() if not k.startswith("eval_HasAns_total")}
        eval_metrics = {"epoch": train_metrics["epoch"], **eval_metrics} if eval_metrics else {}
        outputs.write_results(self.out, train_metrics, eval_metrics)
        hparams = outputs.hyperparameters(self.settings.to_dict(), self.acc.num_processes, self.run.precision,
                                          self.acc.device.type)
        name = self.settings.run.run_name or self.out.name
        outputs.write_card(self.out, task.card(name, hparams, train_metrics, eval_metrics))
        outputs.plot_curves(self.out, self.state.log_history, self._metric_key())
        write_json_atomic(self.out / "trainer_state.json", self.state.to_dict())
        self._drop_checkpoints()
        return {**train_metrics, **eval_metrics}

    def _drop_checkpoints(self) -> None:
        """A completed run's checkpoints (optimizer state: ~2x the model) go once the final model is saved."""
        checkpoints = list_checkpoints(self.out)
        if not checkpoints:
            return
        if self.settings.optim.keep_final_checkpoint:
            log.info("kept %d checkpoint(s) (--keep-final-checkpoint)", len(checkpoints))
            return
        size = sum(f.stat().st_size for c in checkpoints for f in c.rglob("*") if f.is_file())
        for checkpoint in checkpoints:
            shutil.rmtree(checkpoint)
        log.info("removed %d checkpoint(s) (%.0f MB): the final model is saved; --keep-final-checkpoint keeps them",
                 len(checkpoints), size / 1e6)

    def _restore_best(self, model) -> None:
        """Load the best checkpoint's weights when it is not the last step, with its eval metrics."""
        best = self.state.best_checkpoint
        if not best or best == f"checkpoint-{self.state.step}":
            return
        from safetensors.torch import load_file

        weights = EMA_FILE if self.ema is not None else WEIGHTS_FILE  # what was evaluated
        load_weights(model, load_file(str(self.out / best / weights)), self.out / best / weights,
                     self.ema.names if self.ema is not None else None)
        best_step, key = int(best.split("-")[1]), self._metric_key()
        best_eval = next(r for r in reversed(self.state.log_history) if r["step"] == best_step and key in r)
        self.last_eval = {k: v for k, v in best_eval.items() if k != "step"}

    def _train_metrics(self, n_windows: int, n_examples: int, outcome: str) -> dict:
        st = self.state
        steps_per_epoch, recipe_steps = plan_steps(n_windows, self.settings.optim, self.acc.num_processes)
        return {
            "epoch": round(st.step / steps_per_epoch, 4),
            "train_loss": st.loss_sum / max(st.windows_seen, 1),
            "train_runtime": st.train_seconds,
            "train_samples": n_windows,
            "train_examples": n_examples,
            "train_samples_per_second": st.windows_seen / max(st.train_seconds, 1e-9),
            "train_steps_per_second": st.step / max(st.train_seconds, 1e-9),
            "total_steps": st.step,
            "recipe_steps": recipe_steps,
            **({"stopped_at_time_budget": True} if outcome == "time" else {}),
        }


def save_model_folder(out: Path, model, tokenizer, info) -> None:
    """Model and tokenizer in Hugging Face format plus the task's info file (`artifacts`), written to a
    temporary folder beside `out` and moved in file by file (a crash never leaves a half-written file)."""
    tmp = out / f".tmp-final-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        with quiet_transformers():
            model.save_pretrained(tmp, safe_serialization=True)
            tokenizer.save_pretrained(tmp)
        info.save(tmp)
    except (OSError, SpanqaError) as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        if isinstance(exc, SpanqaError):
            raise
        weights = sum(p.numel() * p.element_size() for p in model.parameters())
        raise write_failed(exc, out / "model.safetensors", weights) from None
    mode = file_mode()
    for f in tmp.iterdir():
        os.chmod(f, mode)  # libraries that write through temp files leave 0600: the umask's mode instead
        os.replace(f, out / f.name)
    tmp.rmdir()


class _progress:
    """A tqdm bar with loss, windows/s and ETA on the main process; nothing elsewhere."""

    def __init__(self, enabled: bool, plan: StepPlan, initial: int):
        self.enabled, self.plan, self.initial = enabled, plan, initial
        self.bar, self.t0, self.seen = None, time.perf_counter(), 0

    def __enter__(self):
        if self.enabled:
            from tqdm.auto import tqdm

            self.bar = tqdm(total=self.plan.total, initial=self.initial, desc="train", unit="step", dynamic_ncols=True)
        return self if self.enabled else None

    def __call__(self, state, n: int, loss: float) -> None:
        self.seen += n
        rate = self.seen / max(time.perf_counter() - self.t0, 1e-9)
        self.bar.total = self.plan.total  # a time budget may have shortened the plan
        self.bar.set_postfix(loss=f"{loss:.3f}", samples_s=f"{rate:.1f}", refresh=False)
        self.bar.update(1)

    def __exit__(self, *exc):
        if self.bar is not None:
            self.bar.close()
