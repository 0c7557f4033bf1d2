"""`spanqa evaluate --model RUN DATA... --out-of-domain DATA...`: one reader scored on many sets, in and out of domain.

Each set is read like `spanqa evaluate` reads gold data (SQuAD JSON, MRQA jsonl, rows, a saved or hub dataset),
predicted with the Reader, and scored with the set's official rules: the scores are exactly those of `spanqa
evaluate DATA PREDICTIONS` on the predictions `spanqa predict` would write. The table (`ScoreTable`) is written
into the run folder as `spanqa_scores.json` and `eval_sets.md`; `spanqa report` takes its Test columns from it
(the mean over the out-of-domain sets, each set counting once, as VMware's model-family table averages its
out-of-domain sets).
"""

from __future__ import annotations

import time
from pathlib import Path

from spanqa.artifacts import ScoreTable, SetScore
from spanqa.data import load_examples
from spanqa.evaluation import evaluate
from spanqa.files import write_text_atomic

MARKDOWN_FILE = "eval_sets.md"


def set_name(source: str) -> str:
    """A short name for a set: its file name without .gz/.json/.jsonl (a hub name as given)."""
    name = Path(source).name
    for suffix in (".gz", ".jsonl", ".json"):
        name = name.removesuffix(suffix)
    return name or source


def score_sets(reader, sources: list[tuple[str, str]], max_samples: int = 0, progress=None) -> ScoreTable:
    """Score `reader` on each (source, domain "in" or "out"), in order.

    Args:
        max_samples: only the first N questions of each set (0 = all).
        progress: optional callable(SetScore) after each set.
    """
    rows = []
    for source, domain in sources:
        dataset = load_examples(source).head(max_samples)
        reader.predict(dataset.examples[:8])  # warm-up: the first batches pay for kernel choice and caches
        t0 = time.perf_counter()
        preds = reader.predict(dataset.examples)
        seconds = time.perf_counter() - t0
        scores = evaluate(dataset, {p.id: p.answer for p in preds})
        row = SetScore(name=set_name(source), source=source, domain=domain, scoring=dataset.scoring,
                       questions=len(preds), exact=scores["exact"], f1=scores["f1"],
                       has_ans_f1=scores.get("HasAns_f1"), no_ans_f1=scores.get("NoAns_f1"),
                       questions_per_second=len(preds) / max(seconds, 1e-9), seconds=seconds)
        rows.append(row)
        if progress is not None:
            progress(row)
    return ScoreTable(sets=rows, model=str(reader.name), runs_on=reader.runs_on)


def markdown(table: ScoreTable) -> str:
    """One line per set, then the in-domain and out-of-domain means."""
    num = lambda v: "" if v is None else f"{v:.2f}"  # noqa: E731
    lines = [f"Scores of {table.model} ({table.runs_on})", "",
             "| set | domain | scoring | questions | EM | F1 | HasAns F1 | NoAns F1 | questions/s | time (s) |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in table.sets:
        lines.append(f"| {r.name} | {r.domain} | {r.scoring} | {r.questions:,} | {r.exact:.2f} | {r.f1:.2f} | "
                     f"{num(r.has_ans_f1)} | {num(r.no_ans_f1)} | {r.questions_per_second:.1f} | {r.seconds:.1f} |")
    for domain, label in (("in", "in domain (Eval)"), ("out", "out of domain (Test)")):
        mean = table.mean(domain)
        if mean is not None:
            n = sum(r.domain == domain for r in table.sets)
            lines.append(f"| mean, {label} | {domain} | | {n} sets | {mean[0]:.2f} | {mean[1]:.2f} | | | | |")
    return "\n".join(lines) + "\n"


def write_scores(table: ScoreTable, folder: str | Path) -> list[Path]:
    """`spanqa_scores.json` and `eval_sets.md` into `folder` (atomically)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    md = folder / MARKDOWN_FILE
    write_text_atomic(md, markdown(table))
    return [table.save(folder), md]
