"""Training throughput: spanqa's loop against transformers' Trainer set up as run_qa.py sets it up.

Same ~1,000 SQuAD v1.1 training windows, all-MiniLM-L6-v2 (minilm-l6), batch 8, one epoch, AdamW.
The Trainer gets windows padded to max_seq_length 384 (as run_qa does), once in fp32 and once with
bf16=True. spanqa uses its defaults (bf16 autocast where the CPU has bf16 units, dynamic padding,
length-grouped batches, its CPU dropout kernels). `ratio` = spanqa / the faster Trainer.
Also prints model FLOP utilisation against the measured bf16 and fp32 matmul rates.
Usage: python bench/train_throughput.py [--windows 1000] [--batch-size 8]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time

import torch
from _common import SQUAD_V1_TRAIN, report, spanqa_train
from _flops import encoder_train_flops, matmul_rate, nonembedding_params
from _runqa import reference_features, runqa_trainer, train_columns

from spanqa.config import DataConfig
from spanqa.data import load_examples
from spanqa.features import build_features
from spanqa.models.hub import load_tokenizer, resolve_model_path
from spanqa.models.reader_model import load_qa_model


def questions_for(examples, tokenizer, n_windows: int) -> int:
    """How many leading questions give at least `n_windows` windows at 384/128."""
    feats = build_features(examples[: n_windows + 200], tokenizer, DataConfig())
    return int(feats.example_index[n_windows - 1]) + 1


def run_spanqa(n_questions: int, batch: int, out: str) -> dict:
    return spanqa_train(max_train_samples=n_questions, output_dir=out, per_device_train_batch_size=batch,
                        num_train_epochs=1.0, learning_rate=3e-5, logging_steps=25)


def run_trainer(dataset, batch: int, bf16: bool, out: str) -> dict:
    t0 = time.perf_counter()
    trainer = runqa_trainer(resolve_model_path("minilm-l6"), train_columns(dataset), out, batch, bf16)
    metrics = trainer.train().metrics
    metrics["wall_s"] = time.perf_counter() - t0
    return metrics


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--windows", type=int, default=1000)
    parser.add_argument("--batch-size", type=int, default=8)
    args = parser.parse_args()
    if not SQUAD_V1_TRAIN.exists():
        print(f"needs {SQUAD_V1_TRAIN}", file=sys.stderr)
        return 1
    tokenizer = load_tokenizer("minilm-l6")
    examples = load_examples(SQUAD_V1_TRAIN, split="train").examples
    n_q = questions_for(examples, tokenizer, args.windows)
    feats = build_features(examples[:n_q], tokenizer, DataConfig())
    ref = reference_features(examples[:n_q], tokenizer, DataConfig())
    print(f"{n_q} questions -> {len(feats)} windows (reference {len(ref)}); mean {feats.lengths.mean():.0f} "
          f"real tokens per window, padded to 384 for the Trainer", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        ours = run_spanqa(n_q, args.batch_size, f"{tmp}/spanqa")
        fp32 = run_trainer(ref, args.batch_size, False, f"{tmp}/fp32")
        bf16 = run_trainer(ref, args.batch_size, True, f"{tmp}/bf16")
    rates = {"bf16": matmul_rate(torch.bfloat16), "fp32": matmul_rate(torch.float32)}
    model = load_qa_model("minilm-l6")
    flops = encoder_train_flops(model.config, nonembedding_params(model), feats.lengths.tolist())
    rows = {"spanqa": ours["train_samples_per_second"], "trainer_fp32": fp32["train_samples_per_second"],
            "trainer_bf16": bf16["train_samples_per_second"]}
    runtimes = {"spanqa": ours["train_runtime"], "trainer_fp32": fp32["train_runtime"],
                "trainer_bf16": bf16["train_runtime"]}
    print(f"matmul peak measured here: bf16 {rates['bf16']:.0f} GFLOP/s, fp32 {rates['fp32']:.0f} GFLOP/s")
    mfu = {}
    for name, sps in rows.items():
        achieved = flops / runtimes[name] / 1e9
        mfu[name] = {"useful_gflops": achieved, "mfu_vs_bf16": achieved / rates["bf16"], "mfu_vs_fp32": achieved / rates["fp32"]}
        print(f"{name:>13}: {sps:6.2f} windows/s  ({runtimes[name]:.0f} s)  useful {achieved:.0f} GFLOP/s = "
              f"{mfu[name]['mfu_vs_bf16']:.1%} of bf16 peak, {mfu[name]['mfu_vs_fp32']:.1%} of fp32 peak", flush=True)
    best_ref = max(rows["trainer_fp32"], rows["trainer_bf16"])
    ratio = rows["spanqa"] / best_ref
    print(f"ratio spanqa / faster Trainer: {ratio:.2f}")
    report({"benchmark": "train_throughput", "questions": n_q, "windows": len(feats), "batch_size": args.batch_size,
            "samples_per_second": rows, "train_runtime_s": runtimes,
            "wall_s": {"spanqa": ours["wall_s"], "trainer_fp32": fp32["wall_s"], "trainer_bf16": bf16["wall_s"]},
            "matmul_gflops": rates, "mfu": mfu, "spanqa_train_loss": ours["train_loss"],
            "trainer_train_loss": {"fp32": fp32["train_loss"], "bf16": bf16["train_loss"]}, "ratio": ratio})
    return 0


if __name__ == "__main__":
    sys.exit(main())
