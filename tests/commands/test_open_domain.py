"""Open-domain scoring: recall@k over retrieved passages, EM/F1 of retrieve-then-read, per retriever."""

import json

import pytest

from conftest import V1
from spanqa.cli import main
from spanqa.commands.open_domain import recall_at
from spanqa.data import load_examples
from spanqa.retrieval.documents import Document
from spanqa.retrieval.index import Passage


def test_recall_at_k_counts_a_gold_string_inside_the_first_k_passages():
    doc = Document("d", "", "", "Gustave Eiffel built it. Paris is in France.")
    hits = [[(Passage(0, doc, 25, 44), 1.0), (Passage(1, doc, 0, 24), 0.5)],   # gold in the 2nd passage
            [(Passage(1, doc, 0, 24), 1.0)]]                                   # gold absent
    gold = [("Gustave Eiffel",), ("Berlin", "")]
    assert recall_at(hits, gold, 1) == 0.0 and recall_at(hits, gold, 2) == 0.5


@pytest.mark.slow
def test_evaluate_index_scores_every_retriever_the_index_has(tmp_path, tiny_reader, capsys):
    assert main(["index", V1, "--output", str(tmp_path / "idx"), "--reader", str(tiny_reader)]) == 0
    capsys.readouterr()
    assert main(["evaluate", V1, "--index", str(tmp_path / "idx"), "--model", str(tiny_reader), "--json"]) == 0
    out = capsys.readouterr().out
    results = json.loads(out.strip().splitlines()[-1])
    assert sorted(results) == ["bm25", "dense", "hybrid"] and "R@20" in out
    for r in results.values():
        assert 0 <= r["recall@1"] <= r["recall@5"] <= r["recall@20"] <= 1 and 0 <= r["exact"] <= r["f1"] <= 100
        assert r["questions"] == len(load_examples(V1).examples)
    assert results["bm25"]["recall@20"] > 0.9  # the gold contexts are in the index, and BM25 finds them


def test_evaluate_index_needs_a_model_and_no_predictions(tmp_path, capsys):
    assert main(["evaluate", V1, "--index", str(tmp_path)]) == 2
    assert "--model RUN" in capsys.readouterr().err
