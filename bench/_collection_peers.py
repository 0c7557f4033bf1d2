"""Reference side of bench/collection.py: a peer indexes the collection and answers the questions.

Runs in the peer's own environment (bench/_envs.py), never in spanqa's:
  haystack  Haystack 3.4: InMemoryDocumentStore + InMemoryBM25Retriever(top_k=K) + transformers-haystack's
            TransformersExtractiveReader (the reader Haystack 3 moved out of core), joined in a Pipeline
  txtai     txtai 9.14: Embeddings(keyword=True, content=True) (its BM25 index) + RAG with the reader as an
            extractive question-answering model; txtai joins its top `context` passages (default 3) into one
            context, which its QA step truncates to the model's length
  txtai-int8  the same with RAG(quantize=True): txtai's own int8 option (torch dynamic quantization)
Usage: python _collection_peers.py KIND MODEL_DIR COLLECTION.jsonl QUESTIONS.json OUT.json K
"""

import json
import resource
import sys
import time


def haystack(model_dir, docs, questions, k):
    from haystack import Document, Pipeline
    from haystack.components.retrievers.in_memory import InMemoryBM25Retriever
    from haystack.document_stores.in_memory import InMemoryDocumentStore
    from haystack_integrations.components.readers.transformers import TransformersExtractiveReader

    t0 = time.perf_counter()
    store = InMemoryDocumentStore()
    store.write_documents([Document(id=d["id"], content=d["text"]) for d in docs])
    index_s = time.perf_counter() - t0
    reader = TransformersExtractiveReader(model=model_dir, top_k=1, no_answer=False)
    pipe = Pipeline()
    pipe.add_component("retriever", InMemoryBM25Retriever(store, top_k=k))
    pipe.add_component("reader", reader)
    pipe.connect("retriever.documents", "reader.documents")
    pipe.warm_up()
    ask = lambda q: pipe.run({"retriever": {"query": q}, "reader": {"query": q}},  # noqa: E731
                             include_outputs_from={"retriever"})
    ask(questions[0])  # warm-up
    answers, retrieved = [], []
    t0 = time.perf_counter()
    for q in questions:
        out = ask(q)
        found = out["reader"]["answers"]
        answers.append(found[0].data if found and found[0].data else "")
        retrieved.append([d.id for d in out["retriever"]["documents"]])
    return index_s, time.perf_counter() - t0, answers, retrieved


def txtai(model_dir, docs, questions, k, quantize=False):
    from txtai import Embeddings
    from txtai.pipeline import RAG

    t0 = time.perf_counter()
    embeddings = Embeddings(keyword=True, content=True)
    embeddings.index([{"id": d["id"], "text": d["text"]} for d in docs])
    index_s = time.perf_counter() - t0
    rag = RAG(embeddings, model_dir, task="question-answering", output="flatten", gpu=False, quantize=quantize)
    rag(questions[:1])  # warm-up
    t0 = time.perf_counter()
    answers = [a or "" for a in rag(questions)]
    seconds = time.perf_counter() - t0
    retrieved = [[r["id"] for r in results] for results in embeddings.batchsearch(questions, k)]
    return index_s, seconds, answers, retrieved


def main() -> None:
    kind, model_dir, collection, questions_path, out_path, k = sys.argv[1:7]
    import torch

    docs = [json.loads(line) for line in open(collection)]
    questions = json.load(open(questions_path))
    index_s, seconds, answers, retrieved = {"haystack": haystack, "txtai": txtai,
                                       "txtai-int8": lambda *a: txtai(*a, quantize=True)}[kind](model_dir, docs, questions,
                                                                                        int(k))
    print(f"  {kind}: index {index_s:.1f} s, {len(questions) / seconds:.2f} questions/s", file=sys.stderr, flush=True)
    json.dump({"index_s": index_s, "seconds": seconds, "answers": answers, "retrieved": retrieved,
               "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
               "threads": torch.get_num_threads()}, open(out_path, "w"))


if __name__ == "__main__":
    main()
