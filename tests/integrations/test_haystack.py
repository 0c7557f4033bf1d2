"""The Haystack component: a retriever's documents in, ranked ExtractedAnswers pointing at them out."""

import os

import pytest

os.environ.setdefault("HAYSTACK_TELEMETRY_ENABLED", "False")  # no network from tests
haystack = pytest.importorskip("haystack")

from haystack import Document, Pipeline  # noqa: E402
from haystack.components.retrievers.in_memory import InMemoryBM25Retriever  # noqa: E402
from haystack.document_stores.in_memory import InMemoryDocumentStore  # noqa: E402
from answering.test_passages import FILLER, single_token_words, spotter_reader  # noqa: E402

from spanqa.integrations.haystack import SpanqaReader  # noqa: E402


def test_a_retriever_pipeline_answers_from_the_right_document(wordpiece, tiny_model):
    (word, word_id), = single_token_words(wordpiece, 1)
    docs = [Document(content=f"{FILLER[i % 4]} The answer to where is not here {i}.") for i in range(4)]
    target = Document(content=f"The answer to where is {word} of course.")
    store = InMemoryDocumentStore()
    store.write_documents(docs[:2] + [target] + docs[2:])
    reader = SpanqaReader(str(tiny_model), top_k=2)
    reader._reader = spotter_reader(wordpiece, {word_id: 8.0})  # a model that knows the answer
    pipe = Pipeline()
    pipe.add_component("retriever", InMemoryBM25Retriever(document_store=store, top_k=5))
    pipe.add_component("reader", reader)
    pipe.connect("retriever.documents", "reader.documents")
    query = "what is the answer to where"
    answers = pipe.run({"retriever": {"query": query}, "reader": {"query": query}})["reader"]["answers"]
    best = answers[0]
    assert best.data.lower() == word and best.document.id == target.id
    assert target.content[best.document_offset.start:best.document_offset.end] == best.data
    assert answers[-1].data is None and len(answers) == 3  # top_k answers, then "no answer"
    assert best.score > answers[1].score


def test_the_component_serialises_and_loads_a_real_reader(tiny_model):
    component = SpanqaReader(str(tiny_model), top_k=3, backend="torch")
    again = SpanqaReader.from_dict(component.to_dict())
    assert (again.model, again.top_k, again.backend) == (str(tiny_model), 3, "torch")
    out = again.run("Who designed it?", [Document(content="The tower was designed by Gustave Eiffel.")])
    assert out["answers"][0].data and out["answers"][-1].data is None and 2 <= len(out["answers"]) <= 4
    assert again.run("Who?", [])["answers"][0].data is None
