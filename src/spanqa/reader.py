"""The one inference object: load a reader, answer questions.

    reader = Reader.load("runs/quickstart")
    reader.answer("Who designed the tower?", "The tower was designed by Gustave Eiffel's company.")
    -> [ReaderAnswer(text="Gustave Eiffel's company", start=26, end=50, score=..., probability=..., ...)]

The CLI, the server, the benchmarks and the tests all go through `Reader`.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path

import torch

from spanqa.config import DataConfig, DecodeConfig
from spanqa.data import Example
from spanqa.decode import Prediction
from spanqa.errors import SpanqaError
from spanqa.features import build_features
from spanqa.inference import input_names_for, model_device, predict_features
from spanqa.models.hub import load_tokenizer, resolve_model_path
from spanqa.models.reader_model import load_qa_model
from spanqa.precision import resolve_precision

READER_FILE = "spanqa_reader.json"


@dataclass(frozen=True)
class ReaderAnswer:
    """One answer to a question.

    Attributes:
        text: the answer cut from the context; "" means "no answer".
        start, end: char offsets of `text` in the context ([start, end); -1 for "no answer").
        score: start logit + end logit (for "no answer": the null score).
        probability: softmax of the score over the question's n-best spans.
        no_answer_probability: the reader's probability that the context holds no answer (0 for v1.1 readers).
    """

    text: str
    start: int
    end: int
    score: float
    probability: float
    no_answer_probability: float

    @property
    def is_no_answer(self) -> bool:
        return self.start < 0


@dataclass
class Reader:
    """A model, its tokenizer and the settings it was trained with."""

    model: torch.nn.Module
    tokenizer: object
    data: DataConfig
    decode: DecodeConfig
    allow_null: bool
    precision: str
    name: str = ""
    info: dict = dataclasses.field(default_factory=dict)
    batch_size: int = 32

    @classmethod
    def load(
        cls, path_or_name: str | Path, device: str | None = None, precision: str = "auto",
        null_score_diff_threshold: float | None = None, allow_null: bool | None = None,
    ) -> Reader:
        """Load a reader folder (from `spanqa train`), a hub QA model, or an alias.

        Args:
            device: "cpu", "cuda", "cuda:1"... (default: CUDA when available).
            precision: auto (bf16 where the hardware has native bf16), bf16, fp16 (GPU), fp32, or int8
                (dynamic int8 quantization of the Linear layers, CPU).
            null_score_diff_threshold: override the threshold tuned at training (SQuAD v2 readers).
            allow_null: override whether "no answer" can be returned (default: as trained; False otherwise).
        """
        dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        path = resolve_model_path(path_or_name)
        from spanqa.train.classify import CLASSIFIER_FILE
        from spanqa.train.pretrain import PRETRAIN_FILE

        for marker, what in ((PRETRAIN_FILE, "a pretrained encoder"), (CLASSIFIER_FILE, "a classifier")):
            if (Path(path) / marker).exists():
                raise SpanqaError(f"{path_or_name}: holds {what}, not a reader (no trained span head); "
                                  f"make a reader of it with: spanqa train --model {path_or_name} --train-data ...")
        info = _reader_info(Path(path))
        decode = DecodeConfig(**info.get("decode", {}))
        if null_score_diff_threshold is not None:
            decode = dataclasses.replace(decode, null_score_diff_threshold=null_score_diff_threshold)
        if precision == "auto" and info.get("default_precision"):
            precision = info["default_precision"]
        model, precision = _load_model(Path(path), path, dev, precision)
        return cls(
            model=model, tokenizer=load_tokenizer(path), data=DataConfig(**info.get("data", {})), decode=decode,
            allow_null=info.get("version_2_with_negative", False) if allow_null is None else allow_null,
            precision=precision, name=str(path_or_name), info=info,
        )

    @property
    def autocast_precision(self) -> str:
        """What to autocast to: nothing when the weights already are bf16 (CPU bf16 inference)."""
        weights = next(self.model.parameters()).dtype if hasattr(self.model, "parameters") else torch.float32
        return "fp32" if weights == torch.bfloat16 else self.precision

    @property
    def device(self) -> torch.device:
        return model_device(self.model)

    def answer(self, question: str, context: str, top_k: int = 1) -> list[ReaderAnswer]:
        """The `top_k` best answers to one question about one context, best first."""
        return self.answer_batch([(question, context)], top_k=top_k)[0]

    def answer_batch(self, pairs: list[tuple[str, str]], top_k: int = 1) -> list[list[ReaderAnswer]]:
        """Answers for many (question, context) pairs, in input order.

        Windows of all pairs are length-sorted and padded per batch; long contexts use all their windows.
        """
        if top_k < 1:
            raise SpanqaError(f"top_k {top_k}: must be at least 1.")
        examples = [Example(str(i), q, c) for i, (q, c) in enumerate(pairs)]
        return [self.to_answers(p, top_k) for p in self.predict(examples)]

    def predict(self, examples: list[Example], progress=None) -> list[Prediction]:
        """Decoded predictions for `examples`, in input order (what `spanqa predict` writes)."""
        features = build_features(examples, self.tokenizer, self.data)
        preds = predict_features(
            self.model, features, examples, self.decode, self.allow_null, input_names_for(self.tokenizer),
            self.tokenizer.pad_token_id or 0, self.batch_size, self.autocast_precision, progress,
        )
        by_id = {p.id: p for p in preds}
        return [by_id[e.id] for e in examples]

    def to_answers(self, pred: Prediction, top_k: int) -> list[ReaderAnswer]:
        """A prediction as `ReaderAnswer`s: "no answer" first when the reader abstains."""
        spans = [
            ReaderAnswer(s.text, s.start, s.end, s.score, s.probability, pred.na_prob)
            for s in pred.spans[:top_k]
        ]
        if self.allow_null and (pred.answer == "" or not spans):
            spans = [ReaderAnswer("", -1, -1, pred.null_score, 0.0, pred.na_prob), *spans][:top_k]
        return spans


def _load_model(folder: Path, path: str, device: torch.device, precision: str):
    """(model, precision to run it in): ONNX Runtime for an exported folder, torch otherwise.

    precision "int8" on torch applies dynamic int8 quantization to the Linear layers (CPU only).
    """
    from spanqa.models.onnx_model import ONNX_FILE, OnnxQAModel

    if (folder / ONNX_FILE).exists() and not (folder / "model.safetensors").exists():
        return OnnxQAModel(folder / ONNX_FILE), "fp32"
    model = load_qa_model(path).to(device).eval()
    precision = resolve_precision(precision, device) if precision != "int8" else precision
    if precision == "bf16" and device.type == "cpu":
        return bf16_weights(model), "bf16"
    if precision == "int8":
        if device.type != "cpu":
            raise SpanqaError("precision int8 (dynamic quantization) runs on CPU only.")
        return torch.ao.quantization.quantize_dynamic(model, {torch.nn.Linear}, dtype=torch.qint8), "fp32"
    return model, precision


class _Float32Head(torch.nn.Module):
    """The span head in fp32 over bf16 hidden states: logits keep their resolution (bf16 has 8 bits)."""

    def __init__(self, head: torch.nn.Linear) -> None:
        super().__init__()
        self.head = head.float()

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.head(hidden.float())


def bf16_weights(model: torch.nn.Module) -> torch.nn.Module:
    """CPU inference in bf16 without autocast: weights cast once (no per-call casts), span head in fp32."""
    head = getattr(model, "qa_outputs", None)
    model = model.to(torch.bfloat16)
    if isinstance(head, torch.nn.Linear):
        model.qa_outputs = _Float32Head(head)
    return model


def _reader_info(path: Path) -> dict:
    file = path / READER_FILE
    if not file.exists():
        return {}
    try:
        return json.loads(file.read_text())
    except json.JSONDecodeError as exc:
        raise SpanqaError(f"{file}: not valid JSON ({exc.msg}, line {exc.lineno}).") from None
