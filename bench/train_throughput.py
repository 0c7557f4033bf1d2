"""Training throughput: spanqa's loop against transformers' Trainer set up as run_qa.py sets it up.

Same SQuAD v1.1 training windows (500 by default), all-MiniLM-L6-v2 (minilm-l6), batch 8, one epoch, AdamW.
The Trainer gets windows padded to max_seq_length 384 (as run_qa does), in fp32 and, where the CPU has
native bf16 units (AMX/AVX512-BF16), again with bf16=True; without them bf16 is far slower than fp32, so
run_qa's best setting there is fp32 alone and the bf16 run is skipped. spanqa uses its defaults (bf16
autocast where the CPU has bf16 units, dynamic padding, length-grouped batches, its CPU dropout kernels).
`ratio` = spanqa / the faster Trainer run. Also prints model FLOP utilisation against the measured matmul
rates. Takes ~6 minutes on 2 AVX2 cores at the default size.
Usage: python bench/train_throughput.py [--windows 500] [--batch-size 8]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time

from _common import SQUAD_V1_TRAIN, cpu_banner, report, spanqa_train
from _flops import encoder_train_flops, matmul_rates, nonembedding_params
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
    parser.add_argument("--windows", type=int, default=500)
    parser.add_argument("--batch-size", type=int, default=8)
    args = parser.parse_args()
    cpu = cpu_banner()
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
        runs = {"spanqa": run_spanqa(n_q, args.batch_size, f"{tmp}/spanqa"),
                "trainer_fp32": run_trainer(ref, args.batch_size, False, f"{tmp}/fp32")}
        if cpu["native_bf16"]:
            runs["trainer_bf16"] = run_trainer(ref, args.batch_size, True, f"{tmp}/bf16")
        else:
            print("Trainer bf16=True skipped: no native bf16 units here, where bf16 runs far slower than fp32, "
                  "so run_qa's best setting on this CPU is fp32", flush=True)
    rates = matmul_rates(cpu["native_bf16"])
    model = load_qa_model("minilm-l6")
    flops = encoder_train_flops(model.config, nonembedding_params(model), feats.lengths.tolist())
    rows = {name: r["train_samples_per_second"] for name, r in runs.items()}
    runtimes = {name: r["train_runtime"] for name, r in runs.items()}
    mfu = _mfu(flops, runtimes, rows, rates)
    best_ref = max((name for name in rows if name != "spanqa"), key=rows.get)
    ratio = rows["spanqa"] / rows[best_ref]
    print(f"ratio spanqa / faster Trainer ({best_ref}): {ratio:.2f}")
    report({"benchmark": "train_throughput", "questions": n_q, "windows": len(feats), "batch_size": args.batch_size,
            "samples_per_second": rows, "train_runtime_s": runtimes,
            "wall_s": {name: r["wall_s"] for name, r in runs.items()}, "matmul_gflops": rates, "mfu": mfu,
            "train_loss": {name: r["train_loss"] for name, r in runs.items()},
            "trainer_bf16_skipped": not cpu["native_bf16"], "reference": best_ref, "ratio": ratio}, cpu)
    return 0


def _mfu(flops: float, runtimes: dict, rows: dict, rates: dict) -> dict:
    """Useful GFLOP/s of each run and its share of each measured matmul peak (bf16 only where measured)."""
    print("matmul peak measured here: " + ", ".join(f"{k} {v:.0f} GFLOP/s" for k, v in rates.items() if v))
    out = {}
    for name, sps in rows.items():
        achieved = flops / runtimes[name] / 1e9
        out[name] = {"useful_gflops": achieved, **{f"mfu_vs_{k}": achieved / v for k, v in rates.items() if v}}
        shares = ", ".join(f"{achieved / v:.1%} of {k} peak" for k, v in rates.items() if v)
        print(f"{name:>13}: {sps:6.2f} windows/s  ({runtimes[name]:.0f} s)  useful {achieved:.0f} GFLOP/s = {shares}",
              flush=True)
    return out


if __name__ == "__main__":
    sys.exit(main())
