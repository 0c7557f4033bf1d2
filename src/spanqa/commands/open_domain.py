"""`spanqa evaluate --index INDEX DATA --model RUN`: open-domain scores of retrieve-then-read.

For a QA file whose contexts are all in the index (`spanqa index DATA` makes one), each question is asked of the
whole collection, as a user would, for each retriever:
- recall@k: the share of questions whose first k retrieved passages contain a gold answer string (as DrQA and
  BERTserini report it: the passage holds the text, whether or not it is the gold context);
- EM / F1 of the best answer against the gold answers, with the data's official scoring (always answering, as
  the peers do: the calibrated abstention threshold is not applied);
- questions/s end to end (retrieval and reading), and the retrieval alone.
"""

from __future__ import annotations

import time

from spanqa.answering.collection import RETRIEVE, read_hits
from spanqa.evaluation import evaluate

KS = (1, 5, 20)
CHUNK = 256  # questions searched per call (bounds the [Q, N] dense score matrix)


def recall_at(hits: list[list], gold: list[tuple[str, ...]], k: int) -> float:
    """Share of questions with a gold answer string inside one of their first `k` passages."""
    found = [any(g and g in p.text for p, _ in h[:k] for g in golds) for h, golds in zip(hits, gold)]
    return sum(found) / max(len(found), 1)


def open_domain(reader, index, dataset, retrievers: list[str], retrieve: int = RETRIEVE) -> dict[str, dict]:
    """{retriever: {recall@1, recall@5, recall@20, exact, f1, questions, questions_per_s, retrieval_s, total_s}}."""
    questions = [e.question for e in dataset.examples]
    gold = [tuple(e.gold_texts) for e in dataset.examples]
    depth = max(max(KS), retrieve)
    results = {}
    for retriever in retrievers:
        t0 = time.perf_counter()
        hits = [h for lo in range(0, len(questions), CHUNK)
                for h in index.search_batch(questions[lo:lo + CHUNK], depth, retriever)]
        t_retrieval = time.perf_counter() - t0
        answers = read_hits(reader, questions, [h[:retrieve] for h in hits], top_k=1, min_probability=0.0)
        total = time.perf_counter() - t0
        predictions = {e.id: (a[0].text if a else "") for e, a in zip(dataset.examples, answers)}
        scores = evaluate(dataset, predictions)
        results[retriever] = {**{f"recall@{k}": recall_at(hits, gold, k) for k in KS},
                              "exact": scores["exact"], "f1": scores["f1"], "questions": len(questions),
                              "questions_per_s": len(questions) / total, "retrieval_s": t_retrieval,
                              "total_s": total}
    return results


def format_open_domain(results: dict[str, dict], source: str) -> str:
    lines = [f"{source}: retrieve, then read ({next(iter(results.values()))['questions']} questions)",
             f"  {'retriever':<10}{'R@1':>8}{'R@5':>8}{'R@20':>8}{'EM':>8}{'F1':>8}{'q/s':>8}"]
    for name, r in results.items():
        lines.append(f"  {name:<10}{100 * r['recall@1']:8.2f}{100 * r['recall@5']:8.2f}{100 * r['recall@20']:8.2f}"
                     f"{r['exact']:8.2f}{r['f1']:8.2f}{r['questions_per_s']:8.1f}")
    return "\n".join(lines)
