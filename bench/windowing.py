"""Windowing throughput: spanqa's `build_features` against transformers' run_qa preprocessing.

The reference is run_qa.py's approach (bench/_runqa.py): `datasets.map(batched=True)` over question/context
pairs, the tokenizer's own overflow, then a Python loop from char offsets to start/end labels. Both produce
the same windows (checked below). Takes ~2-3 minutes on 2 AVX2 cores at the default sizes (all 10,570 dev
questions, 10,000 training questions, best of 2).
Usage: python bench/windowing.py [--dev-questions N] [--train-questions 10000] [--repeats 2]
"""

from __future__ import annotations

import argparse
import sys

import numpy as np
from _common import SQUAD_V1_DEV, SQUAD_V1_TRAIN, best_of, cpu_banner, report
from _runqa import reference_features

from spanqa.config import DataConfig
from spanqa.data import load_examples
from spanqa.features import build_features
from spanqa.models.hub import load_tokenizer


def measure(name, examples, tokenizer, config, repeats):
    t_ours, feats = best_of(lambda: build_features(examples, tokenizer, config), repeats)
    t_ref, ref = best_of(lambda: reference_features(examples, tokenizer, config), repeats)
    same = len(feats) == len(ref)
    ours_ps, ref_ps = len(feats) / t_ours, len(ref) / t_ref
    print(f"{name}: {len(examples)} questions -> {len(feats)} windows (reference {len(ref)}); "
          f"spanqa {ours_ps:,.0f} windows/s, run_qa-style datasets.map {ref_ps:,.0f} windows/s, "
          f"ratio {ours_ps / ref_ps:.2f}", flush=True)
    labelled = int(np.sum(feats.start_positions != feats.cls_index))
    agree = float(np.mean((feats.start_positions == np.asarray(ref["start_positions"]))
                          & (feats.end_positions == np.asarray(ref["end_positions"])))) if same else 0.0
    print(f"  start/end labels identical to the reference for {agree:.4%} of windows")
    return {"windows": len(feats), "same_window_count": same, "labelled_windows": labelled, "label_agreement": agree,
            "spanqa_windows_per_s": ours_ps, "reference_windows_per_s": ref_ps, "ratio": ours_ps / ref_ps}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="minilm-l6")
    parser.add_argument("--dev-questions", type=int, default=None, help="first N dev questions (default all)")
    parser.add_argument("--train-questions", type=int, default=10000)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    cpu = cpu_banner()
    if not SQUAD_V1_DEV.exists():
        print(f"needs {SQUAD_V1_DEV}", file=sys.stderr)
        return 1
    tokenizer, config = load_tokenizer(args.model), DataConfig()
    dev_examples = load_examples(SQUAD_V1_DEV).examples[: args.dev_questions]
    dev = measure("v1.1 dev", dev_examples, tokenizer, config, args.repeats)
    train_examples = load_examples(SQUAD_V1_TRAIN, split="train").examples[: args.train_questions]
    train = measure("v1.1 train", train_examples, tokenizer, config, args.repeats)
    ratio = min(dev["ratio"], train["ratio"])
    print(f"ratio (the lower of the two): {ratio:.2f}")
    report({"benchmark": "windowing", "model": args.model, "dev": dev, "train": train, "ratio": ratio}, cpu)
    return 0


if __name__ == "__main__":
    sys.exit(main())
