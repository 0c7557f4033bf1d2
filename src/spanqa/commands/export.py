"""`spanqa export`: a reader folder -> another engine's reader folder, with the EM/F1 change measured.

Formats: onnx (ONNX Runtime, graph fused by its transformer optimizer; int8: dynamic quantization),
openvino (OpenVINO IR; int8: NNCF post-training quantization, calibrated on `CALIBRATION_WINDOWS` windows of
the bundled SQuAD train sample or of `calibration_data`), torch (int8: dynamic quantization at load), and all:
one folder with the torch weights and every backend under `backends/`, each measured against fp32 torch on
the same dev questions (speed and EM/F1 change) into `spanqa_backends.json`, which `backend="auto"`
chooses from (see `spanqa.answering.backends`).
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import tempfile
import time
from importlib import resources
from pathlib import Path

import numpy as np

from spanqa.artifacts import ONNX_FILE, BackendMeasurement, BackendTable
from spanqa.data import load_examples
from spanqa.files import file_mode, out_of_space, write_failed
from spanqa.errors import SpanqaError
from spanqa.evaluation import evaluate
from spanqa.features import build_features
from spanqa.precision import cpu_has_native_bf16, cpu_signature
from spanqa.reader import Reader, ReaderConfig, load_backend
from spanqa.tokenization import input_names_for

FORMATS = ("onnx", "openvino", "torch", "all")
RUNTIME_OF = {"onnx": "onnxruntime", "openvino": "openvino", "torch": "torch"}
FORMAT_NAMES = {"onnx": "ONNX", "openvino": "OpenVINO", "all": "ONNX or OpenVINO"}
CALIBRATION_WINDOWS = 300
TRAIN_SAMPLE = str(resources.files("spanqa") / "assets" / "squad-v1.1-train-sample.json.gz")


def export_reader(model: str, fmt: str, quantize: str, output: str, calibration_data: str = TRAIN_SAMPLE) -> Path:
    """Write the exported reader to `output` (which must not hold files); `all` is not measured here
    (`measure_backends` does that).

    Args:
        calibration_data: questions whose windows calibrate OpenVINO int8 (`CALIBRATION_WINDOWS` of them);
            best drawn from the data the reader will answer, never from what it is measured on.

    Raises:
        SpanqaError: an unknown format/quantization, an output folder that already holds files, or a reader
            the format cannot express.
    """
    if fmt not in FORMATS or quantize not in ("none", "int8") or (fmt, quantize) == ("torch", "none") or \
            (fmt == "all" and quantize != "none"):
        raise SpanqaError(f"--format {fmt} --quantize {quantize}: expected onnx or openvino (--quantize none or "
                          "int8), torch with --quantize int8, or all (every backend, measured).")
    out = Path(output)
    if out.exists() and any(out.iterdir()):
        raise SpanqaError(f"{out} already holds files; choose an empty or new --output folder.")
    reader = Reader.load(model, device="cpu", precision="fp32", backend="torch")
    if fmt != "torch" and getattr(reader.model.config, "model_type", "") == "spanqa_recurrent":
        raise SpanqaError(f"{model}: a recurrent reader ({reader.model.config.architecture}) cannot be exported to "
                          f"{FORMAT_NAMES[fmt]}: it splits each window into question and context by their lengths, which a "
                          "traced graph would fix to one example's. Serve the folder as it is (spanqa serve "
                          f"--model {model}), or use --format torch --quantize int8.")
    try:
        return _stage_and_move(reader, model, fmt, quantize, out, calibration_data)
    except Exception as exc:  # the staging folder is gone; a full disk is named, with what the export needs
        needs = 4 * sum(p.numel() * p.element_size() for p in reader.model.parameters())
        if isinstance(exc, SpanqaError) or not out_of_space(exc, out.parent, needs):
            raise
        raise write_failed(exc, out, needs) from None


def _stage_and_move(reader: Reader, model: str, fmt: str, quantize: str, out: Path, calibration_data: str) -> Path:
    """Write the export in a temporary folder beside `out` (removed if anything fails), then move it there."""
    with tempfile.TemporaryDirectory(dir=out.parent if out.parent.exists() else None) as tmp:
        stage = Path(tmp) / "reader"
        stage.mkdir()
        reader.tokenizer.save_pretrained(stage)
        if fmt == "all":
            reader.model.save_pretrained(stage, safe_serialization=True)
            _write_backends(reader, Path(tmp), stage, calibration_data)
            info = dataclasses.replace(reader.info, runtime="torch", quantize="none", exported_from=model)
        else:
            _write_format(reader, fmt, quantize, Path(tmp), stage, calibration_data)
            info = dataclasses.replace(
                reader.info, runtime=RUNTIME_OF[fmt], quantize=quantize, exported_from=model,
                default_precision="int8" if fmt == "torch" or (fmt, quantize) == ("openvino", "int8")
                else reader.info.default_precision,
            )
        info.save(stage)
        mode = file_mode()
        for f in stage.rglob("*"):  # files in the umask's mode, whatever the writing libraries left
            if f.is_file():
                os.chmod(f, mode)
        out.parent.mkdir(parents=True, exist_ok=True)
        if out.exists():
            out.rmdir()
        shutil.move(str(stage), out)
    return out


def calibration_feeds(reader: Reader, data: str, count: int = CALIBRATION_WINDOWS) -> list[dict[str, np.ndarray]]:
    """The model inputs of the first `count` windows of `data`'s questions, one window per feed."""
    dataset = load_examples(data)
    features = build_features(dataset.examples[:count], reader.tokenizer, reader.data)
    names, pad = input_names_for(reader.tokenizer, reader.model), reader.tokenizer.pad_token_id or 0
    feeds = []
    # one window per feed, unpadded: padding tokens would enter the activation ranges the scales come from
    for row in range(min(count, len(features.example_index))):
        batch = features.pad(np.array([row]), pad)
        feeds.append({k: np.asarray(batch[k], dtype=np.int64) for k in names if k in batch})
    return feeds


def _write_format(reader: Reader, fmt: str, quantize: str, tmp: Path, folder: Path,
                  calibration_data: str = TRAIN_SAMPLE) -> None:
    """One backend's files into `folder`."""
    if fmt == "torch":
        reader.model.save_pretrained(folder, safe_serialization=True)
        return
    raw = tmp / "raw.onnx"
    _needs(fmt)
    if not raw.exists():
        from spanqa.models.onnx_model import export_onnx

        export_onnx(reader.model, input_names_for(reader.tokenizer, reader.model), raw)
    if fmt == "openvino":
        from spanqa.models.openvino_model import convert_openvino

        calibration = calibration_feeds(reader, calibration_data) if quantize == "int8" else ()
        convert_openvino(raw, folder, quantize, calibration)
        return
    from spanqa.models.onnx_model import optimize_onnx, quantize_int8

    fused = tmp / "fused.onnx"
    if not fused.exists():
        optimize_onnx(raw, fused, reader.model.config)
    if quantize == "int8":
        quantize_int8(fused, folder / ONNX_FILE)
    else:
        shutil.copy(fused, folder / ONNX_FILE)


def _needs(fmt: str) -> None:
    """Name the extra to install when a format's packages are missing (instead of the exporter's traceback)."""
    import importlib.util

    wanted = {"onnx": ["onnx", "onnxruntime"], "openvino": ["onnx", "openvino"]}[fmt]
    missing = [m for m in wanted if importlib.util.find_spec(m) is None]
    if missing:
        raise SpanqaError(f"--format {fmt} needs {' and '.join(missing)}: pip install 'spanqa[{fmt}]' "
                          "(or 'spanqa[onnx,openvino]' for --format all)")


def backend_variants() -> list[tuple[str, str, str]]:
    """(backend, precision, folder) of every variant `--format all` writes and measures on this CPU.

    bf16 variants only where the CPU has bf16 units (elsewhere they are slower than fp32, never chosen).
    """
    variants = [("torch", "fp32", "."), ("torch", "int8", "."),
                ("onnxruntime", "fp32", "backends/onnxruntime-fp32"), ("onnxruntime", "int8", "backends/onnxruntime-int8"),
                ("openvino", "fp32", "backends/openvino-fp32"), ("openvino", "int8", "backends/openvino-int8")]
    if cpu_has_native_bf16():
        variants += [("torch", "bf16", "."), ("openvino", "bf16", "backends/openvino-fp32")]
    return variants


def _write_backends(reader: Reader, tmp: Path, stage: Path, calibration_data: str) -> None:
    fmt_of = {"onnxruntime": "onnx", "openvino": "openvino"}
    for backend, precision, path in backend_variants():
        folder = stage / path
        if path == "." or folder.exists():
            continue
        folder.mkdir(parents=True)
        quantize = "int8" if precision == "int8" else "none"
        _write_format(reader, fmt_of[backend], quantize, tmp, folder, calibration_data)


def measure_backends(folder: str, data: str, max_samples: int, config: ReaderConfig = ReaderConfig(),
                     progress=print) -> BackendTable:
    """Measure every variant of an `--format all` folder on the same questions; writes `spanqa_backends.json`.

    Each runs the questions twice (the first pass warms caches and thread pools), the second is timed.
    """
    dataset = _first_questions(data, max_samples)
    base = Reader.load(folder, config, device="cpu", precision="fp32", backend="torch")
    rows, reference = [], None
    for backend, precision, path in backend_variants():
        if backend != "torch" and not (Path(folder) / path).exists():
            continue
        model, ran = load_backend(Path(folder) / path, backend, precision, base.device)
        reader = dataclasses.replace(base, model=model, precision=ran)
        scores, qps = _score(reader, dataset)
        reference = reference or scores
        rows.append(BackendMeasurement(
            backend=backend, precision=precision, path=path, exact=scores["exact"], f1=scores["f1"],
            f1_change=scores["f1"] - reference["f1"], exact_change=scores["exact"] - reference["exact"],
            questions_per_second=qps, cpu=cpu_signature()))
        progress(f"{backend} {precision}: EM {scores['exact']:.2f} F1 {scores['f1']:.2f} "
                 f"(change {rows[-1].f1_change:+.2f}), {qps:.1f} questions/s")
    table = BackendTable(measured=rows, data=str(data), questions=len(dataset))
    table.save(folder)
    return table


def _first_questions(data: str, max_samples: int):
    """The first `max_samples` questions of `data`: what every backend is measured on."""
    return load_examples(data).head(max_samples)


def _score(reader: Reader, dataset) -> tuple[dict, float]:
    reader.predict(dataset.examples[: max(8, len(dataset) // 10)])  # warm-up
    t0 = time.perf_counter()
    preds = reader.predict(dataset.examples)
    seconds = time.perf_counter() - t0
    na_probs = {p.id: p.na_prob for p in preds} if reader.allow_null else None
    return evaluate(dataset, {p.id: p.answer for p in preds}, na_probs), len(preds) / seconds


def compare(original: str, exported: str, data: str, max_samples: int, config: ReaderConfig = ReaderConfig()) -> dict:
    """EM/F1 and questions/s of the original (fp32 torch) and the exported reader on the same questions.

    `config` applies to both (batch size, no-answer settings, windows); precision is fp32 for the original
    and the exported folder's own for the export.
    """
    dataset = _first_questions(data, max_samples)
    out = {}
    for name, reader in (("original_fp32", Reader.load(original, config, device="cpu", precision="fp32",
                                                       backend="torch")),
                         ("exported", Reader.load(exported, config, device="cpu", precision="auto"))):
        scores, qps = _score(reader, dataset)
        out[name] = {"exact": scores["exact"], "f1": scores["f1"], "questions_per_second": qps}
    out["f1_change"] = out["exported"]["f1"] - out["original_fp32"]["f1"]
    out["exact_change"] = out["exported"]["exact"] - out["original_fp32"]["exact"]
    out["questions"] = len(dataset)
    return out
