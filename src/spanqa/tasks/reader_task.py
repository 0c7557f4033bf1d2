"""The reader task: fine-tune an encoder into a reader (`spanqa train`), or distil a teacher reader into a
student (`spanqa distill`, the same task with the distillation objective).

data -> windows (`features`) -> the engine with the span loss (or the KD loss) -> a reader folder
(`ReaderInfo` with the tuned no-answer threshold) that `Reader.load` runs. Evaluation during training goes
through a `Reader` over the model being trained, so it scores exactly what `spanqa predict` would.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import time
from pathlib import Path

import torch

from spanqa.answering.calibration import fit as fit_calibration
from spanqa.artifacts import Calibration, ReaderInfo, numeric
from spanqa.data import QADataset, load_examples
from spanqa.errors import SpanqaError
from spanqa.evaluation import evaluate
from spanqa.features import build_features
from spanqa.models.hub import load_tokenizer
from spanqa.models.families import guard_family
from spanqa.models.reader_model import load_qa_model, model_inputs, span_loss, untrained_head
from spanqa.reader import Reader, ReaderConfig
from spanqa.tasks.distill import (DistillObjective, TeacherLogits, check_same_tokenizer,
                                  evenly_spaced, layer_map, shrink_layers)
from spanqa.tasks.recurrent_readers import is_recurrent, new_reader
from spanqa.tasks.settings import DistillConfig, DistillSettings, QAConfig, ReaderSettings  # noqa: F401 - re-exported
from spanqa.tokenization import input_names_for
from spanqa.train import outputs
from spanqa.train.engine import Run, Task, run_task, save_model_folder

log = logging.getLogger(__name__)


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


def load_data(settings: ReaderSettings) -> tuple[QADataset, QADataset | None]:
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


def wants_null(settings: ReaderSettings, train: QADataset, dev: QADataset | None) -> bool:
    """--version-2-with-negative, or with auto: whether either data set has unanswerable questions."""
    flag = settings.qa.version_2_with_negative
    if flag != "auto":
        return flag == "true"
    return train.has_unanswerable or (dev is not None and dev.has_unanswerable)


class ReaderEvaluator:
    """Evaluation during training: a `Reader` over the model being trained, then the official metrics.

    The windows are built once; for SQuAD v2 data the no-answer threshold that maximises F1 is kept, in
    score-difference units, for the saved reader.
    """

    main_metric = "f1"

    def __init__(self, dataset: QADataset, tokenizer, settings: ReaderSettings, allow_null: bool, precision: str):
        self.dataset, self.tokenizer, self.allow_null = dataset, tokenizer, allow_null
        self.info = ReaderInfo(version_2_with_negative=allow_null, data=settings.data, decode=settings.decode)
        self.config = ReaderConfig(precision=precision, batch_size=settings.optim.per_device_eval_batch_size)
        self.features = build_features(dataset.examples, tokenizer, settings.data)
        self.null_threshold = settings.decode.null_score_diff_threshold

    def __call__(self, model) -> dict:
        t0 = time.perf_counter()
        reader = Reader.from_model(model, self.tokenizer, self.info, self.config)
        preds = reader.predict(self.dataset.examples, features=self.features)
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
        self.last_predictions, self.last_metrics = preds, metrics
        return metrics

    def calibration(self, model, eval_metrics: dict) -> Calibration | None:
        """Platt scaling of the final model's probabilities, fitted on the evaluation questions.

        When the engine restored an earlier, better checkpoint, the last evaluation was of other weights: the
        restored model is evaluated again first (which also re-tunes the no-answer threshold for it).
        """
        if eval_metrics is not getattr(self, "last_metrics", None):
            self(model)
        return fit_calibration(self.last_predictions, self.dataset.examples, self.allow_null, self.null_threshold,
                               data=source_name(self.dataset.source))

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


def build(settings: ReaderSettings, run: Run, command: str = "") -> Task:
    """The reader task for `settings` (a `DistillSettings` adds the teacher)."""
    train_set, dev_set = load_data(settings)
    model, tokenizer = _student(settings, train_set)
    guard_family(model, settings.data.max_seq_length)
    allow_null = wants_null(settings, train_set, dev_set)
    features = build_features(train_set.examples, tokenizer, settings.data)
    _log_unlabelled(train_set.examples, features)
    objective = _objective(settings, features, tokenizer, run, model)
    evaluator = ReaderEvaluator(dev_set, tokenizer, settings, allow_null, run.precision) \
        if dev_set and run.main else None
    card_settings = {**settings.to_dict(), "version_2_with_negative": "true" if allow_null else "false"}
    return Task(
        model, tokenizer, features, objective, evaluator, len(train_set),
        save=lambda folder, m, last_eval: save_model_folder(folder, m, tokenizer, _reader_info(
            settings, allow_null, evaluator, last_eval, m)),
        card=lambda name, hparams, train_m, eval_m: model_card(name, card_settings, hparams, train_m, eval_m, command),
        command=settings.COMMAND,
    )


def train(settings: ReaderSettings, command: str = "") -> dict:
    """Run `spanqa train` (or `spanqa distill`) end to end; returns all_results."""
    return run_task(settings, build, command)


def _log_unlabelled(examples: list, features) -> None:
    """Say how many answerable training questions no window labels (they train towards [CLS])."""
    answerable = {i for i, e in enumerate(examples) if not e.is_impossible and any(a.start >= 0 for a in e.answers)}
    labelled = set(features.example_index[features.start_positions != features.cls_index].tolist())
    lost = len(answerable - labelled)
    if lost:
        log.info("%d of %d answerable training questions have no window holding their answer (it does not align "
                 "with the tokens, or is longer than a window); they train towards 'no answer here'",
                 lost, len(answerable))


def _student(settings: ReaderSettings, train_set: QADataset):
    """(model, tokenizer) to train: `--model` (a new recurrent reader over the training words), or for
    distillation the teacher cut to `--student-layers`."""
    run, distill = settings.run, _distill(settings)
    if settings.recurrent is not None:
        if distill is not None:
            raise SpanqaError(f"--model {run.model}: distillation needs a transformer student that shares the "
                              "teacher's tokenizer.")
        return new_reader(run.model, settings.recurrent, train_set.examples)
    if distill is not None and distill.student_layers:
        model = load_qa_model(distill.teacher, run.overrides())
        kept = shrink_layers(model, distill.student_layers)
        log.info("student: %d of the teacher's layers %s", len(kept), kept)
        return model, load_tokenizer(distill.teacher)
    model, tokenizer = load_qa_model(run.model, run.overrides()), load_tokenizer(run.model)
    if distill is not None:
        check_same_tokenizer(load_tokenizer(distill.teacher), tokenizer)
    return model, tokenizer


def _distill(settings: ReaderSettings) -> DistillConfig | None:
    return settings.distill if isinstance(settings, DistillSettings) else None


def _hidden_layer_map(student, teacher, student_layers: int) -> list[int]:
    """Which teacher hidden state each student hidden state learns from (same width required)."""
    widths = (student.config.hidden_size, teacher.config.hidden_size)
    if widths[0] != widths[1]:
        raise SpanqaError(f"--hidden-loss-weight: the student's hidden size {widths[0]} differs from the teacher's "
                          f"{widths[1]}; hidden-state distillation needs equal widths (e.g. --student-layers N).")
    n = teacher.config.num_hidden_layers
    kept = evenly_spaced(n, student_layers) if student_layers else None  # the layers `shrink_layers` kept
    return layer_map(student.config.num_hidden_layers, n, kept)


def _objective(settings: ReaderSettings, features, tokenizer, run: Run, student):
    """The span loss, or for distillation the KD loss with the teacher's logits (cached once)."""
    names = input_names_for(tokenizer, student)
    distill = _distill(settings)
    if distill is None or distill.distillation_loss_weight == 0:
        if distill is not None:
            log.info("distillation_loss_weight 0: the student trains on the gold spans only (no teacher run)")
        return QALoss(names)
    teacher = load_qa_model(distill.teacher).to(run.acc.device)
    if untrained_head(teacher):
        raise SpanqaError(f"--teacher {distill.teacher}: its span head ({untrained_head(teacher)}) was initialised at "
                          "load: an encoder, not a trained reader; train it first (spanqa train).")
    guard_family(teacher, settings.data.max_seq_length)
    if distill.hidden_loss_weight > 0 or not distill.cache_teacher_logits:
        layers = None
        if distill.hidden_loss_weight > 0:
            layers = _hidden_layer_map(student, teacher, distill.student_layers)
            log.info("hidden-state distillation: student states <- teacher states %s (the teacher runs every batch)", layers)
        return DistillObjective(distill, names, features, teacher=teacher.eval(), layers=layers)
    folder = run.out / "teacher_logits"
    if run.main and not (folder / "teacher_end.npy").exists():
        t0 = time.perf_counter()
        run.out.mkdir(parents=True, exist_ok=True)
        log.info("caching the teacher's logits: one forward pass over %d windows before the first step", len(features))
        TeacherLogits.build(teacher, features, folder, names, tokenizer.pad_token_id or 0, run.precision,
                            settings.optim.per_device_eval_batch_size)
        log.info("teacher logits for %d windows cached in %s (%.0f s)", len(features), folder, time.perf_counter() - t0)
    run.acc.wait_for_everyone()
    return DistillObjective(distill, names, features, cache=TeacherLogits(folder))


def _reader_info(settings: ReaderSettings, allow_null: bool, evaluator, eval_metrics: dict, model) -> ReaderInfo:
    """What the saved reader folder says about itself, with the no-answer threshold tuned at evaluation and the
    probabilities calibrated on the evaluation questions."""
    decode, calibration = settings.decode, None
    if evaluator is not None:
        calibration = evaluator.calibration(model, eval_metrics)
        if calibration is not None:
            log.info("calibrated answer probabilities on %d evaluation questions: expected calibration error "
                     "%.3f -> %.3f on the held-out half", calibration.questions, calibration.ece_before,
                     calibration.ece_after)
        else:
            log.info("answer probabilities not calibrated: too few evaluation questions, all right or all wrong, "
                     "or no lower calibration error on the held-out half")
        if allow_null:
            decode = dataclasses.replace(decode, null_score_diff_threshold=evaluator.null_threshold)
    return ReaderInfo(version_2_with_negative=allow_null, base_model=settings.run.model, data=settings.data,
                      decode=decode, eval=numeric(eval_metrics), calibration=calibration,
                      default_precision="fp32" if settings.recurrent is not None else "")


def model_card(name: str, settings: dict, hparams: dict, train_metrics: dict, eval_metrics: dict, command: str) -> str:
    """README.md of a reader, in the form of the seeds' model cards."""
    f1 = eval_metrics.get("eval_f1")
    headline = (
        f" It achieves exact match {eval_metrics['eval_exact_match']:.4f} and F1 {f1:.4f} on the evaluation set."
        if f1 is not None else ""
    )
    v2 = settings.get("version_2_with_negative") == "true"
    about = (
        "Given a question and a passage, it returns the answer span cut from the passage"
        + (", or no answer when the passage does not contain one (SQuAD v2 style; the tuned no-answer threshold is "
           "stored in `spanqa_reader.json`)." if v2 else "; it always answers (SQuAD v1.1 style).")
        + "\nLoad it with `spanqa.Reader.load(path)`"
        + ("" if is_recurrent(settings["model"]) else
           " or `transformers.AutoModelForQuestionAnswering.from_pretrained(path)`") + ". "
        "It inherits the biases of its base model and training data, and answers only from the passage it is given."
    )
    data, base = outputs.shown_source(settings["train_data"]), outputs.shown_source(settings["model"])
    summary = (f"This model is a fine-tuned version of `{base}` on `{data}` for extractive "
               f"question answering, trained with spanqa.{headline}")
    if is_recurrent(settings["model"]):
        summary = (f"This model is a {settings['model']} reader trained from scratch on `{data}` "
                   f"with the word vectors `{settings['embeddings']}`, for extractive question answering, with "
                   f"spanqa.{headline}")
    return outputs.card(name, summary, about, settings, hparams, train_metrics, eval_metrics, command, "questions")
