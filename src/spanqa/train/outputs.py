"""What a finished run writes: results JSON files, the model card and training curves."""

from __future__ import annotations

import importlib.metadata
import platform
import shlex
from pathlib import Path

from spanqa.files import write_json_atomic, write_text_atomic
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


# unit of the task's data -> (hub task type, task name) for the card's model-index
TASK_TYPES = {"questions": ("question-answering", "Question Answering"),
              "rows": ("text-classification", "Text Classification"),
              "documents": ("fill-mask", "Masked Language Modeling")}
# eval metric -> (model-index metric type, display name)
CARD_METRICS = {
    "eval_exact_match": ("exact_match", "Exact Match"), "eval_f1": ("f1", "F1"),
    "eval_HasAns_exact": ("exact_match", "HasAns Exact Match"), "eval_HasAns_f1": ("f1", "HasAns F1"),
    "eval_NoAns_exact": ("exact_match", "NoAns Exact Match"), "eval_NoAns_f1": ("f1", "NoAns F1"),
    "eval_accuracy": ("accuracy", "Accuracy"), "eval_mlm_loss": ("loss", "MLM loss"),
    "eval_mlm_accuracy": ("accuracy", "MLM accuracy"),
}
# offline aliases -> the hub model they ship
ALIAS_BASES = {"minilm-l6": "sentence-transformers/all-MiniLM-L6-v2"}


def card_metadata(name: str, settings: dict, eval_metrics: dict, unit: str) -> str:
    """The card's YAML front matter (huggingface_hub's ModelCardData and EvalResult), so the hub shows the run:
    licence (the base model's, when its card is at hand), tags, datasets, base model, and a model-index with the
    run's evaluation metrics."""
    from huggingface_hub import EvalResult, ModelCardData

    task_type, task_name = TASK_TYPES[unit]
    model = str(settings.get("model", ""))
    base = ALIAS_BASES.get(model, model if _hub_name(model) else None)
    train, evaluation = str(settings.get("train_data") or ""), str(settings.get("eval_data") or "")
    datasets = [d for d in dict.fromkeys(x for v in (train, evaluation) for x in v.split(",")) if _hub_name(d)]
    scored_on = evaluation.split(",")[0] or train.split(",")[0]
    results = [EvalResult(task_type=task_type, task_name=task_name, dataset_type=scored_on,
                          dataset_name=Path(scored_on).name or scored_on, metric_type=kind, metric_name=label,
                          metric_value=round(float(eval_metrics[key]), 4))
               for key, (kind, label) in CARD_METRICS.items() if key in eval_metrics]
    data = ModelCardData(model_name=name, license=base_licence(model), base_model=base,
                         tags=["spanqa", task_type, *(["extractive-qa"] if unit == "questions" else [])],
                         datasets=datasets or None, eval_results=results or None, library_name="transformers")
    return "---\n" + data.to_yaml() + "\n---\n"


def shown_source(value: str) -> str:
    """A data or model source as a card shows it: hub names and aliases as given, a path inside the working
    directory relative to it, any other path by its file name (comma-separated lists part by part)."""
    def one(part: str) -> str:
        path = Path(part).expanduser()
        if not path.is_absolute():  # hub names, aliases, relative paths
            return part
        try:
            return str(path.relative_to(Path.cwd()))
        except ValueError:
            return path.name
    return ",".join(one(p) for p in value.split(",")) if value else value


def _hub_name(value: str) -> bool:
    """A hub model or dataset name, not a local path or a data file name."""
    from spanqa.models.hub import looks_like_hub_name

    return looks_like_hub_name(value) and not value.endswith((".json", ".gz", ".jsonl"))


def base_licence(model: str) -> str | None:
    """The licence in the base model's card when it is on this machine (a folder, an alias, the hub cache)."""
    from huggingface_hub import ModelCard

    from spanqa.bundle import from_bundle
    from spanqa.models.hub import ALIASES, resolve_model_path

    try:
        path = Path(resolve_model_path(model)) if model in ALIASES or Path(model).exists() else from_bundle("model", model)
    except Exception:  # an alias whose package is missing: no licence to report
        return None
    card = path / "README.md" if path else None
    if card is None or not card.is_file():
        return None
    try:
        licence = ModelCard.load(card).data.license
    except Exception:  # an unreadable card is not this run's problem
        return None
    return licence if isinstance(licence, str) else None


def card(name: str, summary: str, about: str, settings: dict, hparams: dict, train_metrics: dict, eval_metrics: dict,
         command: str, unit: str) -> str:
    """The seeds' model card layout (summary, intended uses, data, procedure, hyperparameters, results, versions)
    under YAML metadata the hub reads (`card_metadata`). Data and model paths are shown as `shown_source` gives
    them: no absolute paths of the machine the run was on."""
    settings = {**settings, **{k: shown_source(str(settings[k] or "")) for k in ("train_data", "eval_data", "model")
                               if k in settings}}
    command = shlex.join(shown_source(arg) if arg.startswith(("/", "~")) else arg for arg in shlex.split(command))
    lines = [
        card_metadata(name, settings, eval_metrics, unit).rstrip("\n"),
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
