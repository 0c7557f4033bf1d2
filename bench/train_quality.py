"""Training quality at the same budget: spanqa's loop against run_qa's Trainer setup.

Both fine-tune all-MiniLM-L6-v2 (minilm-l6) on the same first 400 SQuAD v1.1 training questions for one
epoch with the same hyperparameters and seed; both models are then scored the same way (spanqa's decoder
and official-equivalent metrics) on the first 500 SQuAD v1.1 dev questions. spanqa must not be worse
by more than 0.5 F1. Each side runs in what is fastest on this CPU: bf16 (spanqa's autocast, the Trainer's
bf16=True) where it has native bf16 units, else fp32. Takes ~9 minutes on 2 AVX2 cores at the default
size. At that budget (25 steps) F1 is far from converged and the gap is mostly seed noise: the 0.5 F1
bar is meant for --train-questions 4000 --dev-questions 1000 (~80 minutes on 2 AVX2 cores).
Usage: python bench/train_quality.py [--train-questions 400] [--dev-questions 500]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time

from _common import SQUAD_V1_DEV, SQUAD_V1_TRAIN, best_precision, cpu_banner, report, spanqa_train
from _runqa import reference_features, runqa_trainer, train_columns

from spanqa.config import DataConfig
from spanqa.data import load_examples
from spanqa.evaluation import evaluate
from spanqa.models.hub import load_tokenizer, resolve_model_path
from spanqa.reader import Reader

HPARAMS = {"learning_rate": 1e-4, "per_device_train_batch_size": 16, "num_train_epochs": 1.0, "seed": 42,
           "warmup_ratio": 0.1, "weight_decay": 0.01}


def score(model_dir: str, dev) -> dict:
    reader = Reader.load(model_dir, device="cpu", precision="fp32")
    preds = reader.predict(dev.examples)
    return evaluate(dev, {p.id: p.answer for p in preds})


def train_spanqa(n: int, out: str) -> float:
    return spanqa_train(max_train_samples=n, output_dir=out, **HPARAMS)["wall_s"]


def train_trainer(examples, tokenizer, out: str, bf16: bool) -> float:
    t0 = time.perf_counter()
    data = train_columns(reference_features(examples, tokenizer, DataConfig()))
    trainer = runqa_trainer(resolve_model_path("minilm-l6"), data, out, HPARAMS["per_device_train_batch_size"],
                            bf16=bf16, seed=HPARAMS["seed"], learning_rate=HPARAMS["learning_rate"],
                            epochs=HPARAMS["num_train_epochs"], warmup_ratio=HPARAMS["warmup_ratio"],
                            weight_decay=HPARAMS["weight_decay"])
    trainer.train()
    trainer.save_model(out)
    tokenizer.save_pretrained(out)
    return time.perf_counter() - t0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train-questions", type=int, default=400)
    parser.add_argument("--dev-questions", type=int, default=500)
    args = parser.parse_args()
    cpu = cpu_banner()
    reference = f"trainer_{best_precision(cpu)}"
    if not SQUAD_V1_TRAIN.exists():
        print(f"needs {SQUAD_V1_TRAIN}", file=sys.stderr)
        return 1
    tokenizer = load_tokenizer("minilm-l6")
    train_examples = load_examples(SQUAD_V1_TRAIN, split="train").examples[: args.train_questions]
    dev = load_examples(SQUAD_V1_DEV)
    dev = type(dev)(dev.examples[: args.dev_questions], dev.source, dev.format, dev.version)
    with tempfile.TemporaryDirectory() as tmp:
        t_ours = train_spanqa(args.train_questions, f"{tmp}/spanqa")
        ours = score(f"{tmp}/spanqa", dev)
        print(f"spanqa : EM {ours['exact']:.2f} F1 {ours['f1']:.2f}  (train {t_ours:.0f} s)", flush=True)
        t_ref = train_trainer(train_examples, tokenizer, f"{tmp}/trainer", bf16=cpu["native_bf16"])
        ref = score(f"{tmp}/trainer", dev)
        print(f"Trainer ({best_precision(cpu)}): EM {ref['exact']:.2f} F1 {ref['f1']:.2f}  (train {t_ref:.0f} s)",
              flush=True)
    diff = ours["f1"] - ref["f1"]
    print(f"F1 difference spanqa - Trainer: {diff:+.2f} (must be >= -0.5); speed ratio {t_ref / t_ours:.2f}")
    report({"benchmark": "train_quality", "train_questions": args.train_questions, "dev_questions": len(dev),
            "hparams": HPARAMS, "spanqa": {"exact": ours["exact"], "f1": ours["f1"], "train_s": t_ours},
            reference: {"exact": ref["exact"], "f1": ref["f1"], "train_s": t_ref}, "f1_difference": diff,
            "ratio": t_ref / t_ours}, cpu)
    return 0


if __name__ == "__main__":
    sys.exit(main())
