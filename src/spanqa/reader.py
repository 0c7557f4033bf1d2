"""The one inference object: load a reader, answer questions.

    reader = Reader.load("runs/quickstart")
    reader.answer("Who designed the tower?", "The tower was designed by Gustave Eiffel's company.")
    -> [ReaderAnswer(text="Gustave Eiffel's company", start=26, end=50, score=..., probability=..., ...)]
    reader.answer("Who designed the tower?", [passage, passage, ...], top_k=5)   # a retriever's hits
    -> the best spans of all passages, ranked together, each with its `passage` index
    reader(question="...", context="...")   # transformers' question-answering pipeline's calls and output

The CLI, the server, the benchmarks and the tests all go through `Reader`.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from spanqa.artifacts import ONNX_FILE, WEIGHTS_FILE, BackendTable, ClassifierInfo, EncoderInfo, ReaderInfo
from spanqa.answering.backends import choose
from spanqa.answering.collection import RETRIEVE
from spanqa.config import READER_PRECISIONS, DataConfig, DecodeConfig, ReaderConfig  # noqa: F401 - re-exported
from spanqa.data import Example
from spanqa.decode import Prediction
from spanqa.errors import SpanqaError
from spanqa.features import Features, build_features, count_windows
from spanqa.inference import model_device, predict_windows
from spanqa.models.hub import load_tokenizer, resolve_model_path
from spanqa.models.families import guard_family
from spanqa.models.reader_model import load_qa_model, span_head, untrained_head
from spanqa.answering.passages import pool
from spanqa.precision import cpu_has_native_bf16, resolve_precision
from spanqa.tokenization import input_names_for

log = logging.getLogger(__name__)
@dataclass(frozen=True)
class ReaderAnswer:
    """One answer to a question.

    Attributes:
        text: the answer cut from the context; "" means "no answer".
        start, end: char offsets of `text` in the context ([start, end); -1 for "no answer").
        score: start logit + end logit (for "no answer": the null score).
        probability: softmax of the score over the question's n-best spans.
        no_answer_probability: the reader's probability that the context holds no answer (0 for v1.1 readers).
        passage: which of the question's passages the answer comes from (0 when it was given one context,
            -1 for "no answer" over several passages).
    """

    text: str
    start: int
    end: int
    score: float
    probability: float
    no_answer_probability: float
    passage: int = 0

    @property
    def is_no_answer(self) -> bool:
        return self.start < 0


@dataclass
class Reader:
    """A model, its tokenizer and how to run it (`ReaderInfo` from the folder, `ReaderConfig` on top)."""

    model: torch.nn.Module
    tokenizer: object
    data: DataConfig
    decode: DecodeConfig
    allow_null: bool
    precision: str
    name: str = ""
    info: ReaderInfo = dataclasses.field(default_factory=ReaderInfo)
    batch_size: int = 32
    backend: str = "torch"
    backend_reason: str = ""

    @classmethod
    def load(cls, path_or_name: str | Path, config: ReaderConfig | None = None, **overrides) -> Reader:
        """Load a reader folder (from `spanqa train`), a hub QA model, or an alias.

        Args:
            config: how to run it; `overrides` replace its fields (`Reader.load(p, precision="fp32")`).
        Raises:
            SpanqaError: not found, not a reader (a classifier or a pretrained encoder), or a bad setting.
        """
        config = dataclasses.replace(config or ReaderConfig(), **overrides)
        path = resolve_model_path(path_or_name)
        _refuse_other_models(Path(path), path_or_name)
        info = ReaderInfo.load(path) or ReaderInfo(base_model=str(path_or_name))
        device = torch.device(config.device or ("cuda" if torch.cuda.is_available() else "cpu"))
        precision = info.default_precision if config.precision == "auto" and info.default_precision else config.precision
        model, precision, backend, why = _load_model(Path(path), info, device, precision, config.backend)
        if why:
            log.info("backend %s", why)
        _check_head(model, str(path_or_name), config.allow_untrained_head)
        reader = cls.from_model(model, load_tokenizer(path), info, dataclasses.replace(config, precision=precision),
                                name=str(path_or_name))
        return dataclasses.replace(reader, backend=backend, backend_reason=why)

    @classmethod
    def from_model(cls, model, tokenizer, info: ReaderInfo, config: ReaderConfig = ReaderConfig(),
                   name: str = "") -> Reader:
        """A reader over a model in memory (training-time evaluation uses this on the model being trained).

        `config.precision` is what to autocast to ("auto": the hardware's best for the model's device).
        """
        precision = config.precision
        if precision == "auto":
            precision = resolve_precision("auto", model_device(model))
        data, decode, allow_null = config.resolve(info)
        if isinstance(model, torch.nn.Module):
            guard_family(model, data.max_seq_length)
        elif getattr(model, "buckets", None) is not None:
            model.buckets = dataclasses.replace(model.buckets, max_tokens=data.max_seq_length)
        return cls(model=model, tokenizer=tokenizer, data=data, decode=decode, allow_null=allow_null,
                   precision=precision, name=name, info=info, batch_size=config.batch_size)

    @property
    def autocast_precision(self) -> str:
        """What to autocast to: nothing when the weights already are bf16 (CPU bf16 inference) or int8
        (dynamically quantized Linear layers run in int8 by themselves)."""
        if not hasattr(self.model, "parameters") or self.precision == "int8":
            return "fp32"  # another engine: its precision is compiled in
        return "fp32" if next(self.model.parameters()).dtype == torch.bfloat16 else self.precision

    @property
    def device(self) -> torch.device:
        return model_device(self.model)

    @property
    def runs_on(self) -> str:
        """What answers, in words: "openvino int8 on cpu", "torch bf16 on cuda:0"."""
        return f"{self.backend} {self.precision} on {self.device}"

    def __call__(self, *args, **kwargs):
        """transformers' `pipeline("question-answering")` calls and outputs (see `spanqa.answering.qa_pipeline`)."""
        from spanqa.answering.qa_pipeline import pipeline_call

        return pipeline_call(self, args, kwargs)

    def answer(self, question: str, context: str | Sequence[str], top_k: int = 1,
               overlap_threshold: float | None = 0.01) -> list[ReaderAnswer]:
        """The `top_k` best answers to one question, best first.

        Args:
            context: one passage, or a list of passages (answers ranked across them; see `spanqa.answering.passages`).
            overlap_threshold: drop spans overlapping a better one of the same passage by more than this
                fraction of either's length, before `top_k` is cut, for one passage as for many (None keeps
                them all): the alternatives are distinct answers, not "Nobel Prize" and "the Nobel Prize".
        """
        return self.answer_batch([(question, context)], top_k=top_k, overlap_threshold=overlap_threshold)[0]

    def ask(self, index, question: str, top_k: int = 3, retrieve: int = RETRIEVE, retriever: str = "auto") -> list:
        """Answers to `question` quoted from the documents of a collection (`spanqa index`), best first.

        Args:
            index: a `CollectionIndex` or `PostgresIndex`, an index folder, or a `postgresql://` URL.
            retrieve: passages read; retriever: "auto" (the index's default), "bm25", "dense" or "hybrid".
        Returns:
            `CollectionAnswer`s (document id, title, path, offsets in the document, the passage); [] when the
            collection holds no answer.
        """
        from spanqa.answering.collection import ask
        from spanqa.retrieval import open_index

        index = index if hasattr(index, "search_batch") else open_index(index)
        return ask(self, index, question, top_k, retrieve, retriever)

    def answer_batch(self, pairs: list[tuple[str, str | Sequence[str]]], top_k: int = 1,
                     overlap_threshold: float | None = 0.01, rank_weight: float = 0.0) -> list[list[ReaderAnswer]]:
        """Answers for many (question, context or list of passages) pairs, in input order.

        Windows of all pairs and passages are length-sorted and padded per batch; long contexts use all
        their windows. `rank_weight` > 0: each list of passages is in a retriever's order, best first, and
        that order weighs in the ranking (`spanqa.answering.passages`).
        """
        if top_k < 1:
            raise SpanqaError(f"top_k {top_k}: must be at least 1.")
        groups = [_passage_list(c) for _, c in pairs]
        for i, group in enumerate(groups):
            if not group or not all(isinstance(c, str) for c in group):
                raise SpanqaError(f"question {i}: the context must be a string or a non-empty list of strings.")
        examples = [Example(str(i) if isinstance(context, str) else f"{i}/passage {j}", q, c)
                    for i, ((q, context), group) in enumerate(zip(pairs, groups)) for j, c in enumerate(group)]
        preds = iter(self.predict(examples))
        out = []
        for (_, context), group in zip(pairs, groups):
            chunk = [next(preds) for _ in group]
            out.append(self.passage_answers(chunk, top_k, overlap_threshold, rank_weight))  # one passage: a list of one
        return out

    def count_windows(self, pairs: list[tuple[str, str | Sequence[str]]]) -> list[int]:
        """Windows each (question, context or passages) pair costs at this reader's settings."""
        groups = [_passage_list(c) for _, c in pairs]
        counts = iter(count_windows([(q, c) for (q, _), group in zip(pairs, groups) for c in group], self.tokenizer,
                                    self.data))
        return [sum(next(counts) for _ in group) for group in groups]

    def passage_answers(self, preds: list[Prediction], top_k: int, overlap_threshold: float | None = 0.01,
                        rank_weight: float = 0.0) -> list[ReaderAnswer]:
        """One question's predictions over several passages as one ranked list of `ReaderAnswer`s."""
        pooled = pool(preds, self.allow_null, self.decode.null_score_diff_threshold, overlap_threshold, rank_weight)
        na = pooled.no_answer_probability
        answers = [ReaderAnswer(r.span.text, r.span.start, r.span.end, r.span.score, self._probability(r, pooled),
                                na, r.passage) for r in pooled.ranked]
        if pooled.abstain:
            answers = [ReaderAnswer("", -1, -1, pooled.null_score, 0.0, na, -1), *answers]
        return answers[:top_k]

    def _probability(self, ranked, pooled) -> float:
        """The answer's probability: calibrated (the chance it is right) when the folder has a calibration,
        else the softmax over the pooled candidates."""
        calibration = self.info.calibration
        if calibration is None:
            return ranked.probability
        return calibration.apply(ranked.probability, ranked.span.score, pooled.null_score)

    def predict(self, examples: list[Example], progress=None, features: Features | None = None,
                window_probabilities: bool = False) -> list[Prediction]:
        """Decoded predictions for `examples`, in input order: the one route from a model to answers.

        Args:
            progress: optional callable(n_windows_done).
            features: `examples`' windows when the caller built them already (training evaluates the same
                questions many times); built with `self.data` otherwise.
            window_probabilities: also the pipeline-style window probabilities (NaN otherwise; `spanqa.decode`).
        """
        if features is None:
            features = build_features(examples, self.tokenizer, self.data)
        preds = predict_windows(
            self.model, features, examples, self.decode, self.allow_null, input_names_for(self.tokenizer, self.model),
            self.tokenizer.pad_token_id or 0, self.batch_size, self.autocast_precision, progress, window_probabilities,
        )
        by_id = {p.id: p for p in preds}
        return [by_id[e.id] for e in examples]


def _passage_list(context: str | Sequence[str]) -> list[str]:
    """A context as its list of passages (one context is a list of one)."""
    return [context] if isinstance(context, str) else list(context)


def _refuse_other_models(folder: Path, name) -> None:
    """A classifier or a pretrained encoder has no trained span head: say what to do instead."""
    for info, what in ((EncoderInfo, "a pretrained encoder"), (ClassifierInfo, "a classifier")):
        if info.exists(folder):
            raise SpanqaError(f"{name}: holds {what}, not a reader (no trained span head); "
                              f"make a reader of it with: spanqa train --model {name} --train-data ...")


def _check_head(model, name: str, allowed: bool) -> None:
    """Refuse (or, when allowed, warn about) a model whose span head was initialised at load: it answers at
    random, as if it were a reader."""
    head = untrained_head(model) if isinstance(model, torch.nn.Module) else ""
    if not head:
        return
    why = (f"{name}: its span head ({head}) was initialised at load: this is an encoder without a trained reader "
           "head, and its answers would be random")
    if not allowed:
        raise SpanqaError(f"{why}. Fine-tune it into a reader first (spanqa train --model {name} ...), or pass "
                          "--allow-untrained-head (allow_untrained_head=True) to run it anyway.")
    log.warning("%s; running it anyway (--allow-untrained-head).", why)


def _load_model(folder: Path, info: ReaderInfo, device: torch.device, precision: str, backend: str):
    """(model, precision to run it in, backend, why it was chosen or ""): see `spanqa.answering.backends`.

    A folder with `spanqa_backends.json` runs the backend `choose` picks; any other folder runs its own
    runtime (asking for another one is an error that says how to export it). On torch, precision "int8"
    applies dynamic int8 quantization to the Linear layers (CPU only).
    """
    table = BackendTable.load(folder) if device.type == "cpu" else None
    if table is not None and table.measured:
        row, why = choose(table, backend, precision if precision in ("fp32", "bf16", "int8") else "auto")
        model, precision = load_backend(folder / row.path, row.backend, row.precision, device)
        return model, precision, row.backend, why
    runtime = info.runtime
    if runtime == "torch" and (folder / ONNX_FILE).exists() and not (folder / WEIGHTS_FILE).exists():
        runtime = "onnxruntime"
    if backend not in ("auto", runtime):
        raise SpanqaError(f"{folder}: holds a {runtime} reader, not {backend}; write one with: spanqa export "
                          f"--model {folder} --format {'onnx' if backend == 'onnxruntime' else backend} --output NEW "
                          "(or --format all, to measure every backend and let --backend auto choose)")
    model, precision = load_backend(folder, runtime, precision, device)
    if runtime != "torch" and info.quantize == "int8":
        precision = "int8"  # an int8 graph, whatever the rest of it runs in
    return model, precision, runtime, ""


def load_backend(folder: Path, backend: str, precision: str, device: torch.device):
    """(model, precision) of one backend's files in `folder` (export measures each backend through this)."""
    if backend == "onnxruntime":
        from spanqa.models.onnx_model import OnnxQAModel

        return OnnxQAModel(folder / ONNX_FILE), "int8" if precision == "int8" else "fp32"
    if backend == "openvino":
        from spanqa.models.openvino_model import OPENVINO_FILE, OpenVinoQAModel

        # bf16 by choice, or by auto within the guard; an int8 graph runs what is not int8 in bf16 where the
        # CPU has bf16 units
        bf16 = precision == "bf16" or (precision == "int8" and cpu_has_native_bf16())
        model = OpenVinoQAModel(folder / OPENVINO_FILE, "bf16" if bf16 else "fp32")
        return model, "int8" if precision == "int8" else model.precision
    model = load_qa_model(str(folder)).to(device).eval()
    precision = resolve_precision(precision, device) if precision != "int8" else precision
    if precision == "bf16" and device.type == "cpu":
        return bf16_weights(model), "bf16"
    if precision == "int8":
        if device.type != "cpu":
            raise SpanqaError("precision int8 (dynamic quantization) runs on CPU only.")
        return _dynamic_int8(model), "int8"
    return model, precision


def _dynamic_int8(model: torch.nn.Module) -> torch.nn.Module:
    """Linear layers with int8 weights per output channel and per-batch int8 activations (CPU).

    Per-channel weights: on the quickstart reader F1 moves -2.1 against fp32 where one scale per tensor lost 6.9
    (300 dev-sample questions), at the same speed. torch marks `torch.ao.quantization` deprecated in favour of
    torchao, but torchao 0.18's eager int8 on CPU runs at fp32 speed (MiniLM, 16 x 200 tokens, 2-core EPYC: fp32
    0.487 s, torchao int8 0.479 s, this 0.248 s); the fast, accurate int8 paths are OpenVINO's and ONNX Runtime's
    (`spanqa export --format all`). The warning is silenced here: it says nothing the user can act on.
    """
    import warnings

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*torch.ao.quantization is deprecated.*")
        warnings.filterwarnings("ignore", message=".*quantized tensor creation functions.*deprecated.*")
        from torch.ao.quantization import per_channel_dynamic_qconfig

        return torch.ao.quantization.quantize_dynamic(model, {torch.nn.Linear: per_channel_dynamic_qconfig},
                                                      dtype=torch.qint8)


class _Float32Head(torch.nn.Module):
    """The span head in fp32 over bf16 hidden states: logits keep their resolution (bf16 has 8 bits)."""

    def __init__(self, head: torch.nn.Linear) -> None:
        super().__init__()
        self.head = head.float()

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.head(hidden.float())


def bf16_weights(model: torch.nn.Module) -> torch.nn.Module:
    """CPU inference in bf16 without autocast: weights cast once (no per-call casts), span head in fp32."""
    head = span_head(model)
    model = model.to(torch.bfloat16)
    if head is not None:
        name, layer = head
        parent_name, _, attr = name.rpartition(".")
        setattr(model.get_submodule(parent_name) if parent_name else model, attr, _Float32Head(layer))
    return model
