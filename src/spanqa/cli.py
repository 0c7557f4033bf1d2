"""`spanqa` command line: a table of subcommands, each a thin call into the library.

Errors the user can fix (`SpanqaError`) print as one paragraph on stderr with exit status 2.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from importlib import resources
from typing import Callable

from spanqa.config import DataConfig, add_dataclass_args, from_args
from spanqa.errors import SpanqaError



def asset(name: str) -> str:
    """Path of a file shipped inside the package (sample data, sample predictions)."""
    return str(resources.files("spanqa") / "assets" / name)


def cmd_evaluate(args: argparse.Namespace) -> int:
    from spanqa.data import load_examples
    from spanqa.evaluation import evaluate, load_na_probs, load_predictions

    dataset = load_examples(args.data, repair_answers=args.repair_answers)
    predictions = load_predictions(args.predictions)
    na_probs = load_na_probs(args.na_probs, [e.id for e in dataset.examples]) if args.na_probs else None
    scores = evaluate(dataset, predictions, na_probs, args.na_prob_thresh)
    if args.json:
        print(json.dumps(scores))
    else:
        print(format_scores(scores, dataset.scoring, dataset.source))
    return 0


def format_scores(scores: dict, scoring: str, source: str) -> str:
    """A readable table of `evaluate` scores."""
    lines = [f"{source}  ({scoring} scoring)"]
    for key, value in scores.items():
        shown = f"{value:8.4f}" if isinstance(value, float) and "thresh" not in key else f"{value:>8}"
        lines.append(f"  {key:<20}{shown}")
    return "\n".join(lines)


def cmd_data_stats(args: argparse.Namespace) -> int:
    from spanqa.data import load_examples
    from spanqa.models.hub import load_tokenizer
    from spanqa.stats import dataset_stats

    config = from_args(DataConfig, args)
    tokenizer = load_tokenizer(args.model)
    stats = dataset_stats(load_examples(args.data, args.split, args.repair_answers), tokenizer, config)
    if args.json:
        print(json.dumps(stats))
        return 0
    for key, value in stats.items():
        if isinstance(value, dict):
            value = "  ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in value.items())
        elif isinstance(value, float):
            value = f"{value:.4%}" if key == "answer_coverage" else f"{value:.4g}"
        print(f"{key:<22}{value}")
    return 0


QUICKSTART = {
    "model": "minilm-l6",
    "train_data": "asset:squad-v1.1-train-sample.json.gz",
    "eval_data": "asset:squad-v1.1-dev-sample.json.gz",
    "output_dir": "runs/quickstart",
    "overwrite_output_dir": True,
    "learning_rate": 1.0e-4,
    "num_train_epochs": 2.0,
    "per_device_train_batch_size": 16,
    "per_device_eval_batch_size": 64,
    "weight_decay": 0.01,
    "warmup_ratio": 0.1,
    "lr_scheduler_type": "linear",
    "seed": 42,
    "precision": "auto",
    "max_seq_length": 384,
    "doc_stride": 128,
    "max_query_length": 64,
    "logging_steps": 10,
    "save_steps": 0,
    "report_to": "tensorboard",
}


def quickstart_recipe() -> dict:
    """The embedded defaults of `spanqa quickstart` (recipes/quickstart.yaml, with packaged data paths)."""
    return {k: asset(v[len("asset:"):]) if isinstance(v, str) and v.startswith("asset:") else v
            for k, v in QUICKSTART.items()}


def cmd_quickstart(args: argparse.Namespace) -> int:
    from spanqa.data import load_examples
    from spanqa.reader import Reader
    from spanqa.train.config import resolve
    from spanqa.train.run import train

    recipe = quickstart_recipe()
    if args.output_dir:
        recipe["output_dir"] = args.output_dir
    print("spanqa quickstart: fine-tune all-MiniLM-L6-v2 on 3,005 SQuAD v1.1 questions, evaluate on 870, "
          f"then answer a question. Output: {recipe['output_dir']}", flush=True)
    results = train(resolve(recipe, {}), command="spanqa quickstart")
    print(f"\ndev sample: EM {results['eval_exact_match']:.2f}  F1 {results['eval_f1']:.2f}  "
          f"({results['train_runtime']:.0f} s training at {results['train_samples_per_second']:.1f} windows/s)")
    example = load_examples(recipe["eval_data"]).examples[0]
    best = Reader.load(recipe["output_dir"]).answer(example.question, example.context)[0]
    print(f"\nQ: {example.question}\nA: {best.text}   (gold: {example.answers[0].text})")
    return 0


def _evaluate_parser(sub) -> None:
    p = sub.add_parser("evaluate", help="score official-format predictions against gold data")
    p.add_argument("data", help="gold data: SQuAD JSON, MRQA jsonl, JSONL rows (.gz ok), a dataset folder or hub name")
    p.add_argument("predictions", help="predictions JSON {id: answer text}; \"\" means no answer")
    p.add_argument("--na-probs", help="JSON {id: no-answer probability} (SQuAD v2): adds best_* thresholds")
    p.add_argument("--na-prob-thresh", type=float, default=1.0, help="no-answer probability above which a prediction counts as no answer (default: 1.0)")
    p.add_argument("--json", action="store_true", help="print the scores as one JSON object on the last line")
    _repair_flag(p)
    p.set_defaults(func=cmd_evaluate)


def _repair_flag(p) -> None:
    p.add_argument("--repair-answers", action="store_true",
                   help="move gold answer_start values that do not point at their text to the nearest occurrence")


def _data_parser(sub) -> None:
    p = sub.add_parser("data", help="inspect QA data")
    data_sub = p.add_subparsers(dest="data_command", required=True)
    s = data_sub.add_parser("stats", help="sizes, token lengths, windows per question, answer coverage")
    s.add_argument("data", help="any source `spanqa evaluate` reads")
    s.add_argument("--model", default="minilm-l6", help="tokenizer: a model folder, hub name or alias (default: minilm-l6)")
    s.add_argument("--split", default="validation", help="split of a hub or saved dataset (default: validation)")
    s.add_argument("--json", action="store_true", help="print one JSON object")
    _repair_flag(s)
    add_dataclass_args(s, DataConfig)
    s.set_defaults(func=cmd_data_stats)


def cmd_train(args: argparse.Namespace) -> int:
    from spanqa.train.config import load_recipe, resolve
    from spanqa.train.run import train

    recipe = load_recipe(args.config) if args.config else {}
    flags = {k: v for k, v in vars(args).items() if k not in ("config", "func", "command", "verbose")}
    settings = resolve(recipe, flags)
    results = train(settings, command="spanqa " + " ".join(sys.argv[1:]))
    if results:
        print(json.dumps(results))
    return 0


def _train_parser(sub) -> None:
    from spanqa.config import DecodeConfig
    from spanqa.train.config import OptimConfig, RunConfig

    p = sub.add_parser("train", help="fine-tune an encoder into a reader (flags override --config)")
    p.add_argument("--config", help="YAML recipe: a flat mapping of the settings below")
    for cls in (RunConfig, OptimConfig, DataConfig, DecodeConfig):
        add_dataclass_args(p, cls, default_none=True)
    p.set_defaults(func=cmd_train)


def _quickstart_parser(sub) -> None:
    p = sub.add_parser("quickstart", help="the main job on the bundled defaults: train, evaluate, answer")
    p.add_argument("--output-dir", help="where the run goes (default: runs/quickstart)")
    p.set_defaults(func=cmd_quickstart)


SUBCOMMANDS: list[Callable] = [_quickstart_parser, _train_parser, _evaluate_parser, _data_parser]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="spanqa", description="Extractive question answering toolkit.")
    parser.add_argument("--verbose", action="store_true", help="log more")
    sub = parser.add_subparsers(dest="command", required=True)
    for add in SUBCOMMANDS:
        add(sub)
    return parser


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever sys.stderr is at the time of each record."""

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, _value):
        pass


class _Format(logging.Formatter):
    """`spanqa: message` for progress notes, `spanqa: warning: message` for anything worse."""

    def format(self, record: logging.LogRecord) -> str:
        level = "" if record.levelno <= logging.INFO else f"{record.levelname.lower()}: "
        return f"spanqa: {level}{record.getMessage()}"


def setup_logging(verbose: bool) -> None:
    """spanqa's log lines go to stderr as `spanqa: warning: ...`."""
    log = logging.getLogger("spanqa")
    for handler in [h for h in log.handlers if isinstance(h, _StderrHandler)]:
        log.removeHandler(handler)
    handler = _StderrHandler()
    handler.setFormatter(_Format())
    log.addHandler(handler)
    log.setLevel(logging.DEBUG if verbose else logging.INFO)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging(args.verbose)
    try:
        return args.func(args)
    except SpanqaError as exc:
        print(f"spanqa: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("spanqa: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
