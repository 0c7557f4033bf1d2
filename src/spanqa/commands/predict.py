"""`spanqa predict`: a reader over a dataset -> official-format files (and scores when gold is there)."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from spanqa.data import QADataset
from spanqa.files import write_json_atomic
from spanqa.decode import Prediction
from spanqa.evaluation import evaluate


@dataclass(frozen=True)
class PredictRun:
    """What a prediction pass produced and how fast."""

    predictions: list[Prediction]
    seconds: float
    windows: int

    @property
    def questions_per_second(self) -> float:
        return len(self.predictions) / max(self.seconds, 1e-9)


def run_predictions(reader, dataset: QADataset, show_progress: bool = True) -> PredictRun:
    """Answer every question of `dataset` with a progress bar over windows."""
    from tqdm.auto import tqdm

    bar = tqdm(desc="predict", unit="window", disable=not show_progress, dynamic_ncols=True)
    count = [0]

    def progress(n: int) -> None:
        count[0] += n
        bar.update(n)

    t0 = time.perf_counter()
    preds = reader.predict(dataset.examples, progress=progress)
    seconds = time.perf_counter() - t0
    bar.close()
    return PredictRun(preds, seconds, count[0])


def write_outputs(run: PredictRun, output: Path, na_probs_out: Path | None, nbest_out: Path | None) -> None:
    """predictions.json ({id: text}), and optionally no-answer probabilities and n-best lists, atomically."""
    write_json_atomic(output, {p.id: p.answer for p in run.predictions})
    if na_probs_out:
        write_json_atomic(na_probs_out, {p.id: p.na_prob for p in run.predictions})
    if nbest_out:
        write_json_atomic(nbest_out, {p.id: [s._asdict() for s in p.spans] for p in run.predictions})


def has_gold(dataset: QADataset) -> bool:
    return any(e.gold_texts or e.is_impossible for e in dataset.examples)


def score(run: PredictRun, dataset: QADataset, with_na_probs: bool) -> dict:
    answers = {p.id: p.answer for p in run.predictions}
    na_probs = {p.id: p.na_prob for p in run.predictions} if with_na_probs else None
    return evaluate(dataset, answers, na_probs)
