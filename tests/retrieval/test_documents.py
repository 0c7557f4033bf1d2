"""Reading a collection: text kept exactly, HTML and PDF text extracted, bad files skipped with a reason."""

from retrieval.collection_files import CURIE_HTML, EIFFEL, NILE_PDF_LINES, PARIS, make_collection

from conftest import V1
from spanqa.retrieval.documents import Document, Skipped, read_sources


def test_a_folder_gives_every_readable_document_and_names_every_skipped_file(tmp_path):
    items = list(read_sources([str(make_collection(tmp_path))]))
    docs = {d.id: d for d in items if isinstance(d, Document)}
    skipped = {s.path.rsplit("/", 1)[-1]: s.reason for s in items if isinstance(s, Skipped)}
    assert sorted(docs) == ["eiffel.md", "nile.pdf", "paris.txt", "row-1", "sub/curie.html"]
    assert docs["eiffel.md"].text == EIFFEL and docs["paris.txt"].text == PARIS  # exactly the file's text
    assert docs["row-1"].title == "Alps" and docs["row-1"].text == "The Alps are a mountain range."
    assert sorted(skipped) == ["blob.txt", "broken.pdf", "empty.txt", "latin1.md", "locked.pdf"]
    assert "binary" in skipped["blob.txt"] and "UTF-8" in skipped["latin1.md"]
    assert "encrypted" in skipped["locked.pdf"] and "no text" in skipped["empty.txt"]


def test_html_gives_the_visible_text_in_paragraphs_and_its_title(tmp_path):
    (tmp_path / "curie.html").write_text(CURIE_HTML)
    (doc,) = read_sources([str(tmp_path / "curie.html")])
    assert doc.title == "Marie Curie"
    assert "color" not in doc.text and "var x" not in doc.text
    assert "Marie Curie did pioneering research on radioactivity." in doc.text.split("\n\n")
    assert "Nobel Prize" in doc.text


def test_pdf_text_is_extracted(tmp_path):
    make_collection(tmp_path)
    (doc,) = read_sources([str(tmp_path / "docs" / "nile.pdf")])
    assert all(line in doc.text for line in NILE_PDF_LINES)


def test_qa_data_gives_one_document_per_distinct_context():
    docs = list(read_sources([V1]))
    import json

    contexts = {p["context"] for a in json.load(open(V1))["data"] for p in a["paragraphs"]}
    assert {d.text for d in docs} == contexts and len(docs) == len(contexts)
    assert docs[0].id.startswith("squad-v1.1-dev-fixture.json#") and docs[0].title
