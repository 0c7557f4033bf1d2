"""Dense search: exact (spanqa's numpy product over stored vectors) against an HNSW graph (usearch), by size.

Where an index should switch from exact search to a graph (`spanqa.retrieval.dense.ANN_ABOVE`). Vectors: the
passage vectors of an index over SQuAD v1.1 train + dev (`--index`, 21,450 passages from bench/collection.py's
collection; all-MiniLM-L6-v2), grown to each size with synthetic rows (a real row plus Gaussian noise of the
same norm times 0.5, re-normalised: near neighbours of real passages, not uniform noise, which no index can
search well). Queries: `--questions` SQuAD v1.1 dev questions, encoded. For each size, float16 and int8 storage:
  exact   milliseconds per question asked alone (a server's case) and per question in a batch of 256
  hnsw    usearch graph (connectivity 16, spanqa's search expansion 256): build seconds, milliseconds per
          question alone, recall@20 against the exact top 20
`ratio` = hnsw's questions/s / exact's, one question at a time, at the largest size measured.
Usage: python bench/dense_search.py [--index runs/squad-index] [--sizes 21450,100000,300000,1000000]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
from _common import SQUAD_V1_DEV, cpu_banner, report

from spanqa.data import load_examples
from spanqa.retrieval.dense import SentenceEncoder, Vectors, build_graph, search


def grown(real: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """`real` followed by n - len(real) synthetic neighbours of its rows (see the module doc), float32."""
    if n <= len(real):
        return real[:n]
    picks = rng.integers(0, len(real), n - len(real))
    noise = rng.standard_normal((len(picks), real.shape[1])).astype(np.float32) * (0.5 / np.sqrt(real.shape[1]))
    extra = real[picks] + noise
    extra /= np.linalg.norm(extra, axis=1, keepdims=True)
    return np.concatenate([real, extra])


def per_question_ms(fn, queries: np.ndarray, alone: int = 50) -> float:
    fn(queries[:1])  # warm-up
    t0 = time.perf_counter()
    for q in queries[:alone]:
        fn(q[None])
    return 1000 * (time.perf_counter() - t0) / alone


def measure(vectors: Vectors, queries: np.ndarray, k: int = 20) -> dict:
    exact_ids, _ = search(vectors, queries, k)
    row = {"exact_ms_alone": per_question_ms(lambda q: search(vectors, q, k), queries)}
    t0 = time.perf_counter()
    search(vectors, np.repeat(queries, max(1, 256 // len(queries)), axis=0)[:256], k)
    row["exact_ms_batched"] = 1000 * (time.perf_counter() - t0) / 256
    t0 = time.perf_counter()
    graph = build_graph(vectors)
    row["hnsw_build_s"] = time.perf_counter() - t0
    with_graph = Vectors(vectors.data, vectors.scales, graph)
    row["hnsw_ms_alone"] = per_question_ms(lambda q: search(with_graph, q, k), queries)
    ann_ids, _ = search(with_graph, queries, k)
    row["hnsw_recall20"] = float(np.mean([len(set(a) & set(e)) / k for a, e in zip(ann_ids, exact_ids)]))
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--index", default="runs/squad-index")
    parser.add_argument("--sizes", default="21450,100000,300000,1000000")
    parser.add_argument("--questions", type=int, default=200)
    args = parser.parse_args()
    cpu = cpu_banner()
    if not (Path(args.index) / "vectors.npy").exists():
        raise SystemExit(f"{args.index}: no index with vectors; make one with `spanqa index bench/out/collection.jsonl "
                         f"--output {args.index}` (bench/collection.py writes the collection)")
    real = Vectors.load(Path(args.index)).rows()
    dev = load_examples(str(SQUAD_V1_DEV)).head(args.questions)
    queries = SentenceEncoder().encode([e.question for e in dev.examples])
    rng = np.random.default_rng(0)
    rows = []
    for n in (int(s) for s in args.sizes.split(",")):
        base = grown(real, n, rng)
        for dtype in ("float16", "int8"):
            row = {"passages": n, "dtype": dtype, **measure(Vectors.store(base, dtype), queries)}
            rows.append(row)
            print(f"  {n:>9,} {dtype:<8} exact {row['exact_ms_alone']:7.2f} ms alone {row['exact_ms_batched']:6.3f} ms "
                  f"batched | hnsw build {row['hnsw_build_s']:6.1f} s, {row['hnsw_ms_alone']:5.2f} ms alone, "
                  f"recall@20 {row['hnsw_recall20']:.3f}", flush=True)
    last = [r for r in rows if r["passages"] == rows[-1]["passages"] and r["dtype"] == "float16"][0]
    report({"benchmark": "dense_search", "questions": len(queries), "rows": rows,
            "ratio": last["exact_ms_alone"] / last["hnsw_ms_alone"]}, cpu)


if __name__ == "__main__":
    main()
