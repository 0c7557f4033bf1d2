"""Where training metrics go: TensorBoard (default), Weights & Biases, MLflow, or nowhere.

Each tracker is optional: asking for one that is not installed is a clear error, not a traceback.
W&B honours WANDB_MODE=offline, which works with no network.

A resumed run (a requeued cluster job) continues its tracker run rather than starting another: TensorBoard
writes into the same `runs/` folder, and the W&B / MLflow run id is kept in the output folder
(`.tracker_run_id`) and reopened.
"""

from __future__ import annotations

from pathlib import Path

from spanqa.files import write_text_atomic
from spanqa.errors import SpanqaError

RUN_ID_FILE = ".tracker_run_id"


def _saved_run_id(output_dir: Path, kind: str) -> str | None:
    """The run id a previous part of this run saved for tracker `kind`, if any."""
    path = output_dir / RUN_ID_FILE
    if path.is_file():
        saved_kind, _, run_id = path.read_text().strip().partition(":")
        if saved_kind == kind and run_id:
            return run_id
    return None


def _save_run_id(output_dir: Path, kind: str, run_id: str) -> None:
    write_text_atomic(output_dir / RUN_ID_FILE, f"{kind}:{run_id}\n")


class Tracker:
    """Logs {name: number} at a step; `close()` flushes."""

    def log(self, metrics: dict, step: int) -> None:  # pragma: no cover - interface
        pass

    def close(self) -> None:
        pass


class TensorBoard(Tracker):
    def __init__(self, log_dir: Path) -> None:
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            raise SpanqaError("--report-to tensorboard needs the tensorboard package: pip install tensorboard") from None
        self.writer = SummaryWriter(log_dir=str(log_dir))

    def log(self, metrics: dict, step: int) -> None:
        for key, value in metrics.items():
            if isinstance(value, (int, float)) and key != "step":
                self.writer.add_scalar(key, value, step)

    def close(self) -> None:
        self.writer.close()


class WandB(Tracker):
    def __init__(self, run_name: str, config: dict, output_dir: Path) -> None:
        try:
            import wandb
        except ImportError:
            raise SpanqaError("--report-to wandb needs wandb: pip install wandb (WANDB_MODE=offline works offline)") from None
        run_id = _saved_run_id(output_dir, "wandb") or wandb.util.generate_id()
        self.run = wandb.init(project="spanqa", name=run_name, config=config, dir=str(output_dir), id=run_id,
                              resume="allow")
        _save_run_id(output_dir, "wandb", run_id)

    def log(self, metrics: dict, step: int) -> None:
        self.run.log({k: v for k, v in metrics.items() if k != "step"}, step=step)

    def close(self) -> None:
        self.run.finish()


class MLflow(Tracker):
    def __init__(self, run_name: str, config: dict, output_dir: Path) -> None:
        try:
            import mlflow
        except ImportError:
            raise SpanqaError("--report-to mlflow needs mlflow: pip install mlflow") from None
        self.mlflow = mlflow
        run_id = _saved_run_id(output_dir, "mlflow")
        run = mlflow.start_run(run_id=run_id) if run_id else mlflow.start_run(run_name=run_name)
        _save_run_id(output_dir, "mlflow", run.info.run_id)
        if not run_id:
            mlflow.log_params({k: v for k, v in config.items() if v not in ("", None)})

    def log(self, metrics: dict, step: int) -> None:
        self.mlflow.log_metrics({k: float(v) for k, v in metrics.items() if isinstance(v, (int, float)) and k != "step"}, step=step)

    def close(self) -> None:
        self.mlflow.end_run()


def make_tracker(kind: str, output_dir: Path, run_name: str, config: dict) -> Tracker:
    if kind == "tensorboard":
        return TensorBoard(output_dir / "runs")
    if kind == "wandb":
        return WandB(run_name, config, output_dir)
    if kind == "mlflow":
        return MLflow(run_name, config, output_dir)
    return Tracker()


def check_tracker(kind: str) -> None:
    """Fail before any work when the requested tracker's package is missing."""
    import importlib.util

    module = {"tensorboard": "tensorboard", "wandb": "wandb", "mlflow": "mlflow"}.get(kind)
    if module and importlib.util.find_spec(module) is None:
        raise SpanqaError(f"--report-to {kind} needs the {module} package: pip install {module} (or --report-to none)")
