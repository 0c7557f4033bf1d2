"""Converting a reader's ONNX graph to OpenVINO (optionally with int8 weights) and running it on the CPU
behind the calls a torch QA model answers.

OpenVINO does its own fusions at compile time, so it converts the plain (unfused) ONNX export. Precision is
chosen when the model is compiled: fp32, or bf16 on CPUs with AMX or AVX512-BF16 (`INFERENCE_PRECISION_HINT`).
int8 is NNCF's post-training quantization for transformers: the matrix multiplications run in int8 (weights
per channel, activations per tensor, scales from calibration windows, SmoothQuant and bias correction),
everything else (LayerNorm, softmax, GELU, the span head) in the inference precision. It is what makes int8
faster: int8 weights alone only save memory. Worked example (MiniLM-L6, 32 windows of 200 tokens, 2-core
EPYC with AVX512-BF16): fp32 0.82 s, bf16 0.43 s, int8 with bf16 elsewhere 0.28 s.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Sequence

import numpy as np

from spanqa.errors import SpanqaError
from spanqa.models.engine_model import EngineQAModel, ShapeBuckets

OPENVINO_FILE = "openvino_model.xml"
_HINTS = {"fp32": "f32", "bf16": "bf16"}


def _openvino():
    try:
        import openvino
    except ImportError:
        raise SpanqaError("the openvino backend needs OpenVINO: pip install 'spanqa[openvino]'") from None
    return openvino


def convert_openvino(onnx_path: Path, folder: Path, quantize: str = "none",
                     calibration: Sequence[dict[str, np.ndarray]] = ()) -> Path:
    """Write `folder/openvino_model.xml` (+ .bin) from an ONNX export.

    Args:
        quantize: "none", or "int8" (post-training quantization, calibrated on `calibration`).
        calibration: model inputs, one window per feed (`export.calibration_feeds`); needed for int8.
    """
    ov = _openvino()
    model = ov.convert_model(str(onnx_path))
    if quantize == "int8":
        if not calibration:
            raise SpanqaError("int8 for OpenVINO needs calibration windows (--calibration-data).")
        try:
            import nncf
        except ImportError:
            raise SpanqaError("int8 for OpenVINO needs NNCF: pip install 'spanqa[openvino]'") from None
        # TRANSFORMER keeps the residual additions and LayerNorm's reductions in float (int8 hurts them most),
        # gives activations asymmetric scales (the MIXED preset: GELU and attention outputs are lopsided) and
        # applies SmoothQuant, which moves activation outliers into the weights. Every window is used
        # (subset_size): activation ranges are per tensor, so a window left out can be the one that widens them
        # at answer time
        model = nncf.quantize(model, nncf.Dataset(list(calibration)), model_type=nncf.ModelType.TRANSFORMER,
                              subset_size=len(calibration))
    path = folder / OPENVINO_FILE
    ov.save_model(model, str(path), compress_to_fp16=False)  # fp16 weights would be a third precision to measure
    return path


class OpenVinoQAModel(EngineQAModel):
    """A reader's OpenVINO IR compiled for the CPU, at fp32 or bf16 (for an int8 IR: what is not int8)."""

    def __init__(self, path: Path, precision: str = "fp32", threads: int | None = None) -> None:
        if precision not in _HINTS:
            raise SpanqaError(f"the openvino backend runs fp32 or bf16, not {precision}.")
        ov = _openvino()
        config = {"INFERENCE_PRECISION_HINT": _HINTS[precision], "PERFORMANCE_HINT": "LATENCY"}
        if threads:
            config["INFERENCE_NUM_THREADS"] = threads
        self.compiled = ov.Core().compile_model(str(path), "CPU", config)
        self.request = self.compiled.create_infer_request()
        self.input_names = [i.get_any_name() for i in self.compiled.inputs]
        self.precision = precision
        self.buckets = ShapeBuckets()  # it keeps compiled kernels per shape: see spanqa.models.engine_model
        self._lock = threading.Lock()  # one infer request: callers from several threads take turns

    def logits(self, feed: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        with self._lock:
            self.request.infer(feed)
            return (self.request.get_tensor("start_logits").data.copy(),
                    self.request.get_tensor("end_logits").data.copy())
