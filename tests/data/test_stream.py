"""Streamed questions equal the loaded ones, for every format, and are counted without loading them."""

import gzip
import json

import pytest
from conftest import FIXTURES, V1, V2

from spanqa.data import load_examples
from spanqa.data.stream import open_stream
from spanqa.errors import SpanqaError

MRQA = str(FIXTURES / "mrqa-drop-fixture.jsonl.gz")


@pytest.mark.parametrize("source, fmt, version", [(V1, "squad", "1.1"), (V2, "squad", "v2.0"), (MRQA, "mrqa", "")])
def test_a_stream_gives_the_questions_load_examples_gives_in_the_same_order(source, fmt, version):
    stream, loaded = open_stream(source), load_examples(source)
    assert stream.format == fmt and list(stream) == loaded.examples
    assert stream.count() == (len(loaded), version)


def test_rows_one_line_squad_gzip_and_saved_datasets_stream_too(tmp_path):
    import datasets

    examples = load_examples(V1).examples[:40]
    rows = [{"id": e.id, "question": e.question, "context": e.context, "title": e.title,
             "answers": {"text": [a.text for a in e.answers], "answer_start": [a.start for a in e.answers]}}
            for e in examples]
    jsonl = tmp_path / "rows.jsonl"
    jsonl.write_text("".join(json.dumps(r) + "\n" for r in rows))
    one_line = tmp_path / "squad.json.gz"  # one line, gzip: the shape of the official files
    with gzip.open(one_line, "wt") as fh:
        json.dump(json.loads((FIXTURES / "squad-v1.1-dev-fixture.json").read_text()), fh)
    datasets.Dataset.from_list(rows).save_to_disk(str(tmp_path / "saved"))
    assert list(open_stream(jsonl)) == load_examples(jsonl).examples
    assert list(open_stream(one_line)) == load_examples(V1).examples
    saved = open_stream(tmp_path / "saved")
    assert saved.format == "hf" and list(saved) == load_examples(tmp_path / "saved").examples
    assert saved.count() == (40, "")


def test_bad_json_is_named_with_the_file_as_it_is_reached(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text('{"data": [{"title": "x", "paragraphs": [{"context": "c", "qas": [{"id": "1", "question": ')
    with pytest.raises(SpanqaError, match="bad.json: not valid JSON"):
        list(open_stream(bad))
    row = tmp_path / "rows.jsonl"
    row.write_text('{"id": "1", "question": "q", "context": "c"}\n{"id": 2, "context": "c"}\n')
    with pytest.raises(SpanqaError, match="rows.jsonl: line 2: missing field 'question'"):
        list(open_stream(row))
