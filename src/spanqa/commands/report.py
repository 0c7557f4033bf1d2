"""`spanqa report`: the comparison table of a model family (VMware's model cards), for any finished runs.

    Model | Parameters | Trainable | Training Time | Eval Time | Eval EM | Eval F1 | Test EM | Test F1 | q/s | Eval data

Everything comes from what a run folder already holds (`all_results.json`, the resolved settings, the
weights' header, and `spanqa_scores.json` from `spanqa evaluate --model RUN DATA... --out-of-domain DATA...`),
so transformer and recurrent readers, fine-tuned or distilled, sit in one table. Eval is in domain: the
scored in-domain set when the run has a score table (the first, if several), else the evaluation at the end of
training. Test is out of domain: the mean over the out-of-domain sets (each set once; the per-set figures are in
the CSV), empty without a score table. q/s is prediction speed on the Eval set. Written as markdown, CSV and a
PNG of F1 against training time.
"""

from __future__ import annotations

import csv
import io
import math
from dataclasses import asdict, dataclass
from pathlib import Path

from spanqa.artifacts import RUN_FILE, WEIGHTS_FILE, ScoreTable
from spanqa.files import read_json, write_text_atomic
from spanqa.display import hms
from spanqa.errors import SpanqaError

RESULTS_FILE = "all_results.json"
COLUMNS = ("Model", "Parameters", "Trainable", "Training Time", "Eval Time", "Eval EM", "Eval F1", "Test EM", "Test F1",
           "q/s", "Eval data")


@dataclass(frozen=True)
class RunRow:
    """One finished run, as the table shows it (times in seconds; None where the run did not record it)."""

    name: str
    model: str
    parameters: int
    trainable: int | None
    train_seconds: float | None  # None: not trained by spanqa (a scored hub or exported reader)
    eval_seconds: float | None
    exact_match: float | None
    f1: float | None
    eval_data: str
    test_exact_match: float | None = None
    test_f1: float | None = None
    questions_per_second: float | None = None
    test_sets: str = ""  # "name EM/F1; ..." per out-of-domain set (the CSV's detail)

    def cells(self) -> list[str]:
        num = lambda v, fmt: "" if v is None else format(v, fmt)  # noqa: E731
        return [f"{self.name} ({self.model})" if self.model not in self.name else self.name,
                f"{self.parameters:,}", num(self.trainable, ","),
                "" if self.train_seconds is None else hms(self.train_seconds),
                "" if self.eval_seconds is None else hms(self.eval_seconds),
                num(self.exact_match, ".2f"), num(self.f1, ".2f"), num(self.test_exact_match, ".2f"),
                num(self.test_f1, ".2f"), num(self.questions_per_second, ".1f"), self.eval_data]


def read_run(folder: str | Path) -> RunRow:
    """A run folder's row.

    Raises:
        SpanqaError: the folder is not a finished run (no all_results.json) or its files are malformed.
    """
    folder = Path(folder)
    results_path = folder / RESULTS_FILE
    table = ScoreTable.load(folder)
    if not results_path.is_file() and table is not None:  # a reader scored but not trained here (hub, export)
        row = RunRow(name=folder.name, model=table.model, parameters=count_parameters(folder), trainable=None,
                     train_seconds=None, eval_seconds=None, exact_match=None, f1=None, eval_data="-")
        return with_scores(row, table)
    if not results_path.is_file():
        raise SpanqaError(f"{folder}: not a finished run (no {RESULTS_FILE}; runs from `spanqa train`, `distill`, "
                          "`classify` or `pretrain` write it at the end) and no scores (`spanqa evaluate --model "
                          f"{folder} DATA...` writes them).")
    results = read_json(results_path, "a results object")
    settings = read_json(folder / RUN_FILE, "a settings object") if (folder / RUN_FILE).is_file() else {}
    if not isinstance(results, dict) or "train_runtime" not in results:
        raise SpanqaError(f"{results_path}: expected an object with train_runtime (a spanqa or run_qa results file).")
    row = RunRow(
        name=settings.get("run_name") or folder.name,
        model=str(settings.get("model", "")),
        parameters=int(results.get("num_parameters") or count_parameters(folder)),
        trainable=results.get("num_trainable_parameters"),
        train_seconds=float(results["train_runtime"]),
        eval_seconds=results.get("eval_runtime"),
        exact_match=results.get("eval_exact_match"),
        f1=results.get("eval_f1"),
        eval_data=_eval_data(settings, results),
    )
    return with_scores(row, table) if table is not None else row


def with_scores(row: RunRow, table: ScoreTable) -> RunRow:
    """`row` with its Eval columns from the table's first in-domain set and its Test columns from the mean of
    its out-of-domain sets."""
    from dataclasses import replace

    inside = next((r for r in table.sets if r.domain == "in"), None)
    if inside is not None:
        row = replace(row, exact_match=inside.exact, f1=inside.f1, eval_seconds=inside.seconds,
                      questions_per_second=inside.questions_per_second,
                      eval_data=f"{inside.name} ({inside.questions:,} questions)")
    test = table.mean("out")
    if test is not None:
        row = replace(row, test_exact_match=test[0], test_f1=test[1], test_sets="; ".join(
            f"{r.name} {r.exact:.2f}/{r.f1:.2f}" for r in table.sets if r.domain == "out"))
    return row


def count_parameters(folder: Path) -> int:
    """Floating-point weights in the folder's safetensors file (what runs before v1 did not record)."""
    from safetensors import safe_open

    path = folder / WEIGHTS_FILE
    if not path.is_file():
        raise SpanqaError(f"{folder}: no num_parameters in {RESULTS_FILE} and no {WEIGHTS_FILE} to count them from.")
    total = 0
    with safe_open(str(path), "np") as fh:
        for key in fh.keys():
            tensor = fh.get_slice(key)
            if tensor.get_dtype().startswith(("F", "BF")):
                total += math.prod(tensor.get_shape())
    return total


def _eval_data(settings: dict, results: dict) -> str:
    source = Path(str(settings.get("eval_data", ""))).name or "-"
    total = results.get("eval_total")
    return f"{source} ({total:,} questions)" if isinstance(total, int) else source


def markdown(rows: list[RunRow]) -> str:
    """The table as markdown, the seeds' layout."""
    lines = [" | ".join(COLUMNS) + " |", "|".join(["---"] * len(COLUMNS)) + "|"]
    lines += [" | ".join(r.cells()) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def to_csv(rows: list[RunRow]) -> str:
    """One line per run with raw numbers (seconds, counts)."""
    buffer = io.StringIO()
    fields = list(asdict(rows[0])) if rows else []
    writer = csv.DictWriter(buffer, fieldnames=fields, lineterminator="\n")
    writer.writeheader()
    for r in rows:
        writer.writerow(asdict(r))
    return buffer.getvalue()


def plot(rows: list[RunRow], path: Path) -> Path | None:
    """F1 against training time (log scale), one labelled point per run with an F1."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    scored = [r for r in rows if r.f1 is not None and r.train_seconds is not None]
    if not scored:
        return None
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for r in scored:
        hours = max(r.train_seconds, 1.0) / 3600
        ax.scatter(hours, r.f1)
        ax.annotate(r.name, (hours, r.f1), textcoords="offset points", xytext=(5, 5), fontsize=8)
    ax.set_xscale("log")
    ax.set_xlabel("training time (hours, log scale)")
    ax.set_ylabel("F1")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    tmp = path.with_name(f".{path.name}.tmp.png")
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    tmp.replace(path)
    return path


def write_report(run_dirs: list[str], output_dir: str | Path) -> tuple[str, list[Path]]:
    """Read the runs, write report.md, report.csv and report.png into `output_dir`; returns (markdown, paths)."""
    rows = [read_run(d) for d in run_dirs]
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    table = markdown(rows)
    write_text_atomic(out / "report.md", table)
    write_text_atomic(out / "report.csv", to_csv(rows))
    figure = plot(rows, out / "report.png")
    return table, [out / "report.md", out / "report.csv"] + ([figure] if figure else [])
