"""Backends behind the Reader: ONNX Runtime (fused graph) and OpenVINO give torch's logits; `auto` picks the
fastest measured variant within the accuracy guard and says why."""

import json
import logging

import numpy as np
import pytest
import torch

from spanqa.artifacts import BackendMeasurement, BackendTable
from spanqa.answering.backends import choose
from spanqa.cli import main
from spanqa.errors import SpanqaError
from spanqa.commands.export import export_reader
from spanqa.reader import Reader

CONTEXT = "The Eiffel Tower was designed by the engineering company of Gustave Eiffel and built in 1889."
PAIRS = [("Who designed it?", CONTEXT), ("When was it built?", CONTEXT * 20)]  # the second has many windows


def logits(reader: Reader, ids: torch.Tensor) -> np.ndarray:
    inputs = {"input_ids": ids, "token_type_ids": torch.zeros_like(ids), "attention_mask": torch.ones_like(ids)}
    with torch.no_grad():
        out = reader.model(**inputs)
    return np.stack([out.start_logits.float().numpy(), out.end_logits.float().numpy()])


@pytest.fixture(scope="module")
def torch_reader(tiny_model):
    return Reader.load(str(tiny_model), device="cpu", precision="fp32")


@pytest.mark.parametrize("fmt, runtime", [("onnx", "onnxruntime"), ("openvino", "openvino")])
def test_each_backend_gives_torchs_logits_and_answers(tiny_model, torch_reader, tmp_path, fmt, runtime):
    pytest.importorskip("onnxruntime" if fmt == "onnx" else "openvino")
    out = export_reader(str(tiny_model), fmt, "none", str(tmp_path / fmt))
    reader = Reader.load(str(out))
    assert reader.backend == runtime and json.loads((out / "spanqa_reader.json").read_text())["runtime"] == runtime
    ids = torch.randint(5, len(reader.tokenizer), (3, 41))
    np.testing.assert_allclose(logits(reader, ids), logits(torch_reader, ids), atol=1e-4)
    for a, b in zip(torch_reader.answer_batch(PAIRS, top_k=3), reader.answer_batch(PAIRS, top_k=3)):
        assert [(x.start, x.end) for x in a] == [(x.start, x.end) for x in b]


@pytest.mark.parametrize("fmt", ["onnx", "openvino"])
def test_int8_variants_stay_close_to_fp32(tiny_model, torch_reader, tmp_path, fmt):
    pytest.importorskip("onnxruntime" if fmt == "onnx" else "nncf")
    out = export_reader(str(tiny_model), fmt, "int8", str(tmp_path / fmt))
    reader = Reader.load(str(out))
    ids = torch.randint(5, len(reader.tokenizer), (2, 33))
    got, want = logits(reader, ids), logits(torch_reader, ids)
    assert np.abs(got - want).max() < 0.05 * max(1.0, np.abs(want).max())
    assert reader.runs_on == f"{reader.backend} int8 on cpu"  # what `ask`, /v1/model and the page show
    if fmt == "openvino":  # activations quantized too (calibrated): the matrix multiplications run in int8
        assert 'type="FakeQuantize"' in (out / "openvino_model.xml").read_text()
    else:  # one weight scale per output channel (per tensor lost 5.5 F1 on the quickstart reader)
        import onnx

        graph = onnx.load(str(out / "model.onnx")).graph
        shapes = {i.name: list(i.dims) for i in graph.initializer}
        weight_points = [shapes[n.input[3]] for n in graph.node if n.op_type == "MatMulInteger"]
        assert weight_points and all(p and p[0] > 1 for p in weight_points)


def test_torch_int8_says_int8_and_runs_without_autocast(tiny_model, torch_reader):
    reader = Reader.load(str(tiny_model), device="cpu", precision="int8")
    assert (reader.runs_on, reader.autocast_precision) == ("torch int8 on cpu", "fp32")
    linear = next(m for m in reader.model.modules() if type(m).__name__ == "Linear" and hasattr(m, "weight")
                  and callable(m.weight))  # torch.ao's dynamic quantized Linear
    assert linear.weight().qscheme() == torch.per_channel_affine
    assert reader.answer(*PAIRS[0])[0].text


def test_the_onnx_graph_is_fused(tiny_model, tmp_path):
    pytest.importorskip("onnxruntime")
    from spanqa.models.onnx_model import export_onnx, optimize_onnx

    model = Reader.load(str(tiny_model), device="cpu", precision="fp32").model
    raw = export_onnx(model, ["input_ids", "token_type_ids", "attention_mask"], tmp_path / "raw.onnx")
    fused = optimize_onnx(raw, tmp_path / "fused.onnx", model.config)
    assert fused.get("Attention", 0) == 2 and fused.get("SkipLayerNormalization", 0) >= 2
    assert fused.get("BiasGelu", 0) + fused.get("FastGelu", 0) + fused.get("Gelu", 0) == 2


def row(backend, precision, qps, f1_change, cpu="this"):
    return BackendMeasurement(backend, precision, ".", 50.0, 60.0 + f1_change, f1_change, f1_change, qps, cpu)


def test_auto_takes_the_fastest_variant_inside_the_accuracy_guard():
    table = BackendTable(measured=[row("torch", "fp32", 100, 0.0), row("onnxruntime", "int8", 400, -1.4),
                                   row("openvino", "fp32", 250, 0.0), row("openvino", "bf16", 300, -0.2)],
                         questions=300)
    best, why = choose(table, cpu="this")
    assert best.name == "openvino bf16" and "onnxruntime int8 F1 -1.40 (guard 1.0)" in why
    assert choose(table, precision="int8", cpu="this")[0].name == "onnxruntime int8"  # asked for: no guard
    assert choose(table, backend="torch", cpu="this")[0].name == "torch fp32"
    elsewhere = choose(table, cpu="another CPU")
    assert elsewhere[0].name == "openvino bf16" and "not this CPU" in elsewhere[1]
    with pytest.raises(SpanqaError, match="no onnxruntime fp32 variant"):
        choose(table, backend="onnxruntime", precision="fp32", cpu="this")


def test_the_backend_table_refuses_what_it_cannot_read(tmp_path):
    (tmp_path / "spanqa_backends.json").write_text(json.dumps({"measured": [{"backend": "tvm"}]}))
    with pytest.raises(SpanqaError, match="measured\\[0\\]"):
        BackendTable.load(tmp_path)


def test_export_all_measures_every_backend_and_auto_loads_the_choice(tiny_model, tmp_path, capsys, caplog):
    pytest.importorskip("openvino")
    from conftest import V1

    out = tmp_path / "all"
    code = main(["export", "--model", str(tiny_model), "--format", "all", "--output", str(out),
                 "--eval-data", V1, "--max-eval-samples", "30"])
    table = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    names = {(r["backend"], r["precision"]) for r in table["measured"]}
    assert code == 0 and {("torch", "fp32"), ("onnxruntime", "fp32"), ("onnxruntime", "int8"),
                          ("openvino", "fp32"), ("openvino", "int8")} <= names
    fp32 = [r for r in table["measured"] if r["precision"] == "fp32"]
    assert all(abs(r["f1_change"]) < 1e-9 for r in fp32)  # same answers as fp32 torch
    with caplog.at_level(logging.INFO, logger="spanqa.reader"):
        reader = Reader.load(str(out))
    best, _ = choose(BackendTable.load(out))
    assert (reader.backend, reader.backend_reason.split(":")[0]) == (best.backend, best.name)
    assert "fastest measured on this CPU" in caplog.text
    forced = Reader.load(str(out), backend="onnxruntime", precision="fp32")
    assert forced.backend == "onnxruntime" and forced.answer(*PAIRS[0])[0].text


def test_a_plain_folder_names_the_export_that_adds_a_backend(tiny_model):
    with pytest.raises(SpanqaError, match="spanqa export --model .* --format openvino"):
        Reader.load(str(tiny_model), backend="openvino")
    with pytest.raises(SpanqaError, match="--backend tvm"):
        Reader.load(str(tiny_model), backend="tvm")
