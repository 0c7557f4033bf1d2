"""Reader, classifier and encoder info files: typed, versioned, and readable when written by older spanqa."""

import json

import pytest
from conftest import FIXTURES

from spanqa.artifacts import READER_FILE, SCHEMA_VERSION, ClassifierInfo, EncoderInfo, ReaderInfo
from spanqa.config import DataConfig, DecodeConfig
from spanqa.errors import SpanqaError


def test_reader_info_round_trips_with_its_nested_configs(tmp_path):
    info = ReaderInfo(version_2_with_negative=True, base_model="minilm-l6", data=DataConfig(256, 64, 32),
                      decode=DecodeConfig(10, 20, -1.5), eval={"eval_f1": 61.5}, runtime="onnxruntime", quantize="int8")
    info.save(tmp_path)
    back = ReaderInfo.load(tmp_path)
    assert back == info and isinstance(back.data, DataConfig) and back.decode.null_score_diff_threshold == -1.5
    assert json.loads((tmp_path / READER_FILE).read_text())["schema_version"] == SCHEMA_VERSION


def test_files_written_before_the_schema_version_load():
    legacy = ReaderInfo.load(FIXTURES / "legacy-reader-v2")
    assert legacy.version_2_with_negative and legacy.data == DataConfig(128, 32, 32)
    assert legacy.decode.null_score_diff_threshold == pytest.approx(-27.63102111592755)
    assert legacy.eval["eval_HasAns_total"] == 9 and legacy.runtime == "torch"
    exported = ReaderInfo.from_dict(json.loads((FIXTURES / "legacy-reader-json" / "export-torch-int8.json").read_text()))
    assert (exported.default_precision, exported.quantize, exported.exported_from) == (
        "int8", "int8", "tests/fixtures/legacy-reader-v2")


def test_a_folder_without_the_file_has_no_info(tmp_path):
    assert ReaderInfo.load(tmp_path) is None and not ClassifierInfo.exists(tmp_path)


@pytest.mark.parametrize("content, message", [
    ('{"schema_version": 99}', "schema_version 99 is newer"),
    ('{"decode": {"n_best": 3}}', r"field 'decode'.*n_best"),
    ('{"data": [384]}', "field 'data': expected an object, got list"),
    ('{"base": "x"}', r"unknown field 'base' \(expected: version_2_with_negative"),
    ('{"version_2_with_negative": "yes"}', "version_2_with_negative must be true or false"),
    ('{"runtime": "tflite"}', "runtime 'tflite'"),
    ('[1, 2]', "expected a JSON object, got list"),
    ('{"data": ', "line 1, column 10: not valid JSON"),
])
def test_bad_reader_files_name_the_file_and_field(tmp_path, content, message):
    (tmp_path / READER_FILE).write_text(content)
    with pytest.raises(SpanqaError, match=message) as err:
        ReaderInfo.load(tmp_path)
    assert READER_FILE in str(err.value)


def test_classifier_and_encoder_infos_round_trip(tmp_path):
    ClassifierInfo(labels=["neg", "pos"], max_seq_length=64, eval={"eval_accuracy": 0.9}).save(tmp_path)
    EncoderInfo(base="minilm-l6", init_weights="pretrained", eval={"eval_mlm_loss": 6.6}).save(tmp_path)
    assert ClassifierInfo.load(tmp_path).labels == ["neg", "pos"]
    assert EncoderInfo.load(tmp_path).init_weights == "pretrained"
