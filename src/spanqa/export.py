"""`spanqa export`: a reader folder -> ONNX (fp32 or int8) or a torch int8 reader, with the EM/F1 change."""

from __future__ import annotations

import dataclasses
import shutil
import tempfile
import time
from pathlib import Path

from spanqa.artifacts import ONNX_FILE
from spanqa.data import load_examples
from spanqa.errors import SpanqaError
from spanqa.evaluation import evaluate
from spanqa.models.onnx_model import export_onnx, quantize_int8
from spanqa.reader import Reader, ReaderConfig
from spanqa.tokenization import input_names_for


def export_reader(model: str, fmt: str, quantize: str, output: str) -> Path:
    """Write the exported reader to `output` (which must not hold files).

    Raises:
        SpanqaError: an unknown format/quantization, or an output folder that already holds files.
    """
    if fmt not in ("onnx", "torch") or quantize not in ("none", "int8") or (fmt, quantize) == ("torch", "none"):
        raise SpanqaError(f"--format {fmt} --quantize {quantize}: expected onnx (none or int8) or torch with int8.")
    out = Path(output)
    if out.exists() and any(out.iterdir()):
        raise SpanqaError(f"{out} already holds files; choose an empty or new --output folder.")
    reader = Reader.load(model, device="cpu", precision="fp32")
    if fmt == "onnx" and getattr(reader.model.config, "model_type", "") == "spanqa_recurrent":
        raise SpanqaError(f"{model}: a recurrent reader ({reader.model.config.architecture}) cannot be exported to "
                          "ONNX: it splits each window into question and context by their lengths, which a traced "
                          "graph would fix to one example's. Serve the folder as it is (spanqa serve --model "
                          f"{model}), or use --format torch --quantize int8.")
    with tempfile.TemporaryDirectory(dir=out.parent if out.parent.exists() else None) as tmp:
        stage = Path(tmp) / "reader"
        stage.mkdir()
        reader.tokenizer.save_pretrained(stage)
        if fmt == "onnx":
            onnx_path = export_onnx(reader.model, input_names_for(reader.tokenizer), Path(tmp) / ONNX_FILE)
            if quantize == "int8":
                quantize_int8(onnx_path, stage / ONNX_FILE)
            else:
                shutil.copy(onnx_path, stage / ONNX_FILE)
        else:
            reader.model.save_pretrained(stage, safe_serialization=True)
        info = dataclasses.replace(
            reader.info, runtime="onnxruntime" if fmt == "onnx" else "torch", quantize=quantize, exported_from=model,
            default_precision="int8" if fmt == "torch" else reader.info.default_precision,
        )
        info.save(stage)
        out.parent.mkdir(parents=True, exist_ok=True)
        if out.exists():
            out.rmdir()
        shutil.move(str(stage), out)
    return out


def compare(original: str, exported: str, data: str, max_samples: int, config: ReaderConfig = ReaderConfig()) -> dict:
    """EM/F1 and questions/s of the original (fp32) and the exported reader on the same questions.

    `config` applies to both (batch size, no-answer settings, windows); precision is fp32 for the original
    and the exported folder's own for the export.
    """
    dataset = load_examples(data)
    dataset = dataclasses.replace(dataset, examples=dataset.examples[:max_samples])
    out = {}
    for name, reader in (("original_fp32", Reader.load(original, config, device="cpu", precision="fp32")),
                         ("exported", Reader.load(exported, config, device="cpu", precision="auto"))):
        t0 = time.perf_counter()
        preds = reader.predict(dataset.examples)
        seconds = time.perf_counter() - t0
        na_probs = {p.id: p.na_prob for p in preds} if reader.allow_null else None
        scores = evaluate(dataset, {p.id: p.answer for p in preds}, na_probs)
        out[name] = {"exact": scores["exact"], "f1": scores["f1"], "questions_per_second": len(preds) / seconds}
    out["f1_change"] = out["exported"]["f1"] - out["original_fp32"]["f1"]
    out["exact_change"] = out["exported"]["exact"] - out["original_fp32"]["exact"]
    out["questions"] = len(dataset)
    return out
