"""Asking a collection: every answer is a quotation of its document, at offsets in the document's text."""

from pathlib import Path

import pytest
from retrieval.collection_files import EIFFEL, PARIS, make_collection

from spanqa import Reader
from spanqa.answering.collection import ask, ask_batch
from spanqa.artifacts import IndexInfo
from spanqa.cli import main
from spanqa.retrieval.index import CollectionIndex

BM25_ONLY = IndexInfo(retrievers=["bm25"], default_retriever="bm25", passage_tokens=24, overlap_tokens=6)
QUESTIONS = ["Which engineer's company built the tower in Paris?", "Who won the Nobel Prize in 1903?",
             "Where does the Nile flow?", "How many inhabitants does Paris have?", "What are the Alps?"]


@pytest.fixture(scope="module")
def collection(tmp_path_factory):
    root = tmp_path_factory.mktemp("coll")
    docs = make_collection(root)
    index, _ = CollectionIndex.build([str(docs)], root / "index", BM25_ONLY)
    return docs, index


def test_answers_are_quotations_at_document_offsets_for_every_kind_of_file(collection, tiny_reader):
    docs, index = collection
    reader = Reader.load(tiny_reader, precision="fp32")
    files = {"eiffel.md": EIFFEL, "paris.txt": PARIS}
    kinds = set()
    for answers in ask_batch(reader, index, QUESTIONS, top_k=5, retrieve=10):
        for a in answers:
            doc = next(d for d in index.documents if d.id == a.document_id)
            assert doc.text[a.start:a.end] == a.text and a.text  # a quotation of the document text
            assert a.passage[a.start - a.passage_start:a.end - a.passage_start] == a.text
            if a.document_id in files:  # plain files: the document text is the file's own text
                assert files[a.document_id][a.start:a.end] == a.text
                assert Path(docs / a.document_id).read_text()[a.start:a.end] == a.text
            kinds.add(Path(a.document_id).suffix or "jsonl row")
    assert kinds >= {".md", ".txt", ".html", ".pdf"}


def test_reader_ask_takes_an_index_or_its_folder_and_ranks_by_probability(collection, tiny_reader):
    _, index = collection
    reader = Reader.load(tiny_reader, precision="fp32")
    by_object = reader.ask(index, QUESTIONS[0], top_k=3)
    by_path = reader.ask(str(index.folder), QUESTIONS[0], top_k=3)
    assert [(a.document_id, a.start, a.end) for a in by_object] == [(a.document_id, a.start, a.end) for a in by_path]
    assert by_object and [a.probability for a in by_object] == sorted((a.probability for a in by_object), reverse=True)


def test_nothing_retrieved_is_no_answer_in_the_collection(collection, tiny_reader):
    _, index = collection
    assert ask(Reader.load(tiny_reader), index, "zzzz qqqq") == []


def test_the_index_and_ask_commands(tmp_path, tiny_reader, capsys):
    docs = make_collection(tmp_path)
    assert main(["index", str(docs), "--output", str(tmp_path / "idx"), "--retriever", "bm25",
                 "--passage-tokens", "24"]) == 0
    err = capsys.readouterr().err
    assert "5 documents" in err and "skipped 5 file(s)" in err and "locked.pdf: an encrypted PDF" in err
    assert main(["ask", "--model", str(tiny_reader), "--index", str(tmp_path / "idx"),
                 "--question", "Who won the Nobel Prize?", "--no-color"]) == 0
    out = capsys.readouterr().out
    assert " 1. " in out and " chars " in out
    assert main(["index", "--output", str(tmp_path / "idx"), "--delete", "sub/curie.html"]) == 0
    assert "1 removed" in capsys.readouterr().err
    assert main(["index", "--output", str(tmp_path / "idx"), "--delete", "sub/curie.html"]) == 2
    assert "no document with id 'sub/curie.html'" in capsys.readouterr().err
