"""POST /v1/ask over a collection: quotations with document offsets, one error shape, and a served index that
sees documents added while it serves."""

import pytest
from fastapi.testclient import TestClient
from retrieval.collection_files import make_collection

from spanqa.artifacts import IndexInfo
from spanqa.reader import Reader
from spanqa.retrieval.index import CollectionIndex
from spanqa.server.app import ServeConfig, create_app

LOCAL = "http://127.0.0.1"
BM25_ONLY = IndexInfo(retrievers=["bm25"], default_retriever="bm25", passage_tokens=24, overlap_tokens=6)


@pytest.fixture()
def served(tmp_path, tiny_reader):
    docs = make_collection(tmp_path)
    index, _ = CollectionIndex.build([str(docs)], tmp_path / "index", BM25_ONLY)
    app = create_app(Reader.load(tiny_reader, precision="fp32"), ServeConfig(max_passages=30), tmp_path / "index")
    with TestClient(app, base_url=LOCAL) as client:
        yield client, index, tmp_path


def test_ask_answers_with_quotations_of_the_documents(served):
    client, index, _ = served
    reply = client.post("/v1/ask", json={"question": "Who won the Nobel Prize in 1903?", "top_k": 3})
    assert reply.status_code == 200, reply.text
    body = reply.json()
    assert body["answers"] and not body["no_answer"] and body["retrieved"] >= 1
    docs = {d.id: d for d in index.documents}
    for a in body["answers"]:
        assert docs[a["document_id"]].text[a["start"]:a["end"]] == a["text"]
        assert a["passage"][a["start"] - a["passage_start"]:a["end"] - a["passage_start"]] == a["text"]
    info = client.get("/v1/index").json()
    assert info["documents"] == 5 and info["retrievers"] == ["bm25"] and info["index"] == "index"


def test_nothing_retrieved_is_no_answer(served):
    client, _, _ = served
    body = client.post("/v1/ask", json={"question": "zzzz qqqq"}).json()
    assert body["no_answer"] and body["answers"] == [] and body["retrieved"] == 0


@pytest.mark.parametrize("payload, status, field", [
    ({"question": "  "}, 422, "question"),
    ({"question": "Paris?", "top_k": "3"}, 422, "top_k"),
    ({"question": "Paris?", "retriever": "magic"}, 422, "retriever"),
    ({"question": "Paris?", "retrieve": 31}, 413, None),
    ({"question": "Paris?", "retriever": "dense"}, 422, None),
])
def test_bad_asks_get_the_one_error_shape(served, payload, status, field):
    client, _, _ = served
    reply = client.post("/v1/ask", json=payload)
    assert reply.status_code == status, reply.text
    error = reply.json()["error"]
    assert error["message"] and (field is None or error.get("field") == field)


def test_documents_added_while_serving_are_found_by_the_next_request(served):
    client, _, tmp_path = served
    question = {"question": "Which volcano erupted in Sicily?", "top_k": 1}
    assert client.post("/v1/ask", json=question).json()["no_answer"]
    (tmp_path / "etna.txt").write_text("Mount Etna is a volcano in Sicily that erupted in 2021.\n")
    CollectionIndex.open(tmp_path / "index").add([str(tmp_path / "etna.txt")])  # as `spanqa index --add` would
    body = client.post("/v1/ask", json=question).json()
    assert body["answers"][0]["document_id"] == "etna.txt"
