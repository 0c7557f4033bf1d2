"""Collection indexes: build, search (BM25, dense, hybrid), add, replace, delete, reopen."""

import numpy as np
import pytest
from retrieval.collection_files import make_collection

from spanqa.artifacts import IndexInfo
from spanqa.errors import SpanqaError
from spanqa.retrieval.index import CollectionIndex, fuse

BM25_ONLY = IndexInfo(retrievers=["bm25"], default_retriever="bm25", passage_tokens=40, overlap_tokens=8)
HYBRID = IndexInfo(retrievers=["bm25", "dense"], default_retriever="hybrid", passage_tokens=40, overlap_tokens=8,
                   encoder="minilm-l6")


def first_doc(index, question, retriever="auto"):
    return index.search(question, k=3, retriever=retriever)[0][0].document.id


@pytest.fixture(scope="module")
def hybrid(tmp_path_factory):
    root = tmp_path_factory.mktemp("coll")
    index, changes = CollectionIndex.build([str(make_collection(root))], root / "index", HYBRID)
    return index, changes


def test_build_counts_documents_and_passages_and_lists_what_it_skipped(hybrid):
    index, changes = hybrid
    assert changes.documents == 5 and changes.passages == len(index.passages) >= 5
    assert len(changes.skipped) == 5 and index.info.documents == 5
    for number in range(len(index.passages)):  # every passage is a span of its document
        p = index.passage(number)
        assert p.text == p.document.text[p.start:p.end] and p.text.strip() == p.text


@pytest.mark.parametrize("retriever", ["bm25", "dense", "hybrid"])
def test_each_retriever_finds_the_document_that_answers(hybrid, retriever):
    index, _ = hybrid
    assert first_doc(index, "Which engineer's company built the tower?", retriever) == "eiffel.md"
    assert first_doc(index, "Who won the Nobel Prize in 1903?", retriever) == "sub/curie.html"


def test_an_index_reopens_with_the_same_settings_and_answers(hybrid):
    index, _ = hybrid
    again = CollectionIndex.open(index.folder)
    assert again.info == index.info and len(again.documents) == 5
    assert np.array_equal(again.passages, index.passages)
    assert first_doc(again, "river flowing into the Mediterranean") == "nile.pdf"


def test_add_replace_and_delete_change_what_is_retrieved(tmp_path):
    docs = make_collection(tmp_path)
    index, _ = CollectionIndex.build([str(docs / "paris.txt")], tmp_path / "index", BM25_ONLY)
    assert index.search("volcano erupted") == []  # BM25 returns only passages that share a word
    (tmp_path / "new").mkdir()
    (tmp_path / "new" / "etna.txt").write_text("Mount Etna is a volcano in Sicily that erupted in 2021.\n")
    changes = index.add([str(tmp_path / "new" / "etna.txt")])
    assert changes.documents == 1 and first_doc(index, "volcano erupted") == "etna.txt"
    (tmp_path / "new" / "etna.txt").write_text("Vesuvius is a volcano near Naples.\n")
    changes = index.add([str(tmp_path / "new" / "etna.txt")])  # same id: replaced, not duplicated
    assert changes.removed == 1 and len(index.documents) == 2
    assert "Vesuvius" in index.search("volcano")[0][0].text
    index.delete(["etna.txt"])
    reopened = CollectionIndex.open(tmp_path / "index")
    assert [d.id for d in reopened.documents] == ["paris.txt"]
    assert all("Vesuvius" not in p.text for p, _ in reopened.search("volcano Vesuvius", k=5))


def test_deleting_an_unknown_id_changes_nothing(tmp_path):
    docs = make_collection(tmp_path)
    index, _ = CollectionIndex.build([str(docs / "paris.txt")], tmp_path / "index", BM25_ONLY)
    with pytest.raises(SpanqaError, match="no document with id 'nope'"):
        index.delete(["paris.txt", "nope"])
    assert [d.id for d in CollectionIndex.open(tmp_path / "index").documents] == ["paris.txt"]


def test_a_bm25_index_refuses_dense_search_and_names_the_fix(tmp_path):
    docs = make_collection(tmp_path)
    index, _ = CollectionIndex.build([str(docs / "paris.txt")], tmp_path / "index", BM25_ONLY)
    with pytest.raises(SpanqaError, match="no dense vectors.*--retriever dense"):
        index.search("capital", retriever="dense")


def test_building_over_an_index_or_a_non_empty_folder_is_refused(tmp_path):
    docs = make_collection(tmp_path)
    CollectionIndex.build([str(docs / "paris.txt")], tmp_path / "index", BM25_ONLY)
    for folder in (tmp_path / "index", docs):
        with pytest.raises(SpanqaError, match="--add|not empty"):
            CollectionIndex.build([str(docs / "paris.txt")], folder, BM25_ONLY)


def test_opening_a_folder_that_is_no_index_says_how_to_make_one(tmp_path):
    with pytest.raises(SpanqaError, match="not a spanqa index.*spanqa index SOURCES"):
        CollectionIndex.open(tmp_path)


def test_reciprocal_rank_fusion():
    # passage 2 is 2nd and 1st -> 1/62 + 1/61; passage 7 is 1st and 3rd -> 1/61 + 1/63; 4 and 5 once each
    a = (np.array([[7, 2, 5]]), None)
    b = (np.array([[2, 4, 7]]), None)
    ids, scores = fuse([a, b], 3)
    assert ids.tolist() == [[2, 7, 4]] and scores[0, 0] == pytest.approx(1 / 62 + 1 / 61)


def test_int8_vectors_keep_the_cosine_within_a_percent_and_halve_the_bytes():
    from spanqa.retrieval.dense import Vectors

    rng = np.random.default_rng(0)
    x = rng.standard_normal((500, 384)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    half, quarter = Vectors.store(x, "float16"), Vectors.store(x, "int8")
    assert quarter.data.dtype == np.int8 and quarter.data.nbytes * 2 == half.data.nbytes
    cosines = np.sum(quarter.rows() * x, axis=1)
    assert cosines.min() > 0.99
    both = quarter.take(np.arange(500) < 100).concat(x[100:])  # delete, then add: the same rows come back
    assert both.dtype == "int8" and np.allclose(both.rows(), quarter.rows())
    with pytest.raises(SpanqaError, match="vector dtype 'int4'"):
        Vectors.store(x, "int4")


@pytest.mark.parametrize("dtype", ["float16", "int8"])
def test_an_hnsw_graph_is_kept_when_asked_and_finds_what_exact_search_finds(hybrid, tmp_path, dtype):
    pytest.importorskip("usearch")
    from dataclasses import replace

    index, _ = hybrid
    root = tmp_path / "coll"
    root.mkdir()
    graph_index, _ = CollectionIndex.build([str(make_collection(root))], tmp_path / "index",
                                           replace(HYBRID, vector_dtype=dtype, ann="on"))
    assert (tmp_path / "index" / "vectors.usearch").exists() and not (index.folder / "vectors.usearch").exists()
    reopened = CollectionIndex.open(tmp_path / "index")
    assert reopened.vectors.graph is not None and reopened.vectors.dtype == dtype
    for question in ("Which engineer's company built the tower?", "Who won the Nobel Prize in 1903?"):
        exact = [(p.number, round(s, 2)) for p, s in index.search(question, k=4, retriever="dense")]
        approx = [(p.number, round(s, 2)) for p, s in reopened.search(question, k=4, retriever="dense")]
        assert [n for n, _ in approx] == [n for n, _ in exact]  # a few passages: the graph is exact
        assert [s for _, s in approx] == pytest.approx([s for _, s in exact], abs=0.02)
    reopened.delete(["eiffel.md"])  # the graph is rebuilt with the folder
    assert all(p.document.id != "eiffel.md" for p, _ in
               CollectionIndex.open(tmp_path / "index").search("Eiffel tower engineer", k=10, retriever="dense"))


def test_an_index_with_a_graph_but_no_usearch_searches_exactly(hybrid, tmp_path, monkeypatch, caplog):
    pytest.importorskip("usearch")
    from dataclasses import replace

    from spanqa.retrieval import dense

    root = tmp_path / "coll"
    root.mkdir()
    CollectionIndex.build([str(make_collection(root))], tmp_path / "index", replace(HYBRID, ann="on"))
    monkeypatch.setattr(dense, "_usearch", lambda: None)
    reopened = CollectionIndex.open(tmp_path / "index")
    assert reopened.vectors.graph is None and "usearch is not installed" in caplog.text
    assert first_doc(reopened, "Which engineer's company built the tower?", "dense") == "eiffel.md"


@pytest.mark.slow  # quantizing the encoder: ~13 s
def test_passages_in_bulk_encode_with_openvino_int8_close_to_torch(monkeypatch):
    pytest.importorskip("openvino")
    pytest.importorskip("nncf")
    from spanqa.retrieval import dense

    texts = [f"Passage {i}: the {w} river flows past {c} into the sea near the old harbour."
             for i, (w, c) in enumerate([(w, c) for w in ("Nile", "Rhine", "Thames", "Seine", "Danube")
                                        for c in ("Cairo", "Basel", "London", "Paris", "Vienna", "Rome")])]
    encoder = dense.SentenceEncoder()
    exact = dense.SentenceEncoder(engine="torch").encode(texts)
    monkeypatch.setattr(dense, "BULK_ABOVE", 10)
    bulk = encoder.encode(texts)
    assert encoder._bulk  # the OpenVINO model ran
    cosines = np.sum(bulk * exact, axis=1)  # int8 kernels differ by CPU: min 0.961, mean 0.969 on an AMX Xeon; min above 0.97 on EPYC
    assert cosines.min() > 0.95 and cosines.mean() > 0.96 and np.allclose(np.linalg.norm(bulk, axis=1), 1.0, atol=1e-5)
    assert encoder.encode(texts[:3]).shape == (3, 384)  # a few questions: torch, as before


def test_an_index_file_with_an_unknown_vector_setting_is_named():
    with pytest.raises(SpanqaError, match="ann 'sometimes': expected one of auto, on, off"):
        IndexInfo.from_dict({"ann": "sometimes"})
    with pytest.raises(SpanqaError, match="vector_dtype 'float8'"):
        IndexInfo.from_dict({"vector_dtype": "float8"})


def test_a_full_disk_while_writing_keeps_the_index_as_it_was_and_says_so(tmp_path, monkeypatch):
    import errno

    from spanqa.retrieval import index as index_module

    docs = make_collection(tmp_path)
    index, _ = CollectionIndex.build([str(docs / "paris.txt")], tmp_path / "index", BM25_ONLY)
    (tmp_path / "new").mkdir()
    (tmp_path / "new" / "etna.txt").write_text("Mount Etna is a volcano in Sicily that erupted in 2021.\n")

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(index_module.np, "save", full)
    with pytest.raises(SpanqaError, match=r"could not write .*index: the disk is full; it needs about [\d.]+ (KB|bytes)"):
        index.add([str(tmp_path / "new" / "etna.txt")])
    monkeypatch.undo()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["docs", "index", "new"]  # no half-written folder
    assert [d.id for d in CollectionIndex.open(tmp_path / "index").documents] == ["paris.txt"]
