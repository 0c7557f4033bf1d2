"""Windowing throughput: spanqa's `build_features` against transformers' run_qa preprocessing.

The reference is run_qa.py's approach, written out here: `datasets.map(batched=True)` over question/context
pairs, the tokenizer's own overflow (truncation="only_second", stride=doc_stride), then a Python loop that
turns char offsets into start/end labels and blanks non-context offsets. Both produce the same windows
(checked below). Usage: python bench/windowing.py [--train-questions 10000]
"""

from __future__ import annotations

import argparse
import sys

import numpy as np
from _common import SQUAD_V1_DEV, SQUAD_V1_TRAIN, best_of, report

from spanqa.config import DataConfig
from spanqa.data import load_examples
from spanqa.features import build_features
from spanqa.models.hub import load_tokenizer


def reference_features(examples, tokenizer, config: DataConfig):
    """run_qa-style windows with `datasets.map`; returns the mapped dataset."""
    import datasets

    ds = datasets.Dataset.from_dict({
        "id": [e.id for e in examples],
        "question": [e.question.strip() for e in examples],
        "context": [e.context for e in examples],
        "answer_start": [e.answers[0].start if e.answers else -1 for e in examples],
        "answer_text": [e.answers[0].text if e.answers else "" for e in examples],
    })

    def prepare(batch):
        enc = tokenizer(
            batch["question"], batch["context"], truncation="only_second", max_length=config.max_seq_length,
            stride=config.doc_stride, return_overflowing_tokens=True, return_offsets_mapping=True,
            padding="max_length",
        )
        starts, ends, example_ids = [], [], []
        for i, offsets in enumerate(enc["offset_mapping"]):
            sample = enc["overflow_to_sample_mapping"][i]
            seq = enc.sequence_ids(i)
            ctx_lo = seq.index(1)
            ctx_hi = len(seq) - 1 - seq[::-1].index(1)
            a0 = batch["answer_start"][sample]
            a1 = a0 + len(batch["answer_text"][sample])
            if a0 < 0 or not (offsets[ctx_lo][0] <= a0 and offsets[ctx_hi][1] >= a1):
                starts.append(0)
                ends.append(0)
            else:
                s = ctx_lo
                while s <= ctx_hi and offsets[s][0] <= a0:
                    s += 1
                e = ctx_hi
                while e >= ctx_lo and offsets[e][1] >= a1:
                    e -= 1
                starts.append(s - 1)
                ends.append(e + 1)
            example_ids.append(batch["id"][sample])
            enc["offset_mapping"][i] = [o if seq[k] == 1 else None for k, o in enumerate(offsets)]
        enc["start_positions"], enc["end_positions"], enc["example_id"] = starts, ends, example_ids
        return enc

    return ds.map(prepare, batched=True, remove_columns=ds.column_names, load_from_cache_file=False,
                  keep_in_memory=True)


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
    parser.add_argument("--train-questions", type=int, default=10000)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    if not SQUAD_V1_DEV.exists():
        print(f"needs {SQUAD_V1_DEV}", file=sys.stderr)
        return 1
    tokenizer, config = load_tokenizer(args.model), DataConfig()
    dev = measure("v1.1 dev", load_examples(SQUAD_V1_DEV).examples, tokenizer, config, args.repeats)
    train_examples = load_examples(SQUAD_V1_TRAIN, split="train").examples[: args.train_questions]
    train = measure("v1.1 train", train_examples, tokenizer, config, args.repeats)
    ratio = min(dev["ratio"], train["ratio"])
    print(f"ratio (the lower of the two): {ratio:.2f}")
    report({"benchmark": "windowing", "model": args.model, "dev": dev, "train": train, "ratio": ratio})
    return 0


if __name__ == "__main__":
    sys.exit(main())
