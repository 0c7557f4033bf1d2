"""Exporting a reader to ONNX, fusing it with ONNX Runtime's transformer optimizer (optionally int8), and
running it on ONNX Runtime behind the calls a torch QA model answers.

The export traces eager attention (the matmul-softmax-matmul pattern ONNX Runtime's optimizer recognises;
SDPA traces to a graph it cannot fuse), then `optimize_onnx` fuses attention, embedding + LayerNorm,
residual + LayerNorm (SkipLayerNormalization) and bias + GELU, with the head count and width read from
the model's config.
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path

import numpy as np
import torch

from spanqa.errors import SpanqaError
from spanqa.models.engine_model import EngineQAModel

log = logging.getLogger(__name__)


def export_onnx(model: torch.nn.Module, input_names: list[str], path: Path) -> Path:
    """Write `model` (a QA model) as ONNX with dynamic batch and sequence axes, its attention traced eager."""
    model = model.float().eval().cpu()
    if hasattr(model, "set_attn_implementation"):
        try:
            model.set_attn_implementation("eager")
        except (ValueError, ImportError):  # a family without eager attention keeps its own
            pass
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
    with warnings.catch_warnings():
        # The tracer warns that Python-side shape checks become constants, and the indexing exporter that
        # negative indices would be wrong; neither changes a window's logits, and `spanqa export` measures the
        # exported graph's answers against the original's before anyone relies on it.
        warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
        warnings.filterwarnings("ignore", message=".*If indices include negative values.*")
        torch.onnx.export(
            Logits(model), tuple(example.values()), str(path), input_names=input_names,
            output_names=["start_logits", "end_logits"], dynamic_axes=axes, opset_version=17, dynamo=False,
        )
    return path


def optimize_onnx(src: Path, dst: Path, config) -> dict[str, int]:
    """Fuse `src` into `dst` with ONNX Runtime's transformer optimizer; returns the fused operator counts.

    Args:
        config: the model's transformers config (heads and width, which the optimizer cannot always infer).
    """
    from onnxruntime.transformers.optimizer import optimize_model

    heads = getattr(config, "num_attention_heads", None) or getattr(config, "n_heads", 0)
    width = getattr(config, "hidden_size", None) or getattr(config, "dim", 0)
    quiet = logging.getLogger("onnxruntime.transformers")
    level, quiet.level = quiet.level, logging.ERROR
    try:
        optimized = optimize_model(str(src), model_type="bert", num_heads=heads, hidden_size=width)
    finally:
        quiet.level = level
    optimized.save_model_to_file(str(dst))
    return {k: v for k, v in optimized.get_fused_operator_statistics().items() if v}


def quantize_int8(src: Path, dst: Path) -> Path:
    """Dynamic int8 quantization: int8 weights per output channel, activations quantized on the fly.

    Per-channel weights keep the answers: on the quickstart reader (MiniLM, 300 dev-sample questions) F1 moves
    +0.76 against fp32, where one scale per tensor (ONNX Runtime's default) lost 5.5 F1. On CPUs without an int8
    dot product the weights use 7 bits (`reduce_range`), as ONNX Runtime advises against saturation there; the
    export measures the answers on the machine it runs on either way. On a fused graph shape inference cannot
    type the outputs of ONNX Runtime's own operators, so float is named as the default tensor type.
    """
    from onnx import TensorProto
    from onnxruntime.quantization import QuantType, quantize_dynamic

    from spanqa.precision import cpu_has_int8_dot

    quantize_dynamic(str(src), str(dst), weight_type=QuantType.QInt8, per_channel=True,
                     reduce_range=not cpu_has_int8_dot(), extra_options={"DefaultTensorType": TensorProto.FLOAT})
    return dst


class OnnxQAModel(EngineQAModel):
    """A reader's ONNX graph on ONNX Runtime's CPU provider."""

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

    def logits(self, feed: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        start, end = self.session.run(["start_logits", "end_logits"], feed)
        return start, end
