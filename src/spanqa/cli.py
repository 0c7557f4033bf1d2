"""`spanqa` command line: a table of subcommands, each a thin call into the library.

Errors the user can fix (`SpanqaError`) print as one paragraph on stderr with exit status 2.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from importlib import resources
from typing import Callable

from spanqa.answering.collection import RETRIEVE as RETRIEVE_DEFAULT
from spanqa.config import DataConfig, add_dataclass_args, from_args
from spanqa.errors import SpanqaError
from spanqa.memory import keep_freed_memory


def asset(name: str) -> str:
    """Path of a file shipped inside the package (sample data, sample predictions)."""
    return str(resources.files("spanqa") / "assets" / name)


def cmd_evaluate(args: argparse.Namespace) -> int:
    from spanqa.data import load_examples
    from spanqa.evaluation import evaluate, load_na_probs, load_predictions

    if args.model and not args.index:
        return _evaluate_sets(args)
    if args.out_of_domain:
        raise SpanqaError("--out-of-domain scores a reader: give --model RUN and the data sets.")
    if len(args.sources) > 2 or (args.index and len(args.sources) > 1):
        raise SpanqaError(f"{len(args.sources)} files given: expected DATA PREDICTIONS, DATA --index INDEX --model "
                          "RUN, or --model RUN DATA [DATA ...] to score a reader on several sets.")
    args.data, args.predictions = args.sources[0], (args.sources[1:] or [None])[0]
    dataset = load_examples(args.data, repair_answers=args.repair_answers)
    if args.index:
        return _evaluate_open(args, dataset)
    if args.predictions is None:
        raise SpanqaError("give PREDICTIONS to score (or --model RUN to predict and score, or --index INDEX "
                          "--model RUN to ask the collection).")
    predictions = load_predictions(args.predictions)
    na_probs = load_na_probs(args.na_probs, [e.id for e in dataset.examples]) if args.na_probs else None
    scores = evaluate(dataset, predictions, na_probs, args.na_prob_thresh)
    if args.json:
        print(json.dumps(scores))
    else:
        print(format_scores(scores, dataset.scoring, dataset.source))
    return 0


def _evaluate_sets(args: argparse.Namespace) -> int:
    from spanqa.commands.scoring import markdown, score_sets, write_scores

    from spanqa.data import check_source

    sources = [(d, "in") for d in args.sources] + [(d, "out") for d in args.out_of_domain or []]
    for source, _ in sources:
        check_source(source)  # a missing last set fails now, not after the others were scored
    reader = _load_reader(args)
    table = score_sets(reader, sources, args.max_samples, progress=lambda r: print(
        f"spanqa: {r.name} ({r.domain} domain): EM {r.exact:.2f} F1 {r.f1:.2f}, {r.questions:,} questions, "
        f"{r.questions_per_second:.1f}/s", file=sys.stderr, flush=True))
    print(markdown(table), end="")
    from pathlib import Path

    folder = Path(args.output_dir or args.model)
    if args.output_dir or folder.is_dir():
        paths = write_scores(table, folder)
        print(f"spanqa: wrote {', '.join(str(p) for p in paths)}", file=sys.stderr)
    else:
        print(f"spanqa: {args.model} is not a local folder: give --output-dir to keep the table", file=sys.stderr)
    if args.json:
        print(json.dumps(table.to_dict()))
    return 0


def _evaluate_open(args: argparse.Namespace, dataset) -> int:
    from spanqa.commands.open_domain import format_open_domain, open_domain
    from spanqa.retrieval import open_index

    if args.predictions is not None or not args.model:
        raise SpanqaError("--index asks the collection: give DATA and --model RUN, not a predictions file.")
    dataset = dataset.head(args.max_samples)
    index = open_index(args.index)
    retrievers = index.info.retrievers + (["hybrid"] if "dense" in index.info.retrievers else []) \
        if args.retriever == "all" else [args.retriever]
    results = open_domain(_load_reader(args), index, dataset, retrievers, args.retrieve)
    print(format_open_domain(results, dataset.source))
    if args.json:
        print(json.dumps(results))
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
    from spanqa.commands.stats import dataset_stats

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


def cmd_data_contexts(args: argparse.Namespace) -> int:
    from spanqa.data import load_examples
    from spanqa.files import write_text_atomic
    from spanqa.data.text import split_sentences

    contexts = list(dict.fromkeys(e.context for e in load_examples(args.data, args.split).examples))
    docs = [split_sentences(c) for c in contexts]
    text = "\n\n".join("\n".join(d) for d in docs if d) + "\n"
    write_text_atomic(args.output, text)
    print(f"{args.output}: {len(contexts)} contexts, {sum(map(len, docs))} sentences, {len(text.split())} words")
    return 0


QUICKSTART = {
    "command": "train",
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
    "max_time": 480.0,
}


def quickstart_recipe() -> dict:
    """The embedded defaults of `spanqa quickstart` (recipes/quickstart.yaml, with packaged data paths)."""
    return {k: asset(v[len("asset:"):]) if isinstance(v, str) and v.startswith("asset:") else v
            for k, v in QUICKSTART.items()}


def cmd_quickstart(args: argparse.Namespace) -> int:
    from spanqa.data import load_examples
    from spanqa.reader import Reader
    from spanqa.tasks.reader_task import ReaderSettings, train

    recipe = quickstart_recipe()
    for key in ("output_dir", "max_time"):
        if getattr(args, key) is not None:
            recipe[key] = getattr(args, key)
    budget = f", at most {recipe['max_time'] / 60:.0f} min of training" if recipe["max_time"] else ""
    print("spanqa quickstart: fine-tune all-MiniLM-L6-v2 on 3,005 SQuAD v1.1 questions, evaluate on 870, "
          f"then answer a question{budget}. Output: {recipe['output_dir']}", flush=True)
    results = train(ReaderSettings.resolve(recipe, {}), command="spanqa quickstart")
    print(f"\ndev sample: EM {results['eval_exact_match']:.2f}  F1 {results['eval_f1']:.2f}  "
          f"({results['train_runtime']:.0f} s training, {steps_line(results, recipe['max_time'])}, "
          f"{results['train_samples_per_second']:.1f} windows/s)")
    example = load_examples(recipe["eval_data"]).examples[0]
    from spanqa.metrics import exact_match

    answers = Reader.load(recipe["output_dir"]).answer(example.question, example.context, top_k=3)
    print(f"\nQ: {example.question}\ngold: {example.answers[0].text}")
    for rank, a in enumerate(answers, 1):
        right = any(exact_match(a.text, g) for g in example.gold_texts)
        print(f"  {rank}. {a.text}   (probability {a.probability:.2f}{', right' if right else ''})")
    return 0


def steps_line(results: dict, budget: float) -> str:
    """What the planner did, in words: all the recipe's steps, the ones a budget fitted, or the budget's cut."""
    done, recipe = results["total_steps"], results.get("recipe_steps", results["total_steps"])
    if results.get("stopped_at_time_budget"):
        return f"{done} of {recipe} steps: the {budget:.0f} s budget ran out"
    if done < recipe:
        return f"{done} of {recipe} steps: all that fitted the {budget:.0f} s budget"
    return f"all {done} steps"


def _evaluate_parser(sub) -> None:
    from spanqa.config import ReaderConfig

    p = sub.add_parser("evaluate", help="score predictions against gold data (DATA PREDICTIONS), a reader on many "
                                        "sets in and out of domain (--model RUN DATA...), or a reader asking a "
                                        "collection (--index)")
    p.add_argument("sources", nargs="+", metavar="DATA",
                   help="gold data (SQuAD JSON, MRQA jsonl, JSONL rows, .gz ok, a dataset folder or hub name), then "
                        "the predictions JSON {id: answer text} (\"\" means no answer); with --model: one or more "
                        "in-domain sets")
    p.add_argument("--out-of-domain", nargs="+", metavar="DATA",
                   help="with --model: sets out of the training domain (the report's Test columns)")
    p.add_argument("--output-dir", help="with --model: where spanqa_scores.json and eval_sets.md go (default: the "
                                        "reader folder)")
    p.add_argument("--index", help="open-domain: ask each question of this `spanqa index` folder (with --model); "
                                   "prints recall@1/5/20, EM/F1 and questions/s per retriever")
    p.add_argument("--model", help="the reader: predict and score each DATA (or, with --index, ask the collection)")
    p.add_argument("--retriever", default="all", choices=["all", "bm25", "dense", "hybrid"],
                   help="with --index: which retrievers to score (default: all the index has)")
    p.add_argument("--retrieve", type=int, default=RETRIEVE_DEFAULT,
                   help=f"with --index: passages read per question (default: {RETRIEVE_DEFAULT})")
    p.add_argument("--max-samples", type=int, default=0,
                   help="with --model: only the first N questions of each set (0 = all)")
    add_dataclass_args(p, ReaderConfig)
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
    c = data_sub.add_parser("contexts", help="write the distinct contexts of QA data as a pretraining corpus")
    c.add_argument("data", help="any source `spanqa evaluate` reads")
    c.add_argument("--output", required=True, help="text file: one sentence per line, a blank line between contexts")
    c.add_argument("--split", default="train", help="split of a hub or saved dataset (default: train)")
    c.set_defaults(func=cmd_data_contexts)


# Training subcommands: {subcommand: (module, settings class, help)}. The settings class lists the config
# dataclasses (its fields become the flags); the module's `build(settings, run, command)` makes the `Task`
# that the one engine (`spanqa.train.engine.fit`) runs.
TASKS = {
    "train": ("spanqa.tasks.reader_task", "ReaderSettings", "fine-tune an encoder into a reader (flags override --config)"),
    "distill": ("spanqa.tasks.reader_task", "DistillSettings", "distil a teacher reader into a smaller student"),
    "classify": ("spanqa.tasks.classify", "ClassifySettings",
                 "fine-tune a sentence (pair) classifier (alias: train --task classification)"),
    "pretrain": ("spanqa.tasks.pretrain", "PretrainSettings",
                 "pretrain an encoder: masked LM (+ next-sentence prediction), LAMB, phases"),
}


def _task(name: str):
    """(settings class, build) of a training subcommand."""
    import importlib

    return _settings_class(name), importlib.import_module(TASKS[name][0]).build


def _settings_class(name: str):
    """A training subcommand's settings class, from the torch-free `spanqa.tasks.settings` (fast --help)."""
    from spanqa.tasks import settings

    return getattr(settings, TASKS[name][1])


def cmd_task(args: argparse.Namespace) -> int:
    """`train`, `distill`, `classify`, `pretrain`: recipe + flags -> settings -> the task on the engine."""
    from spanqa.models.hub import resolve_model_path

    settings_cls, build = _task(args.command)
    recipe = settings_cls.load_recipe(args.config) if args.config else {}
    flags = {k: v for k, v in vars(args).items() if k not in ("config", "func", "command", "verbose")}
    settings = settings_cls.resolve(recipe, flags)
    if getattr(settings, "recurrent", None) is None:
        resolve_model_path(settings.run.model)  # a name offline cannot have fails now, before any work

    from spanqa.train.engine import run_task

    results = run_task(settings, build, "spanqa " + " ".join(sys.argv[1:]))
    if results:
        print(json.dumps(results))
    run = settings.run
    if results and run.push_to_hub and int(os.environ.get("RANK", "0")) == 0:  # under DDP only the main process
        from spanqa.commands.push import push_run

        url = push_run(run.output_dir, run.push_to_hub, run.hub_private, run.hub_revision)
        print(f"spanqa: pushed {run.output_dir} to {url}", file=sys.stderr)
    return 0


def cmd_push(args: argparse.Namespace) -> int:
    from spanqa.commands.push import push_run

    url = push_run(args.run_dir, args.repo_id, args.hub_private, args.hub_revision, args.include_checkpoints)
    print(f"spanqa: pushed {args.run_dir} to {url}", file=sys.stderr)
    return 0


def _push_parser(sub) -> None:
    p = sub.add_parser("push", help="upload a finished run's model folder (card, results, curves) to the hub")
    p.add_argument("run_dir", help="a folder written by spanqa train, distill, classify or pretrain")
    p.add_argument("repo_id", help="hub repo, ORG/NAME (made if missing)")
    p.add_argument("--hub-private", action="store_true", help="make the repo private")
    p.add_argument("--hub-revision", default="", help="push to this branch")
    p.add_argument("--include-checkpoints", action="store_true",
                   help="also send checkpoints, optimizer state and tracker logs (default: the final model only)")
    p.set_defaults(func=cmd_push)


def _task_parser(name: str):
    def add(sub) -> None:
        settings_cls = _settings_class(name)
        p = sub.add_parser(name, help=TASKS[name][2])
        p.add_argument("--config", help=f"YAML recipe: a flat mapping of the settings below (command: {name})")
        if name == "train":  # read by task_aliases before parsing; here for --help
            p.add_argument("--task", help="qa (default) or classification (the same as `spanqa classify`)")
        for cls in settings_cls.config_classes().values():
            add_dataclass_args(p, cls, default_none=True)
        p.set_defaults(func=cmd_task)
    return add


def task_aliases(argv: list[str]) -> list[str]:
    """`train --task classification ...` -> `classify ...`; `train --task qa` -> `train`.

    Raises:
        SpanqaError: another --task value.
    """
    if not argv or argv[0] != "train":
        return argv
    for i, arg in enumerate(argv):
        if arg.startswith("--task="):
            value, rest = arg.partition("=")[2], argv[1:i] + argv[i + 1:]
        elif arg == "--task" and i + 1 < len(argv):
            value, rest = argv[i + 1], argv[1:i] + argv[i + 2:]
        else:
            continue
        if value == "classification":
            return ["classify", *rest]
        if value == "qa":
            return ["train", *rest]
        raise SpanqaError(f"--task {value}: expected qa (a reader) or classification (same as `spanqa classify`).")
    return argv


def _load_reader(args: argparse.Namespace):
    from spanqa.reader import Reader, ReaderConfig

    return Reader.load(args.model, from_args(ReaderConfig, args))


def cmd_predict(args: argparse.Namespace) -> int:
    from pathlib import Path

    from spanqa.commands.predict import Shard, barrier, finish, predict_stream
    from spanqa.data.stream import open_stream

    stream = open_stream(args.data, split=args.split)
    shard = Shard.from_env()
    if shard.world > 1 and not args.device:
        import torch

        if torch.cuda.is_available():
            args.device = f"cuda:{os.environ.get('LOCAL_RANK', shard.rank)}"
    reader = _load_reader(args)
    output = Path(args.output)
    run = predict_stream(reader, stream, output, resume=args.resume, nbest=bool(args.nbest_out),
                         max_samples=args.max_samples, progress=not args.json, shard=shard)
    barrier(shard)
    if shard.rank != 0:
        return 0
    scores = finish(output, shard, Path(args.na_probs_out) if args.na_probs_out else None,
                    Path(args.nbest_out) if args.nbest_out else None, run.gold, reader.allow_null)
    resumed = f" ({run.resumed} answered before, kept)" if run.resumed else ""
    shards = f" on {shard.world} processes" if shard.world > 1 else ""
    print(f"{run.questions} questions{resumed} ({run.windows} windows) in {run.seconds:.1f} s{shards}: "
          f"{run.questions_per_second:.1f} questions/s, {reader.runs_on}; wrote {args.output} (answers as they "
          f"came: {Path(run.answers_file).name if shard.world == 1 else output.stem + '.answers.jsonl'})",
          file=sys.stderr)
    if scores is not None:
        print(json.dumps(scores) if args.json else format_scores(scores, run.gold["scoring"], args.data))
    return 0


def cmd_ask(args: argparse.Namespace) -> int:
    from pathlib import Path

    from spanqa.files import read_text
    from spanqa.display import answers_table, highlight

    if args.index:
        return _ask_index(args)
    if (args.context is None) == (args.context_file is None):
        raise SpanqaError("give the passage with exactly one of --context TEXT or --context-file FILE "
                          "(or ask a collection with --index INDEX).")
    context = args.context if args.context is not None else read_text(Path(args.context_file))
    if not context.strip() or not args.question.strip():
        raise SpanqaError("the question and the context must not be empty.")
    reader = _load_reader(args)
    answers = reader.answer(args.question, context, top_k=args.top_k)
    print(f"spanqa: answered by {reader.name} ({reader.runs_on})", file=sys.stderr)
    print(answers_table(answers))
    best = answers[0]
    print()
    print(highlight(context, best.start, best.end, color=sys.stdout.isatty() and not args.no_color))
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    import signal

    import uvicorn

    from spanqa.server.app import ServeConfig, create_app

    from spanqa.server.app import LOOPBACK_NAMES
    from spanqa.server.guard import KEY_ENV, guarded_protocol, read_api_key

    config = from_args(ServeConfig, args)
    key = read_api_key(config.api_key_file)
    reader = _load_reader(args)
    app = create_app(reader, config, args.index, api_key=key)
    what = f" and the collection {args.index}" if args.index else ""
    locked = " with an API key" if key else ""
    print(f"spanqa: serving {args.model}{what} on http://{config.host}:{config.port}{locked} (docs at /docs)",
          file=sys.stderr)
    if not key and config.host not in LOOPBACK_NAMES:
        logging.getLogger("spanqa.server").warning("%s is not loopback and no key is set: anyone who can reach port %d can run the model (and read "
                    "the collection). Set one with --api-key-file FILE or %s.", config.host, config.port, KEY_ENV)
    # uvicorn drains in-flight requests on SIGTERM, then raises the signal again for the previous handler:
    # with this one, that ends the process with status 0 (a finished shutdown) instead of "killed by SIGTERM".
    signal.signal(signal.SIGTERM, lambda *_: None)
    # the work limit is the app's (`Door`: probes and idle sockets never count), not uvicorn's connection count
    uvicorn.run(app, host=config.host, port=config.port, log_level="warning", server_header=False,
                http=guarded_protocol(config.header_timeout, config.max_connections), limit_concurrency=None,
                timeout_keep_alive=config.timeout_keep_alive,
                timeout_graceful_shutdown=config.timeout_graceful_shutdown)
    return 0


def _reader_args(p) -> None:
    from spanqa.config import ReaderConfig

    p.add_argument("--model", required=True, help="a reader folder from `spanqa train`, a hub QA model or an alias")
    add_dataclass_args(p, ReaderConfig)


def _predict_parser(sub) -> None:
    p = sub.add_parser("predict", help="answer every question of a dataset; write official-format files")
    p.add_argument("data", help="any source `spanqa evaluate` reads")
    p.add_argument("--output", required=True, help="predictions JSON {id: answer}")
    p.add_argument("--na-probs-out", help="also write {id: no-answer probability} (for evaluate --na-probs)")
    p.add_argument("--nbest-out", help="also write {id: [n-best spans]}")
    p.add_argument("--split", default="validation", help="split of a hub or saved dataset")
    p.add_argument("--max-samples", type=int, default=0, help="only the first N questions (0 = all)")
    p.add_argument("--json", action="store_true", help="print the scores as one JSON object")
    p.add_argument("--resume", action="store_true", help="continue a run that stopped, from its answers file "
                   "(OUTPUT's stem + .answers.jsonl): at most the last chunk of 256 questions is answered again")
    _reader_args(p)
    p.set_defaults(func=cmd_predict)


def _ask_index(args: argparse.Namespace) -> int:
    from spanqa.commands.indexing import ask_collection

    if args.context is not None or args.context_file is not None:
        raise SpanqaError("--index asks the collection: leave out --context and --context-file.")
    if not args.question.strip():
        raise SpanqaError("the question must not be empty.")
    reader = _load_reader(args)
    print(f"spanqa: answered by {reader.name} ({reader.runs_on})", file=sys.stderr)
    return ask_collection(reader, args.index, args.question, args.top_k, args.retrieve, args.retriever,
                          color=sys.stdout.isatty() and not args.no_color)


def _ask_parser(sub) -> None:
    p = sub.add_parser("ask", help="answer one question about a passage, or about a collection (--index)")
    p.add_argument("--question", required=True, help="the question")
    p.add_argument("--context", help="the passage")
    p.add_argument("--context-file", help="a file holding the passage")
    p.add_argument("--index", help="ask a collection instead: an index folder from `spanqa index`")
    p.add_argument("--retrieve", type=int, default=RETRIEVE_DEFAULT,
                   help=f"with --index: passages the reader reads (default: {RETRIEVE_DEFAULT})")
    p.add_argument("--retriever", default="auto", choices=["auto", "bm25", "dense", "hybrid"],
                   help="with --index: how passages are found (default: the index's own)")
    p.add_argument("--top-k", type=int, default=3, help="answers to show (default: 3)")
    p.add_argument("--no-color", action="store_true", help="mark the answer with [[ ]] instead of colour")
    _reader_args(p)
    p.set_defaults(func=cmd_ask)


def cmd_calibrate(args: argparse.Namespace) -> int:
    from spanqa.commands.calibrate import calibrate

    reader = _load_reader(args)
    cal, folder = calibrate(reader, args.model, args.data, args.output, args.max_samples)
    print(f"spanqa: calibrated {args.model} on {cal.questions} questions of {args.data}: p = sigmoid("
          f"{cal.slope:.3f} * logit(raw) + {cal.null_weight:.3f} * (score - null) + {cal.bias:.3f})\n"
          f"  expected calibration error (15 bins, held-out half): {cal.ece_before:.4f} -> {cal.ece_after:.4f}\n"
          f"  answers below probability {cal.abstain_below:.3f} are withheld from collections\n"
          f"  written to {folder}")
    return 0


def _calibrate_parser(sub) -> None:
    p = sub.add_parser("calibrate", help="make a reader's answer probabilities mean what they say (Platt scaling "
                                         "fitted on held-out questions, stored in the reader folder)")
    p.add_argument("data", help="held-out questions with gold answers: any source `spanqa evaluate` reads")
    p.add_argument("--output", help="write a calibrated copy here (needed for hub models and aliases); default: "
                                    "update the reader folder in place")
    p.add_argument("--max-samples", type=int, default=0, help="only the first N questions (0 = all)")
    _reader_args(p)
    p.set_defaults(func=cmd_calibrate)


def cmd_index(args: argparse.Namespace) -> int:
    from spanqa.commands.indexing import IndexSettings, run_index

    if bool(args.sources) == bool(args.delete):
        raise SpanqaError("give SOURCES to index (or to --add), or --delete ID ... to remove documents, not both.")
    settings = IndexSettings(args.retriever, args.reader, args.passage_tokens, args.overlap_tokens, args.encoder,
                             args.vector_dtype, args.ann)
    return run_index(args.sources, args.output, args.add, args.delete or [], settings)


def _index_parser(sub) -> None:
    p = sub.add_parser("index", help="index a document collection (txt, md, html, pdf, JSONL, QA data) for "
                                     "`spanqa ask --index` and `spanqa serve --index`")
    p.add_argument("sources", nargs="*", metavar="SOURCE", help="files, folders (searched recursively), QA data")
    p.add_argument("--output", required=True, help="the index folder (made; with --add or --delete: changed)")
    p.add_argument("--add", action="store_true", help="add SOURCES to the existing index (same ids: replaced)")
    p.add_argument("--delete", nargs="+", metavar="ID", help="remove these documents from the existing index")
    p.add_argument("--retriever", default="hybrid", choices=["bm25", "dense", "hybrid"],
                   help="the default search; dense and hybrid also store passage vectors (default: hybrid)")
    p.add_argument("--reader", default="",
                   help="the reader the passages are for: its tokenizer and window size the passages (default: "
                        "minilm-l6's tokenizer, 317 tokens: a 384-token window less a 64-token question)")
    p.add_argument("--passage-tokens", type=int, default=0, help="most tokens in a passage (default: from --reader)")
    p.add_argument("--overlap-tokens", type=int, default=64,
                   help="tokens a passage may repeat from the one before, whole paragraphs only (default: 64)")
    p.add_argument("--encoder", default="minilm-l6", help="sentence encoder of the dense vectors (default: minilm-l6)")
    from spanqa.artifacts import ANN_MODES, VECTOR_DTYPES

    p.add_argument("--vector-dtype", default="float16", choices=VECTOR_DTYPES,
                   help="how vectors are stored: int8 halves their disk and memory (default: float16)")
    p.add_argument("--ann", default="auto", choices=ANN_MODES,
                   help="keep an HNSW graph (usearch) and search it, approximately: auto past 50,000 passages "
                        "(measured), on, or off (always exact)")
    p.set_defaults(func=cmd_index)


def _serve_parser(sub) -> None:
    from spanqa.server.serve_config import ServeConfig

    p = sub.add_parser("serve", help="HTTP API and web page over a reader (and a collection, with --index)")
    _reader_args(p)
    p.add_argument("--index", help="also answer questions over this `spanqa index` folder (POST /v1/ask, and a "
                                   "search box on the page)")
    add_dataclass_args(p, ServeConfig)
    p.set_defaults(func=cmd_serve)


def cmd_export(args: argparse.Namespace) -> int:
    from spanqa.answering.backends import choose
    from spanqa.commands.export import compare, export_reader, measure_backends
    from spanqa.reader import ReaderConfig

    from spanqa.data import check_source

    calibration = args.calibration_data
    if calibration == "sample":
        calibration = asset("squad-v1.1-train-sample.json.gz")
    data = asset("squad-v1.1-dev-sample.json.gz") if args.eval_data == "sample" else args.eval_data
    for source in (calibration, data if data != "none" else None):
        if source:
            check_source(source)  # before the export, which takes minutes
    out = export_reader(args.model, args.format, args.quantize, args.output, calibration)
    what = {"onnx": "an ONNX Runtime", "openvino": "an OpenVINO", "torch": "a torch", "all": "a"}[args.format]
    kind = "reader with every backend (torch, ONNX Runtime, OpenVINO)" if args.format == "all" else \
        f"reader ({'int8' if args.quantize == 'int8' else 'fp32'})"
    print(f"spanqa: wrote {what} {kind} to {out}", file=sys.stderr)
    if args.eval_data == "none":
        if args.format == "all":
            print("spanqa: not measured (--eval-data none): --backend auto will run its torch weights",
                  file=sys.stderr)
        return 0
    config = from_args(ReaderConfig, args)
    if args.format == "all":
        table = measure_backends(str(out), data, args.max_eval_samples, config,
                                 progress=lambda line: print(f"spanqa: {line}", file=sys.stderr))
        print(f"spanqa: --backend auto chooses {choose(table)[1]}", file=sys.stderr)
        print(json.dumps(table.to_dict()))
        return 0
    report = compare(args.model, str(out), data, args.max_eval_samples, config)
    o, e = report["original_fp32"], report["exported"]
    print(f"on {report['questions']} questions: original EM {o['exact']:.2f} F1 {o['f1']:.2f} "
          f"({o['questions_per_second']:.1f} q/s); exported EM {e['exact']:.2f} F1 {e['f1']:.2f} "
          f"({e['questions_per_second']:.1f} q/s); F1 change {report['f1_change']:+.2f}")
    print(json.dumps(report))
    return 0


def _export_parser(sub) -> None:
    p = sub.add_parser("export", help="export a reader to ONNX Runtime or OpenVINO (optionally int8), or all "
                                      "backends measured for --backend auto")
    _reader_args(p)
    p.add_argument("--format", default="onnx",
                   help="onnx (ONNX Runtime, fused graph), openvino, torch (dynamic int8 at load), or all (every "
                        "backend in one folder, each measured against fp32 torch; --backend auto picks from them)")
    p.add_argument("--quantize", default="none", help="none or int8 (onnx: dynamic int8; openvino: int8 matrix "
                                                      "multiplications, calibrated)")
    p.add_argument("--calibration-data", default="sample",
                   help="questions whose first 300 windows calibrate OpenVINO int8: 'sample' (the bundled SQuAD train "
                        "sample) or a data source like the reader's own")
    p.add_argument("--output", required=True, help="a new folder for the exported reader")
    p.add_argument("--eval-data", default="sample",
                   help="questions to measure the EM/F1 change on: 'sample' (the bundled dev sample), a data source, or none")
    p.add_argument("--max-eval-samples", type=int, default=300, help="questions used for that (default: 300)")
    p.set_defaults(func=cmd_export)


def cmd_fetch(args: argparse.Namespace) -> int:
    from pathlib import Path

    from spanqa.commands import fetch as bundle

    say = lambda line: print(f"spanqa: {line}", file=sys.stderr)  # noqa: E731
    if args.verify:
        problems = bundle.verify(Path(args.verify), progress=say)
        if problems:
            raise SpanqaError(f"{args.verify}: {len(problems)} problem(s): " + "; ".join(p.rstrip(".") for p in problems)
                              + ". Fetch those entries again where there is network.")
        say(f"{args.verify}: every entry is complete and loads with the hub switched off")
        return 0
    if not args.output:
        raise SpanqaError("give --output BUNDLE (a folder to fetch into) or --verify BUNDLE.")
    models, datasets, vectors = list(args.model), list(args.dataset), list(args.embeddings)
    for recipe in args.recipe:
        from spanqa.config import read_recipe

        m, d, v = bundle.recipe_names(read_recipe(recipe))
        models, datasets, vectors = models + m, datasets + d, vectors + v
    if not (models or datasets or vectors):
        raise SpanqaError("nothing to fetch: give --model, --dataset, --embeddings or --recipe.")
    manifest = bundle.fetch(Path(args.output), models, datasets, vectors, progress=say)
    say(f"{args.output}: {len(manifest.entries)} entries; check with: spanqa fetch --verify {args.output}; use with "
        f"--bundle {args.output} (or SPANQA_BUNDLE={args.output})")
    return 0


def _fetch_parser(sub) -> None:
    p = sub.add_parser("fetch", help="bundle models, datasets and vectors for machines without network "
                                     "(or --verify a bundle)")
    p.add_argument("--output", help="the bundle folder to fetch into (made, or added to)")
    p.add_argument("--model", action="append", default=[],
                   help="a hub model (NAME or NAME@REVISION), alias or local folder; repeatable")
    p.add_argument("--dataset", action="append", default=[],
                   help="a hub dataset (NAME, NAME#CONFIG, NAME:SPLIT), a save_to_disk folder or a file; repeatable")
    p.add_argument("--embeddings", action="append", default=[], help="a vectors alias or file; repeatable")
    p.add_argument("--recipe", action="append", default=[], help="fetch whatever this recipe names; repeatable")
    p.add_argument("--verify", metavar="BUNDLE",
                   help="check a bundle: every file present and intact, everything loads with the hub off")
    p.set_defaults(func=cmd_fetch)


def cmd_slurm(args: argparse.Namespace) -> int:
    from spanqa.commands.slurm import SlurmConfig, write_job

    path, job = write_job(from_args(SlurmConfig, args), args.spanqa_command)
    print(f"spanqa: wrote {path}" + (f"; submitted as job {job}" if job else f"; submit it with: sbatch {path}"),
          file=sys.stderr)
    if job:
        print(job)
    return 0


def _slurm_parser(sub) -> None:
    from spanqa.commands.slurm import SlurmConfig

    p = sub.add_parser(
        "slurm", help="write (and --submit) an sbatch script that runs a spanqa command on an offline cluster, "
                      "checkpoints before pre-emption, requeues and resumes",
        usage="spanqa slurm [options] -- spanqa train --config RECIPE ...")
    add_dataclass_args(p, SlurmConfig)
    p.add_argument("spanqa_command", nargs=argparse.REMAINDER, help="the spanqa command to run, after --")
    p.set_defaults(func=cmd_slurm)


def cmd_report(args: argparse.Namespace) -> int:
    from spanqa.commands.report import write_report

    table, written = write_report(args.runs, args.output_dir)
    print(table, end="")
    print(f"spanqa: wrote {', '.join(str(p) for p in written)}", file=sys.stderr)
    return 0


def _report_parser(sub) -> None:
    p = sub.add_parser("report", help="compare finished runs: parameters, training and eval time, EM, F1 "
                                      "(markdown, CSV and a plot)")
    p.add_argument("runs", nargs="+", metavar="RUN_DIR", help="output folders of finished training runs")
    p.add_argument("--output-dir", default="report", help="where report.md, report.csv and report.png go "
                                                          "(default: report)")
    p.set_defaults(func=cmd_report)


def _quickstart_parser(sub) -> None:
    p = sub.add_parser("quickstart", help="the main job on the bundled defaults: train, evaluate, answer")
    p.add_argument("--output-dir", help="where the run goes (default: runs/quickstart)")
    p.add_argument("--max-time", type=float, help=f"training time budget in seconds (default: {QUICKSTART['max_time']:.0f}; "
                                                  "0 = train the full 2 epochs)")
    p.set_defaults(func=cmd_quickstart)


SUBCOMMANDS: list[Callable] = [
    _quickstart_parser, *(_task_parser(name) for name in TASKS), _evaluate_parser, _predict_parser, _ask_parser,
    _index_parser, _calibrate_parser, _serve_parser, _export_parser, _data_parser, _report_parser, _fetch_parser, _slurm_parser, _push_parser,
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="spanqa", description="Extractive question answering toolkit.")
    parser.add_argument("--verbose", action="store_true", help="log more")
    sub = parser.add_subparsers(dest="command", required=True)
    for add in SUBCOMMANDS:
        add(sub)
    for command in sub.choices.values():  # every command runs from a bundle, and offline
        if "--bundle" in command._option_string_actions:  # `slurm` has its own: the job's bundle
            continue
        command.add_argument("--bundle", default=None,
                             help="resolve hub names to this `spanqa fetch` bundle's copies (default: $SPANQA_BUNDLE)")
        command.add_argument("--offline", action="store_true",
                             help="never reach for the network (as HF_HUB_OFFLINE=1): a name that is not local, "
                                  "bundled or cached fails at once")
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


def use_bundle(args: argparse.Namespace) -> None:
    """--bundle and --offline act through the environment, so worker processes (DDP) inherit them."""
    from spanqa.bundle import go_offline

    if getattr(args, "bundle", None):
        os.environ["SPANQA_BUNDLE"] = args.bundle
    if getattr(args, "offline", False):
        go_offline()


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
    try:
        argv = task_aliases(list(sys.argv[1:] if argv is None else argv))
    except SpanqaError as exc:
        print(f"spanqa: error: {exc}", file=sys.stderr)
        return 2
    args = build_parser().parse_args(argv)
    setup_logging(args.verbose)
    use_bundle(args)
    keep_freed_memory()
    try:
        return args.func(args)
    except SpanqaError as exc:
        print(f"spanqa: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        from spanqa.files import DISK_FULL, write_failed

        if exc.errno not in DISK_FULL:
            raise
        # every command writes through a temporary file or folder that its failure removes
        print(f"spanqa: error: {write_failed(exc, exc.filename or 'an output file')}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("spanqa: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
