"""Readers: every format into one Example type, detected from content; bad input named precisely."""

import gzip
import json

import pytest
from conftest import FIXTURES

from spanqa.data import Answer, Example, check_answer_starts, load_examples
from spanqa.errors import SpanqaError

SQUAD = {
    "version": "1.1",
    "data": [{"title": "T", "paragraphs": [{"context": "Paris is in France.", "qas": [
        {"id": "q1", "question": "Where is Paris?", "answers": [{"text": "France", "answer_start": 12}]},
    ]}]}],
}


def write(path, text, gz=False):
    data = text.encode()
    path.write_bytes(gzip.compress(data) if gz else data)
    return path


def test_squad_v1_fixture():
    ds = load_examples(FIXTURES / "squad-v1.1-dev-fixture.json")
    assert len(ds) == 300 and ds.scoring == "squad-v1.1" and ds.version == "1.1"
    ex = ds.examples[0]
    assert all(ex.context[a.start : a.end] == a.text for a in ex.answers)


def test_squad_v2_fixture_has_unanswerable():
    ds = load_examples(FIXTURES / "squad-v2.0-dev-fixture.json")
    impossible = [e for e in ds.examples if e.is_impossible]
    assert ds.scoring == "squad-v2.0" and impossible
    assert all(e.answers == () and e.gold_texts == () for e in impossible)


def test_mrqa_uses_qid_detected_spans_and_answer_strings():
    ds = load_examples(FIXTURES / "mrqa-drop-fixture.jsonl.gz")
    assert ds.format == "mrqa" and ds.scoring == "mrqa"
    with gzip.open(FIXTURES / "mrqa-drop-fixture.jsonl.gz", "rt") as f:
        first = json.loads(f.read().splitlines()[1])
    qa = first["qas"][0]
    ex = ds.examples[0]
    assert ex.id == qa["qid"] and ex.gold_texts == tuple(qa["answers"])
    s, e = qa["detected_answers"][0]["char_spans"][0]
    assert ex.answers[0] == Answer(first["context"][s : e + 1], s)


def test_format_is_detected_from_content_not_name(tmp_path):
    squad = load_examples(write(tmp_path / "data.txt", json.dumps(SQUAD), gz=True))
    assert squad.format == "squad" and squad.examples[0].answers[0].text == "France"
    row = {"id": "r1", "question": "q?", "context": "ctx", "answers": {"text": ["ctx"], "answer_start": [0]}}
    rows = load_examples(write(tmp_path / "rows.json", json.dumps(row) + "\n" + json.dumps(row | {"id": "r2"})))
    assert rows.format == "jsonl" and [e.id for e in rows.examples] == ["r1", "r2"]


def test_jsonl_row_without_answers_is_unanswerable(tmp_path):
    row = {"id": "r", "question": "q?", "context": "c", "answers": {"text": [], "answer_start": []}}
    ds = load_examples(write(tmp_path / "r.jsonl", json.dumps(row)))
    assert ds.examples[0].is_impossible and ds.scoring == "squad-v2.0"


def test_saved_hf_dataset_folder(tmp_path):
    import datasets

    rows = {
        "id": ["a", "b"], "title": ["T", "T"], "question": ["Where?", "Who?"],
        "context": ["in Paris", "in Paris"],
        "answers": [{"text": ["Paris"], "answer_start": [3]}, {"text": [], "answer_start": []}],
    }
    datasets.DatasetDict({"validation": datasets.Dataset.from_dict(rows)}).save_to_disk(tmp_path / "ds")
    ds = load_examples(tmp_path / "ds", split="validation")
    assert ds.format == "hf" and ds.examples[0].answers == (Answer("Paris", 3),)
    assert ds.examples[1].is_impossible
    with pytest.raises(SpanqaError, match="no split 'train'"):
        load_examples(tmp_path / "ds", split="train")


def test_hub_name_offline_gives_clear_error():
    with pytest.raises(SpanqaError, match="Hugging Face hub"):
        load_examples("no_such_dataset_name_xyz")


def test_bad_answer_start_is_reported_and_repaired(tmp_path, caplog):
    doc = json.loads(json.dumps(SQUAD))
    qa = doc["data"][0]["paragraphs"][0]["qas"][0]
    qa["answers"][0]["answer_start"] = 10
    path = write(tmp_path / "bad.json", json.dumps(doc))
    kept = load_examples(path)
    assert kept.examples[0].answers[0].start == 10
    assert "1 answer_start value(s)" in caplog.text and "q1" in caplog.text
    assert load_examples(path, repair_answers=True).examples[0].answers[0].start == 12


def test_repair_picks_the_nearest_occurrence():
    ex = Example("x", "q", "ab ab ab", (Answer("ab", 4),))
    fixed, bad = check_answer_starts([ex], repair=True)
    assert bad == ["x"] and fixed[0].answers[0].start in (3, 6) and fixed[0].answers[0].start == 3


@pytest.mark.parametrize(
    "name, content, message",
    [
        ("empty.json", "", "the file is empty"),
        ("notjson.json", "{this is not json", "line 1, column 2: not valid JSON"),
        ("nodata.json", '{"version": "1.1"}', "'data' list"),
        ("noid.json", json.dumps({"data": [{"title": "t", "paragraphs": [{"context": "c", "qas": [
            {"question": "q?", "answers": []}]}]}]}), r"data\[0\].paragraphs\[0\].qas\[0\]: missing field 'id'"),
        ("mrqa.jsonl", '{"header": {"dataset": "X"}}\n{"context": "c", "qas": []}\n{oops\n', "line 3: not valid JSON"),
        ("badtype.json", json.dumps({"data": [{"paragraphs": [{"context": 3, "qas": []}]}]}), "context: expected str"),
    ],
)
def test_bad_input_names_file_and_place(tmp_path, name, content, message):
    path = write(tmp_path / name, content)
    with pytest.raises(SpanqaError, match=message) as err:
        load_examples(path)
    assert str(path) in str(err.value)


def test_missing_file_and_truncated_gzip(tmp_path):
    with pytest.raises(SpanqaError, match="no such file"):
        load_examples(tmp_path / "nope.json")
    whole = gzip.compress(json.dumps(SQUAD).encode())
    (tmp_path / "cut.json.gz").write_bytes(whole[: len(whole) // 2])
    with pytest.raises(SpanqaError, match="truncated or corrupt"):
        load_examples(tmp_path / "cut.json.gz")
