"""Exporting a reader to ONNX (optionally int8) and running it on ONNX Runtime behind the same calls."""

from __future__ import annotations

import logging
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import torch

from spanqa.errors import SpanqaError

log = logging.getLogger(__name__)


def export_onnx(model: torch.nn.Module, input_names: list[str], path: Path) -> Path:
    """Write `model` (a QA model) as ONNX with dynamic batch and sequence axes."""
    model = model.float().eval().cpu()
    example = {name: torch.ones(2, 16, dtype=torch.long) for name in input_names}

    class Logits(torch.nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, *args):
            out = self.inner(**dict(zip(input_names, args)))
            return out.start_logits, out.end_logits

    axes = {name: {0: "batch", 1: "sequence"} for name in input_names}
    axes.update({"start_logits": {0: "batch", 1: "sequence"}, "end_logits": {0: "batch", 1: "sequence"}})
    torch.onnx.export(
        Logits(model), tuple(example.values()), str(path), input_names=input_names,
        output_names=["start_logits", "end_logits"], dynamic_axes=axes, opset_version=17, dynamo=False,
    )
    return path


def quantize_int8(src: Path, dst: Path) -> Path:
    """Dynamic int8 quantization of the weights (activations stay float), ONNX Runtime's recipe."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    quantize_dynamic(str(src), str(dst), weight_type=QuantType.QInt8)
    return dst


class OnnxQAModel:
    """Looks like a transformers QA model to spanqa's inference: call with tensors, get start/end logits."""

    training = False

    def __init__(self, path: Path, threads: int | None = None) -> None:
        try:
            import onnxruntime as ort
        except ImportError:
            raise SpanqaError("running an ONNX reader needs onnxruntime: pip install onnxruntime") from None
        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self.input_names = [i.name for i in self.session.get_inputs()]
        self.device = torch.device("cpu")

    def __call__(self, **inputs) -> SimpleNamespace:
        feed = {k: v.cpu().numpy().astype(np.int64) for k, v in inputs.items() if k in self.input_names}
        start, end = self.session.run(["start_logits", "end_logits"], feed)
        return SimpleNamespace(start_logits=torch.from_numpy(start), end_logits=torch.from_numpy(end))

    def eval(self):
        return self

    def train(self, mode: bool = True):
        return self
