"""`spanqa classify` (alias: `spanqa train --task classification`): sentence (pair) classification on the engine.

The seed that pretrains BERT in two phases checks the result on GLUE SST-2; this is that fine-tuning:
accuracy, the same optimizer, schedule, precision, checkpoints and outputs as a reader.

Data: CSV or TSV with a header (GLUE's own .tsv files), JSONL rows, a saved `datasets` folder, or a hub
dataset (`--dataset-config sst2` for `nyu-mll/glue`). Columns: `--text-column` (default: sentence),
optionally `--text-pair-column`, and `--label-column` (default: label), whose values may be ints or
strings. The label set comes from the training data; evaluation rows with another label are an error.
"""

from __future__ import annotations

import csv
import io
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from spanqa.artifacts import ClassifierInfo, numeric
from spanqa.batching import PAD_ID, Ragged, sorted_batches
from spanqa.files import iter_jsonl, read_text
from spanqa.errors import SpanqaError
from spanqa.inference import run_batches
from spanqa.models.hub import load_model, load_tokenizer
from spanqa.models.reader_model import model_inputs
from spanqa.tokenization import input_names_for
from spanqa.train import outputs
from spanqa.tasks.settings import ClassifyConfig, ClassifySettings
from spanqa.train.engine import Run, Task, save_model_folder


@dataclass(frozen=True)
class Rows:
    """Texts and labels of one split."""

    texts: list[str]
    pairs: list[str] | None
    labels: list
    source: str


def read_rows(spec: str, split: str, cfg: ClassifyConfig) -> Rows:
    """Rows from a CSV/TSV/JSONL file, a saved dataset folder or a hub dataset.

    Raises:
        SpanqaError: unreadable source, a missing column (named, with the columns there are), empty text.
    """
    path = Path(spec).expanduser()
    if path.is_file():
        records = list(_file_records(path))
    else:
        records = list(_dataset_records(spec, split, cfg.dataset_config))
    if not records:
        raise SpanqaError(f"{spec}: no rows.")
    columns = [cfg.text_column, cfg.label_column] + ([cfg.text_pair_column] if cfg.text_pair_column else [])
    texts, pairs, labels = [], [], []
    for where, row in records:
        for col in columns:
            if col not in row:
                raise SpanqaError(f"{spec}: {where}: no column '{col}' (it has: {', '.join(map(str, row))}); "
                                  "set --text-column / --text-pair-column / --label-column.")
            if row[col] is None:
                raise SpanqaError(f"{spec}: {where}: no value for '{col}' (a short row, or a line break inside a field?).")
        text = row[cfg.text_column]
        if not isinstance(text, str) or not text.strip():
            raise SpanqaError(f"{spec}: {where}: '{cfg.text_column}' must be non-empty text, got {text!r}.")
        texts.append(text)
        if cfg.text_pair_column:
            pairs.append(str(row[cfg.text_pair_column]))
        labels.append(_label(row[cfg.label_column]))
    return Rows(texts, pairs if cfg.text_pair_column else None, labels, spec)


def _label(value):
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        return int(value)
    return value


def _file_records(path: Path):
    text = read_text(path)
    if path.name.endswith((".jsonl", ".jsonl.gz")):
        for lineno, obj in iter_jsonl(text, path):
            yield f"line {lineno}", obj
        return
    dialect = "excel-tab" if path.name.endswith((".tsv", ".tsv.gz")) else "excel"
    reader = csv.DictReader(io.StringIO(text), dialect=dialect, quoting=csv.QUOTE_NONE if dialect == "excel-tab" else csv.QUOTE_MINIMAL)
    for i, row in enumerate(reader, start=2):
        yield f"line {i}", row


def _dataset_records(spec: str, split: str, config: str):
    from spanqa.data.hf import open_dataset

    for i, row in enumerate(open_dataset(spec, split, config)):
        yield f"row {i}", row


@dataclass(frozen=True)
class Encoded(Ragged):
    """Tokenized rows, ragged: `ids`/`types` cut by `row_splits`; label indices."""

    TOKEN_FIELDS = {"ids": ("input_ids", PAD_ID, np.int64), "types": ("token_type_ids", 0, np.int64)}
    ROW_FIELDS = {"labels": "labels"}

    ids: np.ndarray
    types: np.ndarray
    row_splits: np.ndarray
    labels: np.ndarray


def encode(rows: Rows, tokenizer, max_len: int, label_ids: dict) -> Encoded:
    """Tokenize with the model's special tokens, truncated to `max_len` (the longer text first for pairs)."""
    for i, label in enumerate(rows.labels):
        if label not in label_ids:
            raise SpanqaError(f"{rows.source}: row {i}: label {label!r} is not one of the training labels "
                              f"{sorted(label_ids, key=str)}.")
    enc = tokenizer(rows.texts, rows.pairs, truncation=True, max_length=max_len)
    ids = [np.asarray(x, np.int32) for x in enc["input_ids"]]
    types = [np.asarray(x, np.int8) for x in enc["token_type_ids"]] if "token_type_ids" in enc else [np.zeros(len(x)) for x in ids]
    row_splits = np.concatenate([[0], np.cumsum([len(x) for x in ids])]).astype(np.int64)
    return Encoded(np.concatenate(ids), np.concatenate(types).astype(np.int8), row_splits,
                   np.asarray([label_ids[lab] for lab in rows.labels], np.int64))


class ClassificationLoss:
    """[B] cross-entropy of a padded batch."""

    def __init__(self, input_names: list[str]) -> None:
        self.input_names = input_names

    def __call__(self, model, batch) -> torch.Tensor:
        device = next(model.parameters()).device
        logits = model(**model_inputs(batch, self.input_names, device)).logits
        return F.cross_entropy(logits.float(), torch.as_tensor(batch["labels"]).to(device), reduction="none")


class ClassificationEvaluator:
    """Accuracy and loss on the evaluation rows."""

    main_metric = "accuracy"

    def __init__(self, data: Encoded, input_names: list[str], pad_id: int, batch_size: int, precision: str) -> None:
        self.data, self.input_names, self.pad_id = data, input_names, pad_id
        self.batch_size, self.precision = batch_size, precision

    def __call__(self, model) -> dict:
        t0 = time.perf_counter()
        device = next(model.parameters()).device
        forward = lambda m, batch: m(**model_inputs(batch, self.input_names, device)).logits.float()  # noqa: E731
        correct, loss = 0, 0.0
        batches = sorted_batches(self.data.lengths, self.batch_size)
        for batch, logits in run_batches(model, self.data, batches, self.pad_id, self.precision, forward):
            labels = torch.as_tensor(batch["labels"]).to(device)
            loss += float(F.cross_entropy(logits, labels, reduction="sum"))
            correct += int((logits.argmax(-1) == labels).sum())
        runtime = time.perf_counter() - t0
        n = len(self.data)
        return {"eval_accuracy": correct / n, "eval_loss": loss / n, "eval_samples": n, "eval_runtime": runtime,
                "eval_samples_per_second": n / runtime}


def load_classifier(name: str, labels: list, overrides: dict) -> torch.nn.Module:
    """`AutoModelForSequenceClassification` with a new head for `labels` (names kept in the config)."""
    config = {"num_labels": len(labels), "id2label": {i: str(x) for i, x in enumerate(labels)},
              "label2id": {str(x): i for i, x in enumerate(labels)}, **overrides}
    return load_model("AutoModelForSequenceClassification", name, "a sequence classification model", config,
                      ignore_mismatched_sizes=True)


def build(settings: ClassifySettings, run: Run, command: str = "") -> Task:
    """The classification task: rows -> tokens -> cross-entropy; accuracy on the evaluation rows."""
    cfg, rs = settings.classify, settings.run
    if not rs.train_data:
        raise SpanqaError("--train-data is required (CSV/TSV/JSONL, a dataset folder or a hub dataset).")
    train_rows = _limit(read_rows(rs.train_data, rs.train_split, cfg), rs.max_train_samples)
    labels = sorted(set(train_rows.labels), key=lambda x: (isinstance(x, str), x))
    if len(labels) < 2:
        raise SpanqaError(f"{rs.train_data}: the training rows have {len(labels)} distinct label(s); need at least 2.")
    label_ids = {x: i for i, x in enumerate(labels)}
    tokenizer = load_tokenizer(rs.model)
    model = load_classifier(rs.model, labels, rs.overrides())
    names, max_len = input_names_for(tokenizer, model), settings.data.max_seq_length
    data = encode(train_rows, tokenizer, max_len, label_ids)
    evaluator = None
    if rs.eval_data and run.main:
        dev = encode(_limit(read_rows(rs.eval_data, rs.eval_split, cfg), rs.max_eval_samples), tokenizer, max_len, label_ids)
        evaluator = ClassificationEvaluator(dev, names, tokenizer.pad_token_id or 0,
                                            settings.optim.per_device_eval_batch_size, run.precision)
    s = settings.to_dict()
    info = lambda last_eval: ClassifierInfo(labels=labels, max_seq_length=max_len, eval=numeric(last_eval))  # noqa: E731
    return Task(
        model, tokenizer, data, ClassificationLoss(names), evaluator, len(data),
        save=lambda folder, m, last_eval: save_model_folder(folder, m, tokenizer, info(last_eval)),
        card=lambda name, hparams, train_m, eval_m: _card(name, s, hparams, train_m, eval_m, command, labels),
        command=settings.COMMAND,
    )


def _limit(rows: Rows, n: int) -> Rows:
    if not n:
        return rows
    return Rows(rows.texts[:n], rows.pairs[:n] if rows.pairs else None, rows.labels[:n], rows.source)


def _card(name, settings, hparams, train_metrics, eval_metrics, command, labels) -> str:
    acc = eval_metrics.get("eval_accuracy")
    data, base = outputs.shown_source(settings["train_data"]), outputs.shown_source(settings["model"])
    summary = (f"This model is a fine-tuned version of `{base}` on `{data}` for "
               f"text classification ({len(labels)} labels: {', '.join(map(str, labels))}), trained with spanqa."
               + (f" It achieves accuracy {acc:.4f} on the evaluation set." if acc is not None else ""))
    about = ("Load it with `transformers.AutoModelForSequenceClassification.from_pretrained(path)`; the label names are "
             "in its config (`id2label`) and in `spanqa_classifier.json`.")
    return outputs.card(name, summary, about, settings, hparams, train_metrics, eval_metrics, command, "rows")
