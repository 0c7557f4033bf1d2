"""Decoding speed: spanqa's vectorised n-best against plain per-window loops, on every dev window.

Seeded random logits for all SQuAD v1.1 and v2.0 dev windows (384/128, BERT uncased tokenizer).
- reference (same algorithm, plain loop): for each window, for each valid start, the best end in its
  band; the n best starts; their spans sorted; merged per question. Exact, like spanqa.
- run_qa style (for context): top-20 starts x top-20 ends per window, as transformers' run_qa does;
  faster than a full search but not exact.
`ratio` = reference time / spanqa time. Answers must be identical to the reference.
Takes ~1-2 minutes on 2 AVX2 cores with every dev question (the default).
Usage: python bench/decode.py [--questions N]  (the first N questions of each dev set; default all)
"""

from __future__ import annotations

import argparse
import sys

import numpy as np
from _common import SQUAD_V1_DEV, SQUAD_V2_DEV, best_of, cpu_banner, report

from spanqa.config import DataConfig, DecodeConfig
from spanqa.data import load_examples
from spanqa.decode import decode
from spanqa.features import build_features
from spanqa.models.hub import load_tokenizer


def valid_masks(batch, f):
    offsets = batch["offsets"][f]
    has_text = (offsets[:, 1] > offsets[:, 0]).tolist()
    start_ok = [h and o for h, o in zip(has_text, batch["is_max_context"][f].tolist())]
    end_ok = [h and c >= 0 for h, c in zip(has_text, offsets[:, 0].tolist())]
    return start_ok, end_ok


def reference_decode(start, end, batch, example_index, examples, config: DecodeConfig):
    """{id: answer text}, by the same exact algorithm as spanqa, one window at a time in plain Python."""
    k, a = config.n_best_size, config.max_answer_length
    per_example: dict[int, list] = {}
    for f in range(start.shape[0]):
        s, e = start[f].tolist(), end[f].tolist()
        start_ok, end_ok = valid_masks(batch, f)
        e_m = [x if ok else float("-inf") for x, ok in zip(e, end_ok)]
        best_from = [(s[i] + max(e_m[i : i + a]), i) for i in range(len(s)) if start_ok[i]]
        cands = []
        for _, i in sorted(best_from, key=lambda t: (-t[0], t[1]))[:k]:
            cands += [(s[i] + e_m[j], f, i, j) for j in range(i, min(i + a, len(s))) if end_ok[j]]
        per_example.setdefault(int(example_index[f]), []).extend(sorted(cands, key=lambda t: (-t[0], *t[1:]))[:k])
    return _answers(per_example, batch, examples)


def runqa_style_decode(start, end, batch, example_index, examples, config: DecodeConfig):
    """{id: answer text} with run_qa's heuristic: top-n starts x top-n ends of each window."""
    k, a = config.n_best_size, config.max_answer_length
    per_example: dict[int, list] = {}
    for f in range(start.shape[0]):
        start_ok, end_ok = valid_masks(batch, f)
        top_s = np.argsort(start[f])[-1 : -k - 1 : -1].tolist()
        top_e = np.argsort(end[f])[-1 : -k - 1 : -1].tolist()
        cands = [(float(start[f, i] + end[f, j]), f, i, j) for i in top_s for j in top_e
                 if start_ok[i] and end_ok[j] and i <= j < i + a]
        per_example.setdefault(int(example_index[f]), []).extend(cands)
    return _answers(per_example, batch, examples)


def _answers(per_example, batch, examples):
    out = {}
    for ex, cands in per_example.items():
        if not cands:
            out[examples[ex].id] = ""
            continue
        _, f, i, j = min(cands, key=lambda t: (-t[0], *t[1:]))
        out[examples[ex].id] = examples[ex].context[batch["offsets"][f, i, 0] : batch["offsets"][f, j, 1]]
    return out


def measure(path, tokenizer, config, questions: int | None):
    dataset = load_examples(path)
    dataset = dataset.head(questions)
    feats = build_features(dataset.examples, tokenizer, DataConfig())
    batch = feats.pad(np.arange(len(feats)), pad_id=0)
    rng = np.random.default_rng(1234)
    start = rng.standard_normal(batch["input_ids"].shape).astype(np.float32)
    end = rng.standard_normal(batch["input_ids"].shape).astype(np.float32)
    args = (start, end, batch, feats.example_index, dataset.examples)
    t_ours, preds = best_of(lambda: decode(*args, config, allow_null=False), 3)
    t_ref, ref = best_of(lambda: reference_decode(*args, config), 1)
    t_runqa, runqa = best_of(lambda: runqa_style_decode(*args, config), 1)
    ours = {p.id: p.answer for p in preds}
    identical = sum(ours[k] == ref[k] for k in ref) / len(ref)
    runqa_same = sum(ours[k] == runqa[k] for k in ref) / len(ref)
    print(f"{path.name}: {len(feats)} windows; spanqa {t_ours:.3f}s, plain loop {t_ref:.2f}s "
          f"(x{t_ref / t_ours:.1f}), run_qa-style {t_runqa:.2f}s (x{t_runqa / t_ours:.1f}); identical answers "
          f"{identical:.4%} (run_qa-style agrees on {runqa_same:.2%})", flush=True)
    return {"windows": len(feats), "spanqa_s": t_ours, "reference_s": t_ref, "runqa_style_s": t_runqa,
            "identical_answers": identical, "runqa_style_agreement": runqa_same, "ratio": t_ref / t_ours}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--questions", type=int, default=None, help="first N questions of each dev set")
    args = parser.parse_args()
    cpu = cpu_banner()
    if not SQUAD_V1_DEV.exists():
        print(f"needs {SQUAD_V1_DEV}", file=sys.stderr)
        return 1
    tokenizer, config = load_tokenizer("minilm-l6"), DecodeConfig()
    v1 = measure(SQUAD_V1_DEV, tokenizer, config, args.questions)
    v2 = measure(SQUAD_V2_DEV, tokenizer, config, args.questions)
    ratio = min(v1["ratio"], v2["ratio"])
    report({"benchmark": "decode", "v1.1_dev": v1, "v2.0_dev": v2, "ratio": ratio}, cpu)
    return 0


if __name__ == "__main__":
    sys.exit(main())
