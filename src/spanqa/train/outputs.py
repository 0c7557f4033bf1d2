"""What a finished run writes: results JSON files, the model card and training curves."""

from __future__ import annotations

import importlib.metadata
import platform
from pathlib import Path

from spanqa.data.io import write_json_atomic, write_text_atomic
from spanqa.display import hms

FRAMEWORKS = ("spanqa", "transformers", "torch", "datasets", "tokenizers", "accelerate")


def framework_versions() -> dict[str, str]:
    out = {}
    for name in FRAMEWORKS:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            pass
    out["python"] = platform.python_version()
    return out


def write_results(output_dir: Path, train_metrics: dict, eval_metrics: dict) -> None:
    """train_results.json, eval_results.json and all_results.json, as run_qa writes them."""
    write_json_atomic(output_dir / "train_results.json", train_metrics)
    if eval_metrics:
        write_json_atomic(output_dir / "eval_results.json", eval_metrics)
    write_json_atomic(output_dir / "all_results.json", {**train_metrics, **eval_metrics})


def _metric_block(title: str, metrics: dict) -> str:
    width = max(len(k) for k in metrics) if metrics else 0
    lines = [f"***** {title} metrics *****"]
    for key, value in metrics.items():
        shown = hms(value) if key.endswith("_runtime") else (f"{value:.4f}" if isinstance(value, float) else value)
        lines.append(f"  {key:<{width}} = {shown}")
    return "\n".join(lines)


def hyperparameters(settings: dict, world_size: int, precision: str, device: str) -> dict:
    """The seeds' hyperparameter list, from the resolved settings."""
    per_device = settings["per_device_train_batch_size"]
    optimizer = (
        f"AdamW with betas=({settings['adam_beta1']},{settings['adam_beta2']}) and epsilon={settings['adam_epsilon']}"
        if settings["optimizer"] == "adamw" else
        f"LAMB with betas=({settings['adam_beta1']},{settings['adam_beta2']}), epsilon={settings['adam_epsilon']}, "
        f"bias_correction={settings['lamb_bias_correction']}"
    )
    return {
        "learning_rate": settings["learning_rate"],
        "train_batch_size": per_device,
        "eval_batch_size": settings["per_device_eval_batch_size"],
        "seed": settings["seed"],
        "distributed_type": f"{device} x {world_size}" if world_size > 1 else device,
        "gradient_accumulation_steps": settings["gradient_accumulation_steps"],
        "total_train_batch_size": per_device * world_size * settings["gradient_accumulation_steps"],
        "optimizer": optimizer,
        "weight_decay": settings["weight_decay"],
        "lr_scheduler_type": settings["lr_scheduler_type"],
        "lr_scheduler_warmup_ratio": settings["warmup_ratio"],
        "num_epochs": settings["num_train_epochs"] if not settings["max_steps"] else f"{settings['max_steps']} steps",
        "max_seq_length": settings["max_seq_length"],
        **({"doc_stride": settings["doc_stride"]} if "doc_stride" in settings else {}),
        "training precision": {"bf16": "Mixed Precision (bf16)", "fp16": "Mixed Precision (fp16)"}.get(precision, "fp32"),
    }


def card(name: str, summary: str, about: str, settings: dict, hparams: dict, train_metrics: dict, eval_metrics: dict,
         command: str, unit: str) -> str:
    """The seeds' model card layout: summary, intended uses, data, procedure, hyperparameters, results, versions."""
    lines = [
        f"# {name}", "", summary, "", "## Intended uses & limitations", "", about, "",
        "## Training and evaluation data", "",
        f"- training: `{settings['train_data']}`" + (f" (first {settings['max_train_samples']} {unit})" if settings["max_train_samples"] else ""),
        f"- evaluation: `{settings['eval_data'] or '(none)'}`" + (f" (first {settings['max_eval_samples']} {unit})" if settings["max_eval_samples"] else ""),
        "", "## Training procedure", "", "Command line:", "", "```", command, "```", "",
        "### Training hyperparameters", "", "The following hyperparameters were used during training:", "",
        *[f"- {k}: {v}" for k, v in hparams.items()], "",
        "### Training results", "", "```", _metric_block("train", train_metrics),
    ]
    if eval_metrics:
        lines += ["", _metric_block("eval", eval_metrics)]
    lines += ["```", "", "![training curves](training_curves.png)", "", "### Framework versions", ""]
    lines += [f"- {k} {v}" for k, v in framework_versions().items()]
    return "\n".join(lines) + "\n"


def write_card(output_dir: Path, text: str) -> None:
    write_text_atomic(output_dir / "README.md", text)


def plot_curves(output_dir: Path, log_history: list[dict], eval_key: str = "eval_f1") -> Path | None:
    """training_curves.png: loss, learning rate and the main eval metric over optimizer steps."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    train = [r for r in log_history if "loss" in r]
    evals = [r for r in log_history if eval_key in r]
    if not train:
        return None
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.6))
    panels = [
        (axes[0], train, "loss", "training loss"),
        (axes[1], train, "learning_rate", "learning rate"),
        (axes[2], evals, eval_key, eval_key.replace("_", " ")),
    ]
    for ax, rows, key, title in panels:
        ax.plot([r["step"] for r in rows], [r[key] for r in rows], marker="o" if len(rows) < 30 else None)
        ax.set_title(title)
        ax.set_xlabel("optimizer step")
        ax.grid(alpha=0.3)
    fig.tight_layout()
    path = output_dir / "training_curves.png"
    tmp = output_dir / ".training_curves.tmp.png"
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    tmp.replace(path)
    return path
