"""The PostgreSQL index against a real server: it answers like a folder index, and servers share it live."""

import json
import os
import subprocess
import sys
import time
import urllib.request

import pytest
from retrieval.collection_files import make_collection
from retrieval.postgres_server import LocalPostgres, _free_port

from spanqa import Reader
from spanqa.answering.collection import ask
from spanqa.artifacts import IndexInfo
from spanqa.cli import main
from spanqa.errors import SpanqaError
from spanqa.retrieval import open_index
from spanqa.retrieval.index import CollectionIndex
from spanqa.retrieval.postgres import PostgresIndex

INFO = IndexInfo(retrievers=["bm25"], default_retriever="bm25", passage_tokens=24, overlap_tokens=6)
QUESTIONS = {"Which engineer's company built the tower?": "eiffel.md",
             "Who won the Nobel Prize in 1903?": "sub/curie.html",
             "Where does the Nile river flow?": "nile.pdf"}


@pytest.fixture(scope="module")
def postgres():
    server = LocalPostgres().start()
    yield server
    server.stop()


@pytest.fixture()
def indexed(postgres, tmp_path):
    docs = make_collection(tmp_path)
    url = postgres.new_database()
    index, changes = PostgresIndex.build([str(docs)], url, INFO)
    return url, index, changes, docs


def test_a_postgres_index_holds_what_a_folder_index_holds(indexed, tmp_path):
    url, index, changes, docs = indexed
    folder, _ = CollectionIndex.build([str(docs)], tmp_path / "folder", INFO)
    assert changes.documents == 5 and len(changes.skipped) == 5
    assert index.info.passages == len(folder.passages) and index.info.documents == 5
    assert sorted(d.id for d in index.documents) == sorted(d.id for d in folder.documents)


def test_it_answers_like_the_folder_index_on_the_same_documents(indexed, tmp_path, tiny_reader):
    url, index, _, docs = indexed
    folder, _ = CollectionIndex.build([str(docs)], tmp_path / "folder", INFO)
    reader = Reader.load(tiny_reader, precision="fp32")
    for question, doc_id in QUESTIONS.items():
        ranked = index.search(question, k=3)
        assert ranked[0][0].document.id == doc_id == folder.search(question, k=3)[0][0].document.id
        top_pg, top_folder = ranked[0][0], folder.search(question, k=1)[0][0]
        assert (top_pg.start, top_pg.end, top_pg.text) == (top_folder.start, top_folder.end, top_folder.text)
        one_pg = ask(reader, index, question, top_k=2, retrieve=1)
        one_folder = ask(reader, folder, question, top_k=2, retrieve=1)
        assert [(a.document_id, a.start, a.end, a.text) for a in one_pg] == \
               [(a.document_id, a.start, a.end, a.text) for a in one_folder]
        for a in one_pg:
            assert top_pg.document.text[a.start:a.end] == a.text


def test_add_replace_delete_and_errors(indexed, tmp_path):
    url, index, _, _ = indexed
    (tmp_path / "etna.txt").write_text("Mount Etna is a volcano in Sicily that erupted in 2021.\n")
    assert index.add([str(tmp_path / "etna.txt")]).documents == 1
    assert open_index(url).search("volcano Sicily")[0][0].document.id == "etna.txt"
    (tmp_path / "etna.txt").write_text("Vesuvius is a volcano near Naples.\n")
    assert index.add([str(tmp_path / "etna.txt")]).removed == 1
    assert "Vesuvius" in index.search("volcano")[0][0].text and index.info.documents == 6
    with pytest.raises(SpanqaError, match="no document with id 'nope'"):
        index.delete(["etna.txt", "nope"])
    index.delete(["etna.txt"])
    assert index.search("volcano") == [] and open_index(url).info.documents == 5
    with pytest.raises(SpanqaError, match="full text only"):
        index.search("volcano", retriever="dense")
    with pytest.raises(SpanqaError, match="already holds a spanqa index"):
        PostgresIndex.build([], url, INFO)


def test_a_database_without_an_index_or_a_server_says_so(postgres):
    with pytest.raises(SpanqaError, match="no spanqa index in this database; make one with"):
        open_index(postgres.new_database())
    with pytest.raises(SpanqaError, match="cannot connect to PostgreSQL"):
        open_index("postgresql://spanqa:secret@127.0.0.1:1/none")


def _serve(url: str, reader, port: int) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "spanqa.cli", "serve", "--model", str(reader), "--index", url,
                             "--port", str(port)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env={**os.environ})


def _ask(port: int, question: str) -> dict:
    request = urllib.request.Request(f"http://127.0.0.1:{port}/v1/ask", json.dumps({"question": question}).encode(),
                                     {"content-type": "application/json"})
    with urllib.request.urlopen(request, timeout=60) as reply:
        return json.loads(reply.read())


@pytest.mark.slow
def test_two_servers_see_a_document_added_through_a_third_process(indexed, tiny_reader, tmp_path):
    url = indexed[0]
    ports = [_free_port(), _free_port()]
    servers = [_serve(url, tiny_reader, p) for p in ports]
    try:
        for port, server in zip(ports, servers):
            deadline = time.monotonic() + 120
            while True:
                try:
                    urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=5)
                    break
                except OSError:
                    assert server.poll() is None and time.monotonic() < deadline, server.stdout.read()
                    time.sleep(0.5)
        question = "Which volcano erupted in Sicily?"
        assert all(_ask(p, question)["no_answer"] for p in ports)
        (tmp_path / "etna.txt").write_text("Mount Etna is a volcano in Sicily that erupted in 2021.\n")
        added = subprocess.run([sys.executable, "-m", "spanqa.cli", "index", str(tmp_path / "etna.txt"), "--add",
                                "--output", url], capture_output=True, text=True, timeout=300)
        assert added.returncode == 0, added.stderr
        for port in ports:
            assert _ask(port, question)["answers"][0]["document_id"] == "etna.txt"
    finally:
        for server in servers:
            server.terminate()
            server.wait(timeout=60)


def test_the_index_command_takes_a_postgres_url(postgres, tmp_path, capsys):
    docs = make_collection(tmp_path)
    url = postgres.new_database()
    assert main(["index", str(docs), "--output", url, "--passage-tokens", "24"]) == 0
    err = capsys.readouterr().err
    assert "full text only" in err and "5 documents" in err
