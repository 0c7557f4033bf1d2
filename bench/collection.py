"""Questions over a document collection: spanqa's index and reader against Haystack 3 and txtai.

Collection: every distinct context of SQuAD v1.1 train + dev (20,958 paragraphs), one document each. Questions:
`--questions` SQuAD v1.1 dev questions spread evenly over the dev set (default 200), asked of the whole
collection. Every system uses the same reader weights (`--model`, default runs/quickstart-all: the quickstart
reader after `spanqa export --format all`, whose root holds the transformers weights the peers load) and reads
the same number of retrieved passages (`--k`, default 3) per question; txtai joins its top 3 (its default) into
one context. The peers run in their own environments (bench/_envs.py), each at its own best settings:
  Haystack 3.4  in-memory BM25 retriever + transformers-haystack's TransformersExtractiveReader, in a Pipeline
  txtai 9.14    Embeddings(keyword=True) BM25 index + RAG with the reader as its extractive QA model, in fp32
                and with its own int8 option (RAG(quantize=True))
spanqa runs each of its retrievers (bm25, dense, hybrid) over one index built with `spanqa index`'s defaults,
and its reader with `--backend auto` (on a `--format all` folder: the fastest engine measured on this CPU
within the accuracy guard; the run's `runs_on` says which).
Reported per system: index build seconds and peak memory (each system in its own process), recall@1/5/K (a
retrieved passage contains a gold answer string), EM/F1 (official v1.1 scoring), questions/s end to end.
`ratio` = spanqa's default retriever's questions/s / the faster peer's.
Usage: python bench/collection.py [--model runs/quickstart-all] [--questions 200] [--k 3] [--skip-peers]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import SQUAD_V1_DEV, SQUAD_V1_TRAIN, cpu_banner, report
from _envs import clean_env, ensure, versions

from spanqa.commands.open_domain import KS, open_domain
from spanqa.data import load_examples
from spanqa.evaluation import evaluate

OUT = Path(__file__).parent / "out"


def write_collection(path: Path, train_limit: int = 0) -> dict[str, str]:
    """The distinct contexts of SQuAD v1.1 train (the first `train_limit`, 0 = all) + dev as {id, title, text}
    JSONL; returns {id: text}."""
    texts, seen = {}, set()
    with open(path, "w") as f:
        for split, source in (("train", SQUAD_V1_TRAIN), ("dev", SQUAD_V1_DEV)):
            for ex in load_examples(str(source)).examples:
                if ex.context in seen or (split == "train" and train_limit and len(texts) >= train_limit):
                    continue
                seen.add(ex.context)
                key = f"{split}-{len(texts)}"
                texts[key] = ex.context
                f.write(json.dumps({"id": key, "title": ex.title, "text": ex.context}) + "\n")
    return texts


def questions(n: int):
    dev = load_examples(str(SQUAD_V1_DEV))
    step = max(1, len(dev.examples) // n)
    return dataclasses.replace(dev, examples=dev.examples[::step]).head(n)


def spanqa_side(model: str, collection: Path, dataset_path: Path, out: Path, k: int) -> None:
    """In its own process: build the index, score every retriever; writes JSON to `out`."""
    from spanqa import Reader
    from spanqa.commands.indexing import IndexSettings
    from spanqa.retrieval.index import CollectionIndex

    dataset = load_examples(str(dataset_path))
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        index, changes = CollectionIndex.build([str(collection)], Path(tmp) / "index",
                                               IndexSettings(reader=model).info())
        index_s = time.perf_counter() - t0
        reader = Reader.load(model)
        open_domain(reader, index, dataset.head(8), ["hybrid"], k)  # warm-up
        results = open_domain(reader, index, dataset, ["bm25", "dense", "hybrid"], k)
    json.dump({"index_s": index_s, "passages": len(index.passages), "documents": changes.documents,
               "default": index.info.default_retriever, "runs_on": reader.runs_on, "results": results,
               "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}, open(out, "w"))


def run_peer(kind: str, env: str, model: str, collection: Path, qs: list[str], k: int) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        qpath, opath = Path(tmp) / "q.json", Path(tmp) / "out.json"
        qpath.write_text(json.dumps(qs))
        script = Path(__file__).parent / "_collection_peers.py"
        subprocess.run([str(ensure(env)), str(script), kind, str(Path(model).resolve()), str(collection),
                        str(qpath), str(opath), str(k)], check=True, env=clean_env())
        return json.loads(opath.read_text())


def peer_scores(run: dict, dataset, texts: dict[str, str], k: int) -> dict:
    gold = [tuple(e.gold_texts) for e in dataset.examples]
    recall = {f"recall@{kk}": sum(any(g in texts[i] for i in ids[:kk] for g in golds)
                                  for ids, golds in zip(run["retrieved"], gold)) / len(gold) for kk in KS if kk <= k}
    scores = evaluate(dataset, {e.id: a for e, a in zip(dataset.examples, run["answers"])})
    return {**recall, "exact": scores["exact"], "f1": scores["f1"], "questions_per_s": len(gold) / run["seconds"],
            "index_s": run["index_s"], "peak_rss_mb": run["peak_rss_mb"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="runs/quickstart-all")
    parser.add_argument("--questions", type=int, default=200)
    parser.add_argument("--k", type=int, default=3, help="passages read per question")
    parser.add_argument("--skip-peers", action="store_true")
    parser.add_argument("--train-documents", type=int, default=0,
                        help="only the first N train contexts in the collection (0 = all; a quick check)")
    parser.add_argument("--spanqa-side", nargs=3, metavar=("COLLECTION", "QUESTIONS", "OUT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.spanqa_side:
        return spanqa_side(args.model, *(Path(p) for p in args.spanqa_side), args.k)
    cpu = cpu_banner()
    if not Path(args.model).is_dir():
        raise SystemExit(f"{args.model}: no reader folder; make one with `spanqa quickstart` (8 minutes), then "
                         f"`spanqa export --model runs/quickstart --format all --output {args.model} --eval-data "
                         "DEV` (2 minutes)")
    OUT.mkdir(exist_ok=True)
    collection, qfile, sfile = OUT / "collection.jsonl", OUT / "collection-questions.json", OUT / "collection-spanqa.json"
    texts = write_collection(collection, args.train_documents)
    dataset = questions(args.questions)
    qfile.write_text(json.dumps({"version": "1.1", "data": [{"title": "q", "paragraphs": [
        {"context": e.context, "qas": [{"id": e.id, "question": e.question, "answers": [
            {"text": a.text, "answer_start": a.start} for a in e.answers]}]} for e in dataset.examples]}]}))
    print(f"collection: {len(texts):,} documents; {len(dataset.examples)} dev questions; k = {args.k}", flush=True)
    subprocess.run([sys.executable, __file__, "--model", args.model, "--k", str(args.k), "--spanqa-side",
                    str(collection), str(qfile), str(sfile)], check=True)
    ours = json.loads(sfile.read_text())
    print(f"  spanqa: index {ours['index_s']:.1f} s ({ours['passages']:,} passages), reader {ours['runs_on']}",
          flush=True)
    for name, r in ours["results"].items():
        print(f"  spanqa {name}: R@1 {r['recall@1']:.3f} R@5 {r['recall@5']:.3f} EM {r['exact']:.2f} F1 {r['f1']:.2f} "
              f"{r['questions_per_s']:.2f} q/s", flush=True)
    peers = {}
    if not args.skip_peers:
        qs = [e.question for e in dataset.examples]
        for kind, env in (("haystack", "haystack-3"), ("txtai", "txtai"), ("txtai-int8", "txtai")):
            peers[kind] = {**peer_scores(run_peer(kind, env, args.model, collection, qs, args.k), dataset, texts,
                                         args.k), "versions": versions(env)}
            p = peers[kind]
            print(f"  {kind}: R@1 {p['recall@1']:.3f} EM {p['exact']:.2f} F1 {p['f1']:.2f} "
                  f"{p['questions_per_s']:.2f} q/s, index {p['index_s']:.1f} s", flush=True)
    default = ours["results"][ours["default"]]
    fastest = max(peers.values(), key=lambda p: p["questions_per_s"]) if peers else None
    best_em = max((p["exact"] for p in peers.values()), default=None)
    report({"benchmark": "collection", "documents": len(texts), "questions": len(dataset.examples), "k": args.k,
            "spanqa": ours, "peers": peers, "default_retriever": ours["default"],
            "em_vs_best_peer": default["exact"] - best_em if best_em is not None else None,
            "hybrid_recall20_above_bm25": ours["results"]["hybrid"]["recall@20"] > ours["results"]["bm25"]["recall@20"],
            "ratio": default["questions_per_s"] / fastest["questions_per_s"] if fastest else None}, cpu)


if __name__ == "__main__":
    main()
