"""`spanqa train`: data -> windows -> the loop -> a reader folder with metrics, card and curves."""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from spanqa.data import QADataset, load_examples
from spanqa.data.io import write_json_atomic
from spanqa.errors import SpanqaError
from spanqa.evaluation import evaluate
from spanqa.features import build_features
from spanqa.inference import input_names_for, predict_features
from spanqa.models.hub import load_tokenizer
from spanqa.models.cpu_kernels import use_fast_cpu_training
from spanqa.models.reader_model import load_qa_model, model_inputs, quiet_transformers, span_loss
from spanqa.precision import describe, resolve_precision
from spanqa.reader import READER_FILE
from spanqa.train import outputs
from spanqa.train.checkpoint import list_checkpoints, load_checkpoint, rng_state, save_checkpoint, set_rng_state
from spanqa.train.config import TrainSettings
from spanqa.train.distill import DistillObjective, TeacherLogits, check_same_tokenizer, evenly_spaced, layer_map, shrink_layers
from spanqa.train.loop import LoopParts, TrainState, plan_steps, train_loop
from spanqa.train.optim import build_optimizer, build_schedule
from spanqa.train.tracking import check_tracker, make_tracker

log = logging.getLogger(__name__)
RUN_FILE = "spanqa_train_config.json"


class QALoss:
    """The fine-tuning objective: [b] span loss of a `Features.pad` batch."""

    def __init__(self, input_names: list[str]) -> None:
        self.input_names = input_names

    def __call__(self, model, batch) -> torch.Tensor:
        device = next(model.parameters()).device
        out = model(**model_inputs(batch, self.input_names, device))
        labels = model_inputs(batch, ["start_positions", "end_positions", "attention_mask"], device)
        return span_loss(
            out.start_logits, out.end_logits, labels["start_positions"], labels["end_positions"], labels["attention_mask"]
        )


def check_output_dir(settings: TrainSettings) -> Path:
    """The output folder, refusing one that holds another run unless resuming or overwriting.

    Raises:
        SpanqaError: no --output-dir, a folder with another run, or --resume with nothing to resume.
    """
    run = settings.run
    if not run.output_dir:
        raise SpanqaError("--output-dir is required: where the model, checkpoints and metrics go.")
    out = Path(run.output_dir)
    if run.resume:
        if not list_checkpoints(out):
            raise SpanqaError(f"--resume: {out} has no checkpoint-* folder to resume from.")
        return out
    if out.exists() and any(out.iterdir()) and not run.overwrite_output_dir:
        raise SpanqaError(
            f"{out} already holds files (another run?). Use --resume to continue it, --overwrite-output-dir to "
            "write over it, or another --output-dir."
        )
    return out


def load_data(settings: TrainSettings) -> tuple[QADataset, QADataset | None]:
    """Training and evaluation questions, cut to max_*_samples.

    Either may name several sources separated by commas (MRQA trains on six files at once); their
    questions are pooled, and `evaluate` reports each eval source and the macro average.
    """
    run = settings.run
    if not run.train_data:
        raise SpanqaError("--train-data is required (a SQuAD/MRQA/JSONL file, a saved dataset folder or a hub name).")
    train = _pooled(run.train_data, run.train_split, run.max_train_samples)
    dev = _pooled(run.eval_data, run.eval_split, run.max_eval_samples) if run.eval_data else None
    return train, dev


def _pooled(spec: str, split: str, limit: int) -> QADataset:
    parts = [load_examples(s.strip(), split=split) for s in spec.split(",") if s.strip()]
    if limit:
        parts = [dataclasses.replace(p, examples=p.examples[:limit]) for p in parts]
    if len(parts) == 1:
        return parts[0]
    formats = {p.format for p in parts}
    return QADataset([e for p in parts for e in p.examples], spec, formats.pop() if len(formats) == 1 else "jsonl",
                     next((p.version for p in parts if p.version), ""), tuple(parts))


def wants_null(settings: TrainSettings, train: QADataset, dev: QADataset | None) -> bool:
    flag = settings.run.version_2_with_negative
    if flag != "auto":
        return flag == "true"
    return train.has_unanswerable or (dev is not None and dev.has_unanswerable)


class Evaluator:
    """Evaluation during training: real EM/F1 through the decoder and metrics, batch by batch."""

    def __init__(self, dataset: QADataset, tokenizer, settings: TrainSettings, allow_null: bool, precision: str):
        self.dataset, self.settings, self.allow_null, self.precision = dataset, settings, allow_null, precision
        self.features = build_features(dataset.examples, tokenizer, settings.data)
        self.input_names, self.pad_id = input_names_for(tokenizer), tokenizer.pad_token_id or 0
        self.null_threshold = settings.decode.null_score_diff_threshold

    def __call__(self, model) -> dict:
        t0 = time.perf_counter()
        preds = list(predict_features(
            model, self.features, self.dataset.examples, self.settings.decode, self.allow_null, self.input_names,
            self.pad_id, self.settings.optim.per_device_eval_batch_size, self.precision,
        ))
        answers = {p.id: p.answer for p in preds}
        na_probs = {p.id: p.na_prob for p in preds} if self.allow_null else None
        scores = self._scores(answers, na_probs)
        runtime = time.perf_counter() - t0
        metrics = {"eval_exact_match": scores["exact"], "eval_f1": scores["f1"], "eval_samples": len(self.features)}
        metrics.update({f"eval_{k}": v for k, v in scores.items() if k not in ("exact", "f1")})
        if self.allow_null and "best_f1_thresh" in scores:
            self.null_threshold = prob_to_score_diff(scores["best_f1_thresh"])
            metrics["eval_null_score_diff_threshold"] = self.null_threshold
        metrics.update({"eval_runtime": runtime, "eval_samples_per_second": len(self.features) / runtime})
        return metrics


    def _scores(self, answers: dict, na_probs: dict | None) -> dict:
        """Scores of one source; for several, each source's EM/F1 and their macro average (as MRQA reports)."""
        parts = self.dataset.parts
        if not parts:
            return evaluate(self.dataset, answers, na_probs)
        out, ems, f1s = {}, [], []
        for part in parts:
            name = source_name(part.source)
            ids = {e.id for e in part.examples}
            s = evaluate(part, {k: v for k, v in answers.items() if k in ids},
                         {k: v for k, v in na_probs.items() if k in ids} if na_probs else None)
            out[f"{name}_exact"], out[f"{name}_f1"] = s["exact"], s["f1"]
            ems.append(s["exact"])
            f1s.append(s["f1"])
        out.update({"exact": sum(ems) / len(ems), "f1": sum(f1s) / len(f1s), "total": len(self.dataset)})
        return out


def source_name(source: str) -> str:
    """A data source's short name for metric keys: `mrqa/dev/SQuAD.jsonl.gz` -> `SQuAD`."""
    name = Path(source).name
    for suffix in (".gz", ".jsonl", ".json"):
        name = name.removesuffix(suffix)
    return name


def prob_to_score_diff(p: float) -> float:
    """The score-diff threshold equal to no-answer probability threshold p (na_prob = sigmoid(diff))."""
    p = min(max(p, 1e-12), 1 - 1e-12)
    return math.log(p / (1 - p))


def train(settings: TrainSettings, command: str = "") -> dict:
    """Run `spanqa train` (or `spanqa distill`) end to end; returns all_results."""
    out, acc, precision = start(settings)
    model, tokenizer = _student(settings)
    train_set, dev_set = load_data(settings)
    allow_null = wants_null(settings, train_set, dev_set)
    features = build_features(train_set.examples, tokenizer, settings.data)
    objective = _objective(settings, features, tokenizer, acc, out, precision, model)
    evaluator = Evaluator(dev_set, tokenizer, settings, allow_null, precision) if dev_set and acc.is_main_process else None
    s = settings.to_dict()
    s["version_2_with_negative"] = "true" if allow_null else "false"
    task = Task(
        model, tokenizer, features, objective, evaluator, len(train_set),
        save=lambda folder, m, last_eval: _save_reader(folder, m, tokenizer, settings, allow_null, evaluator, last_eval),
        card=lambda name, hparams, train_m, eval_m: outputs.model_card(name, s, hparams, train_m, eval_m, command),
        command="distill" if settings.distill is not None else "train",
    )
    return fit(settings, acc, precision, task, out)


@dataclass
class Task:
    """What differs between fine-tuning a reader, classification and pretraining; `fit` does the rest.

    Attributes:
        data: training windows, `Features`-like (`lengths`, `len()`, `pad(rows, pad_id, multiple_of)`).
        objective: loss_fn(model, batch) -> [b] per-window loss.
        evaluator: evaluator(model) -> {"eval_...": value} (None: no evaluation); its `main_metric` names
            the default metric for picking the best checkpoint (lower is better for a "...loss" metric).
        n_examples: training examples (questions, sentences, documents) behind `data`.
        save: save(folder, model, last eval metrics) writes the final model folder.
        card: card(name, hyperparameters, train metrics, eval metrics) -> the README.md text.
        command: the subcommand that runs this task (for the resume hint after a pre-emption).
    """

    model: torch.nn.Module
    tokenizer: object
    data: object
    objective: object
    evaluator: object
    n_examples: int
    save: object
    card: object
    command: str = "train"


def start(settings: TrainSettings):
    """What every task does first: (the checked output folder, Accelerator, resolved precision), the tracker
    checked and the seed set for new weights."""
    from accelerate import Accelerator

    out = check_output_dir(settings)
    check_tracker(settings.run.report_to)
    acc = Accelerator(cpu=not torch.cuda.is_available())
    precision = resolve_precision(settings.optim.precision, acc.device)
    if acc.is_main_process:
        log.info("precision: %s", describe(precision, acc.device))
    torch.manual_seed(settings.optim.seed)
    return out, acc, precision


def fit(settings: TrainSettings, acc, precision: str, task: Task, out: Path) -> dict:
    """The part every task shares: optimizer, schedule, resume, the loop, checkpoints and outputs."""
    optim, run = settings.optim, settings.run
    main = acc.is_main_process
    model = task.model
    if acc.device.type == "cpu":
        changed = use_fast_cpu_training(model)
        if changed and main:
            log.info("CPU training kernels: faster dropout masks for %s", " and ".join(changed))
    steps_per_epoch, total = plan_steps(len(task.data), optim, acc.num_processes)
    optimizer = build_optimizer(
        model, optim.optimizer, optim.learning_rate, optim.weight_decay, (optim.adam_beta1, optim.adam_beta2),
        optim.adam_epsilon, optim.lamb_bias_correction,
    )
    scheduler = build_schedule(optimizer, optim.lr_scheduler_type, total, math.ceil(optim.warmup_ratio * total))
    scaler = torch.amp.GradScaler("cuda", init_scale=optim.loss_scale) if precision == "fp16" else None
    model.train()  # from_pretrained returns eval mode: without this, dropout never acts
    model = acc.prepare_model(model)
    torch.manual_seed(optim.seed + acc.process_index)  # dropout streams differ by process
    state = TrainState()
    if run.resume:
        state = _resume(out, acc, model, optimizer, scheduler, scaler)
    elif main:
        out.mkdir(parents=True, exist_ok=True)
    acc.wait_for_everyone()
    tracker = make_tracker(run.report_to, out, run.run_name or out.name, settings.to_dict()) if main else None
    hooks = _Hooks(acc, model, optimizer, scheduler, scaler, state, settings, out, task.evaluator, tracker)
    parts = LoopParts(
        model, optimizer, scheduler, scaler, acc, task.data, task.tokenizer.pad_token_id or 0, task.objective,
        precision, hooks.evaluate, hooks.save, hooks.on_log,
    )
    if main:
        log.info(
            "training %s on %d sequences (%d examples): %d steps, %d per epoch, %d process(es)",
            run.model, len(task.data), task.n_examples, total, steps_per_epoch, acc.num_processes,
        )
    with _progress(main, total, state.step) as bar:
        outcome = train_loop(parts, optim, state, bar)
    if outcome != "done":
        if main:
            print(f"spanqa: stopped by {outcome} after step {state.step}; checkpoint saved in {out}. "
                  f"Resume with: spanqa {task.command} --resume --output-dir {out} "
                  "(and the same settings).", file=sys.stderr)
        acc.wait_for_everyone()
        return {}
    results = hooks.finish(task, precision) if main else {}
    acc.wait_for_everyone()
    if tracker:
        tracker.close()
    return results


def _student(settings: TrainSettings):
    """(model, tokenizer) to train: `--model`, or for distillation the teacher cut to `--student-layers`."""
    run, distill = settings.run, settings.distill
    if distill is not None and distill.student_layers:
        model = load_qa_model(distill.teacher, run.overrides())
        kept = shrink_layers(model, distill.student_layers)
        log.info("student: %d of the teacher's layers %s", len(kept), kept)
        return model, load_tokenizer(distill.teacher)
    model, tokenizer = load_qa_model(run.model, run.overrides()), load_tokenizer(run.model)
    if distill is not None:
        check_same_tokenizer(load_tokenizer(distill.teacher), tokenizer)
    return model, tokenizer


def _hidden_layer_map(student, teacher, student_layers: int) -> list[int]:
    """Which teacher hidden state each student hidden state learns from (same width required)."""
    widths = (student.config.hidden_size, teacher.config.hidden_size)
    if widths[0] != widths[1]:
        raise SpanqaError(f"--hidden-loss-weight: the student's hidden size {widths[0]} differs from the teacher's "
                          f"{widths[1]}; hidden-state distillation needs equal widths (e.g. --student-layers N).")
    n = teacher.config.num_hidden_layers
    kept = evenly_spaced(n, student_layers) if student_layers else None  # the layers `shrink_layers` kept
    return layer_map(student.config.num_hidden_layers, n, kept)


def _objective(settings: TrainSettings, features, tokenizer, acc, out: Path, precision: str, student=None):
    """The span loss, or for distillation the KD loss with the teacher's logits (cached once)."""
    names = input_names_for(tokenizer)
    distill = settings.distill
    if distill is None or distill.distillation_loss_weight == 0:
        if distill is not None:
            log.info("distillation_loss_weight 0: the student trains on the gold spans only (no teacher run)")
        return QALoss(names)
    teacher = load_qa_model(distill.teacher).to(acc.device)
    if distill.hidden_loss_weight > 0 or not distill.cache_teacher_logits:
        layers = None
        if distill.hidden_loss_weight > 0:
            layers = _hidden_layer_map(student, teacher, distill.student_layers)
            log.info("hidden-state distillation: student states <- teacher states %s (the teacher runs every batch)", layers)
        return DistillObjective(distill, names, features, teacher=teacher.eval(), layers=layers)
    folder = out / "teacher_logits"
    if acc.is_main_process and not (folder / "teacher_end.npy").exists():
        t0 = time.perf_counter()
        out.mkdir(parents=True, exist_ok=True)
        TeacherLogits.build(teacher, features, folder, names, tokenizer.pad_token_id or 0, precision,
                            settings.optim.per_device_eval_batch_size)
        log.info("teacher logits for %d windows cached in %s (%.0f s)", len(features), folder, time.perf_counter() - t0)
    acc.wait_for_everyone()
    return DistillObjective(distill, names, features, cache=TeacherLogits(folder))


def _resume(out: Path, acc, model, optimizer, scheduler, scaler) -> TrainState:
    latest = list_checkpoints(out)[-1]
    saved, rng = load_checkpoint(latest, acc.unwrap_model(model), optimizer, scheduler, scaler)
    set_rng_state(rng[acc.process_index])
    if acc.is_main_process:
        log.info("resuming from %s (step %d)", latest, saved["step"])
    return TrainState(**saved)


class _Hooks:
    """Evaluation, checkpointing and logging for one run (main process does the writing)."""

    def __init__(self, acc, model, optimizer, scheduler, scaler, state, settings, out, evaluator, tracker):
        self.acc, self.model, self.optimizer, self.scheduler, self.scaler = acc, model, optimizer, scheduler, scaler
        self.state, self.settings, self.out, self.evaluator, self.tracker = state, settings, out, evaluator, tracker
        self.last_eval: dict = {}

    def on_log(self, record: dict) -> None:
        if self.tracker:
            self.tracker.log(record, record["step"])

    def evaluate(self, step: int) -> None:
        if self.evaluator is not None:
            metrics = self.evaluator(self.acc.unwrap_model(self.model))
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
                protect=self.state.best_checkpoint,
            )
        self.acc.wait_for_everyone()

    def _gather_rng(self) -> list[dict]:
        if self.acc.num_processes == 1:
            return [rng_state()]
        gathered = [None] * self.acc.num_processes
        torch.distributed.all_gather_object(gathered, rng_state())
        return gathered

    def finish(self, task: Task, precision: str) -> dict:
        """Final evaluation, best weights, the model folder, results, card and curves."""
        model = self.acc.unwrap_model(self.model)
        if self.evaluator is not None:
            self.evaluate(self.state.step)
            if self.state.best_checkpoint and self.state.best_checkpoint != f"checkpoint-{self.state.step}":
                from safetensors.torch import load_file

                best = self.out / self.state.best_checkpoint / "model.safetensors"
                model.load_state_dict(load_file(str(best)), strict=False)
                best_step = int(self.state.best_checkpoint.split("-")[1])
                key = self._metric_key()
                best_eval = next(r for r in reversed(self.state.log_history) if r["step"] == best_step and key in r)
                self.last_eval = {k: v for k, v in best_eval.items() if k != "step"}
        task.save(self.out, model, self.last_eval)
        train_metrics = self._train_metrics(len(task.data), task.n_examples)
        eval_metrics = {k: v for k, v in self.last_eval.items() if not k.startswith("eval_HasAns_total")}
        eval_metrics = {"epoch": train_metrics["epoch"], **eval_metrics} if eval_metrics else {}
        outputs.write_results(self.out, train_metrics, eval_metrics)
        hparams = outputs.hyperparameters(self.settings.to_dict(), self.acc.num_processes, precision, self.acc.device.type)
        name = self.settings.run.run_name or self.out.name
        outputs.write_card(self.out, task.card(name, hparams, train_metrics, eval_metrics))
        outputs.plot_curves(self.out, self.state.log_history, self._metric_key())
        write_json_atomic(self.out / "trainer_state.json", self.state.to_dict())
        return {**train_metrics, **eval_metrics}

    def _train_metrics(self, n_windows: int, n_examples: int) -> dict:
        st = self.state
        steps_per_epoch, _ = plan_steps(n_windows, self.settings.optim, self.acc.num_processes)
        return {
            "epoch": round(st.step / steps_per_epoch, 4),
            "train_loss": st.loss_sum / max(st.windows_seen, 1),
            "train_runtime": st.train_seconds,
            "train_samples": n_windows,
            "train_examples": n_examples,
            "train_samples_per_second": st.windows_seen / max(st.train_seconds, 1e-9),
            "train_steps_per_second": st.step / max(st.train_seconds, 1e-9),
            "total_steps": st.step,
        }


def _save_reader(out: Path, model, tokenizer, settings: TrainSettings, allow_null: bool, evaluator, eval_metrics) -> None:
    """The reader folder: model, tokenizer and spanqa's inference settings (`spanqa_reader.json`)."""
    decode = dataclasses.asdict(settings.decode)
    if evaluator is not None and allow_null:
        decode["null_score_diff_threshold"] = evaluator.null_threshold
    reader = {
        "version_2_with_negative": allow_null,
        "base_model": settings.run.model,
        "data": dataclasses.asdict(settings.data),
        "decode": decode,
        "eval": {k: v for k, v in eval_metrics.items() if isinstance(v, (int, float))},
    }
    save_model_folder(out, model, tokenizer, {READER_FILE: reader, RUN_FILE: settings.to_dict()})


def save_model_folder(out: Path, model, tokenizer, files: dict[str, dict]) -> None:
    """Model and tokenizer in Hugging Face format plus spanqa's JSON `files`, written to a temporary folder
    beside `out` and moved in file by file (a crash never leaves a half-written model file)."""
    tmp = out / f".tmp-final-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    with quiet_transformers():
        model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
    for name, content in files.items():
        (tmp / name).write_text(json.dumps(content, indent=1))
    for f in tmp.iterdir():
        os.replace(f, out / f.name)
    tmp.rmdir()


class _progress:
    """A tqdm bar with loss, windows/s and ETA on the main process; nothing elsewhere."""

    def __init__(self, enabled: bool, total: int, initial: int):
        self.enabled, self.total, self.initial = enabled, total, initial
        self.bar, self.t0, self.seen = None, time.perf_counter(), 0

    def __enter__(self):
        if self.enabled:
            from tqdm.auto import tqdm

            self.bar = tqdm(total=self.total, initial=self.initial, desc="train", unit="step", dynamic_ncols=True)
        return self if self.enabled else None

    def __call__(self, state: TrainState, n: int, loss: float) -> None:
        self.seen += n
        rate = self.seen / max(time.perf_counter() - self.t0, 1e-9)
        self.bar.set_postfix(loss=f"{loss:.3f}", samples_s=f"{rate:.1f}", refresh=False)
        self.bar.update(1)

    def __exit__(self, *exc):
        if self.bar is not None:
            self.bar.close()
