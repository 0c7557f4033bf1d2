"""Export to ONNX (fp32, int8) and torch int8: the exported reader loads and answers like the original."""

import json

import pytest
from conftest import FIXTURES

from spanqa.cli import main
from spanqa.errors import SpanqaError
from spanqa.commands.export import export_reader
from spanqa.reader import Reader

V1 = str(FIXTURES / "squad-v1.1-dev-fixture.json")
CONTEXT = "The Eiffel Tower was designed by the engineering company of Gustave Eiffel and built in 1889."


def test_onnx_fp32_answers_like_torch_fp32(tiny_model, tmp_path):
    pytest.importorskip("onnxruntime")
    out = export_reader(str(tiny_model), "onnx", "none", str(tmp_path / "onnx"))
    assert (out / "model.onnx").exists() and (out / "tokenizer.json").exists()
    original = Reader.load(str(tiny_model), device="cpu", precision="fp32")
    exported = Reader.load(str(out))
    assert type(exported.model).__name__ == "OnnxQAModel"
    pairs = [("Who designed it?", CONTEXT), ("When was it built?", CONTEXT * 20)]  # the second has many windows
    for a, b in zip(original.answer_batch(pairs, top_k=3), exported.answer_batch(pairs, top_k=3)):
        assert [x.text for x in a] == [x.text for x in b]
        assert [x.score for x in a] == pytest.approx([x.score for x in b], abs=1e-3)


def test_export_cli_int8_reports_the_f1_change(tiny_model, tmp_path, capsys, recwarn):
    pytest.importorskip("onnxruntime")
    code = main(["export", "--model", str(tiny_model), "--format", "onnx", "--quantize", "int8",
                 "--output", str(tmp_path / "int8"), "--eval-data", V1, "--max-eval-samples", "40"])
    out, err = capsys.readouterr()
    report = json.loads(out.strip().splitlines()[-1])
    assert f"wrote an ONNX Runtime reader (int8) to {tmp_path / 'int8'}" in err
    # the tracer's warnings are moot once the exported answers are measured: none reach the user
    assert not [w for w in recwarn if "Tracer" in w.category.__name__ or "negative values" in str(w.message)]
    assert code == 0 and report["questions"] == 40
    assert {"original_fp32", "exported", "f1_change"} <= report.keys()
    info = json.loads((tmp_path / "int8" / "spanqa_reader.json").read_text())
    assert info["runtime"] == "onnxruntime" and info["quantize"] == "int8"


def test_torch_int8_reader(tiny_model, tmp_path):
    out = export_reader(str(tiny_model), "torch", "int8", str(tmp_path / "t8"))
    reader = Reader.load(str(out), device="cpu")
    assert "Quantized" in type(reader.model.qa_outputs).__name__ or "quantized" in str(type(reader.model.qa_outputs))
    (best,) = reader.answer("Who designed it?", CONTEXT)
    assert best.text == CONTEXT[best.start : best.end]


def test_export_refuses_a_used_folder_and_bad_formats(tiny_model, tmp_path):
    used = tmp_path / "used"
    used.mkdir()
    (used / "x").write_text("x")
    with pytest.raises(SpanqaError, match="already holds files"):
        export_reader(str(tiny_model), "onnx", "none", str(used))
    with pytest.raises(SpanqaError, match="--format tflite"):
        export_reader(str(tiny_model), "tflite", "none", str(tmp_path / "new"))


def test_a_missing_exporter_package_names_the_extra_to_install(tiny_model, tmp_path, monkeypatch, capsys):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "onnx" else real(name, *a))
    assert main(["export", "--model", str(tiny_model), "--format", "onnx", "--output", str(tmp_path / "o"),
                 "--eval-data", "none"]) == 2
    err = capsys.readouterr().err
    assert "--format onnx needs onnx: pip install 'spanqa[onnx]'" in err and "Traceback" not in err
    assert not (tmp_path / "o").exists()  # nothing half-written


def test_a_missing_data_file_stops_the_export_before_it_writes(tiny_model, tmp_path, capsys):
    missing = str(tmp_path / "dev-v1.1.json")
    assert main(["export", "--model", str(tiny_model), "--format", "onnx", "--output", str(tmp_path / "o"),
                 "--eval-data", missing]) == 2
    assert f"{missing}: no such file" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()
