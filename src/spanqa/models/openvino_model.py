"""Converting a reader's ONNX graph to OpenVINO (optionally with int8 weights) and running it on the CPU
behind the calls a torch QA model answers.

OpenVINO does its own fusions at compile time, so it converts the plain (unfused) ONNX export. Precision is
chosen when the model is compiled: fp32, or bf16 on CPUs with AMX or AVX512-BF16 (`INFERENCE_PRECISION_HINT`).
int8 compresses the weights of the matrix multiplications with NNCF (per-channel, asymmetric); activations
stay in the inference precision.
"""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np

from spanqa.errors import SpanqaError
from spanqa.models.engine_model import EngineQAModel

OPENVINO_FILE = "openvino_model.xml"
_HINTS = {"fp32": "f32", "bf16": "bf16"}


def _openvino():
    try:
        import openvino
    except ImportError:
        raise SpanqaError("the openvino backend needs OpenVINO: pip install 'spanqa[openvino]'") from None
    return openvino


def convert_openvino(onnx_path: Path, folder: Path, quantize: str = "none") -> Path:
    """Write `folder/openvino_model.xml` (+ .bin) from an ONNX export; int8 compresses the weights."""
    ov = _openvino()
    model = ov.convert_model(str(onnx_path))
    if quantize == "int8":
        try:
            import nncf
        except ImportError:
            raise SpanqaError("int8 weights for OpenVINO need NNCF: pip install 'spanqa[openvino]'") from None
        model = nncf.compress_weights(model)
    path = folder / OPENVINO_FILE
    ov.save_model(model, str(path), compress_to_fp16=False)
    return path


class OpenVinoQAModel(EngineQAModel):
    """A reader's OpenVINO IR compiled for the CPU, at fp32 or bf16."""

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
        self._lock = threading.Lock()  # one infer request: callers from several threads take turns

    def logits(self, feed: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        with self._lock:
            self.request.infer(feed)
            return (self.request.get_tensor("start_logits").data.copy(),
                    self.request.get_tensor("end_logits").data.copy())
