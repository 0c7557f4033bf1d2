"""Folders that outlive a process, and the names of the files that mark them.

A reader folder holds a Hugging Face model and tokenizer plus `spanqa_reader.json` (`ReaderInfo`: how to
window and decode, whether it may answer "no answer", how it was exported); one made by `spanqa export
--format all` also holds every backend's files under `backends/` and `spanqa_backends.json`
(`BackendTable`: each backend's measured speed and EM/F1 change, what `backend="auto"` chooses from). `spanqa evaluate --model
RUN DATA...` writes `spanqa_scores.json` into the run (`ScoreTable`: each set's scores, in or out of domain),
which `spanqa report` reads. A collection
index (`spanqa index`) holds `spanqa_index.json` (`IndexInfo`: how its passages were cut and searched). A classifier folder holds
`spanqa_classifier.json` (`ClassifierInfo`), a pretrained encoder `spanqa_pretrain.json` (`EncoderInfo`), a
training checkpoint `spanqa_checkpoint.json` (`CheckpointManifest`: its files' sizes and sha256, written last).
Training writes them, `Reader`, export and the server read them; nothing else reads these files.

Each has a `schema_version`. Version 0 is what spanqa wrote before the field existed (same keys): it
loads as is. A file from a newer spanqa is refused with the version it needs.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from spanqa.config import DataConfig, DecodeConfig
from spanqa.files import FileDigest, read_json, write_json_atomic
from spanqa.errors import SpanqaError

READER_FILE = "spanqa_reader.json"
CLASSIFIER_FILE = "spanqa_classifier.json"
PRETRAIN_FILE = "spanqa_pretrain.json"
RUN_FILE = "spanqa_train_config.json"  # the resolved training settings, beside the final model
WEIGHTS_FILE = "model.safetensors"
ONNX_FILE = "model.onnx"
BACKENDS_FILE = "spanqa_backends.json"
INDEX_FILE = "spanqa_index.json"
SCORES_FILE = "spanqa_scores.json"
CHECKPOINT_FILE = "spanqa_checkpoint.json"  # a checkpoint's manifest, written last
DOMAINS = ("in", "out")
VECTOR_DTYPES = ("float16", "int8")  # how an index stores passage vectors (`retrieval.dense.Vectors`)
ANN_MODES = ("auto", "on", "off")  # when it keeps an HNSW graph of them
RETRIEVERS = ("bm25", "dense", "hybrid")
EPS = 1e-6  # probabilities are clipped to [EPS, 1 - EPS] before their logit
SCHEMA_VERSION = 2  # 2: ReaderInfo.calibration, IndexInfo
RUNTIMES = ("torch", "onnxruntime", "openvino")


class _Info:
    """save/load of a frozen dataclass as JSON, with the schema check and errors that name the field."""

    FILE: ClassVar[str] = ""
    NESTED: ClassVar[dict[str, type]] = {}

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def save(self, folder: str | Path) -> Path:
        """Write `FILE` into `folder` atomically."""
        path = Path(folder) / self.FILE
        write_json_atomic(path, self.to_dict(), indent=1)
        return path

    @classmethod
    def exists(cls, folder: str | Path) -> bool:
        return (Path(folder) / cls.FILE).is_file()

    @classmethod
    def load(cls, folder: str | Path):
        """The info in `folder`, or None when the folder has no `FILE`.

        Raises:
            SpanqaError: not JSON, not an object, an unknown or mistyped field, or a newer schema version.
        """
        path = Path(folder) / cls.FILE
        if not path.is_file():
            return None
        raw = read_json(path, f"a {cls.__name__} object")
        if not isinstance(raw, dict):
            raise SpanqaError(f"{path}: expected a JSON object, got {type(raw).__name__}.")
        return cls.from_dict(raw, path)

    @classmethod
    def from_dict(cls, raw: dict, where: str | Path = "") -> Any:
        where = where or cls.FILE
        version = raw.get("schema_version", 0)
        if not isinstance(version, int) or version > SCHEMA_VERSION:
            raise SpanqaError(f"{where}: schema_version {version!r} is newer than this spanqa reads "
                              f"({SCHEMA_VERSION}); upgrade spanqa.")
        known = {f.name: f for f in dataclasses.fields(cls)}
        values = {}
        for key, value in raw.items():
            if key not in known:
                raise SpanqaError(f"{where}: unknown field '{key}' (expected: {', '.join(known)}).")
            values[key] = _typed(cls.NESTED.get(key), value, f"{where}: field '{key}'")
        values["schema_version"] = SCHEMA_VERSION
        try:
            return cls(**values)
        except TypeError as exc:
            raise SpanqaError(f"{where}: {exc}.") from None


def _rows(kind: type, values: list, where: str) -> list:
    """A list field's rows as `kind` (each JSON object made one); the error names the row, e.g. "sets[2]"."""
    rows = []
    for i, row in enumerate(values):
        if isinstance(row, dict):
            try:
                row = kind(**row)
            except TypeError as exc:
                raise SpanqaError(f"{where}[{i}]: {exc}.") from None
        rows.append(row)
    return rows


def _typed(kind: type | None, value: Any, where: str) -> Any:
    """A nested config (DataConfig, DecodeConfig, Calibration) from its JSON object; other values unchanged."""
    if kind is None or value is None:
        return value
    if not isinstance(value, dict):
        raise SpanqaError(f"{where}: expected an object, got {type(value).__name__}.")
    try:
        return kind(**value)
    except TypeError as exc:
        raise SpanqaError(f"{where}: {exc}.") from None


@dataclass(frozen=True)
class Calibration:
    """A Platt scaling of a reader's answer probabilities (fitted by `spanqa.answering.calibration`).

    Attributes:
        slope, bias, null_weight: p = sigmoid(slope * logit(raw) + null_weight * (score - null) + bias).
        abstain_below: calibrated probability below which an answer is not given (collections).
        questions: how many questions the fit used; data: where they came from.
        ece_before, ece_after: expected calibration error (15 bins) of the raw and the calibrated
            probability, on held-out questions (-1 when not measured).
    """

    slope: float = 1.0
    bias: float = 0.0
    null_weight: float = 0.0
    abstain_below: float = 0.0
    questions: int = 0
    data: str = ""
    ece_before: float = -1.0
    ece_after: float = -1.0

    def apply(self, raw, score=0.0, null_score=0.0):
        """Calibrated probabilities for raw probabilities (scalars or arrays) and their span/null scores."""
        raw = np.clip(np.asarray(raw, np.float64), EPS, 1 - EPS)
        z = self.slope * np.log(raw / (1 - raw)) + self.null_weight * (np.asarray(score) - null_score) + self.bias
        out = 0.5 * (1.0 + np.tanh(0.5 * z))  # sigmoid, without overflow for large |z|
        return float(out) if out.ndim == 0 else out



@dataclass(frozen=True)
class ReaderInfo(_Info):
    """How a reader folder is run (`spanqa_reader.json`).

    Attributes:
        version_2_with_negative: trained for SQuAD v2: the reader may answer "no answer".
        base_model: the encoder it was fine-tuned from.
        data: the window settings it was trained with.
        decode: n-best, answer length and the no-answer threshold tuned at training.
        eval: the evaluation metrics of the final model.
        runtime: torch (safetensors weights), onnxruntime (`model.onnx`) or openvino (`openvino_model.xml`).
        quantize: none or int8 (dynamic quantization of the weights).
        default_precision: what `precision="auto"` means for this folder ("" = the hardware's best).
        exported_from: the folder an exported reader was made from.
        calibration: the Platt scaling of its answer probabilities, when fitted (`spanqa calibrate`).
    """

    FILE: ClassVar[str] = READER_FILE
    NESTED: ClassVar[dict[str, type]] = {"data": DataConfig, "decode": DecodeConfig, "calibration": Calibration}

    version_2_with_negative: bool = False
    base_model: str = ""
    data: DataConfig = field(default_factory=DataConfig)
    decode: DecodeConfig = field(default_factory=DecodeConfig)
    eval: dict[str, float] = field(default_factory=dict)
    runtime: str = "torch"
    quantize: str = "none"
    default_precision: str = ""
    exported_from: str = ""
    calibration: Calibration | None = None
    schema_version: int = SCHEMA_VERSION

    def __post_init__(self) -> None:
        if not isinstance(self.version_2_with_negative, bool):
            raise SpanqaError(f"{READER_FILE}: version_2_with_negative must be true or false, "
                              f"got {self.version_2_with_negative!r}.")
        if self.runtime not in RUNTIMES:
            raise SpanqaError(f"{READER_FILE}: runtime {self.runtime!r}: expected one of {', '.join(RUNTIMES)}.")


@dataclass(frozen=True)
class ClassifierInfo(_Info):
    """A sentence (pair) classifier folder (`spanqa_classifier.json`): its label names, in id order."""

    FILE: ClassVar[str] = CLASSIFIER_FILE

    labels: list = field(default_factory=list)
    max_seq_length: int = 128
    eval: dict[str, float] = field(default_factory=dict)
    task: str = "classification"
    schema_version: int = SCHEMA_VERSION


@dataclass(frozen=True)
class EncoderInfo(_Info):
    """A pretrained encoder folder (`spanqa_pretrain.json`): MLM (+ NSP) heads, no span head."""

    FILE: ClassVar[str] = PRETRAIN_FILE

    base: str = ""
    init_weights: str = "random"
    max_seq_length: int = 128
    eval: dict[str, float] = field(default_factory=dict)
    task: str = "pretraining"
    schema_version: int = SCHEMA_VERSION


@dataclass(frozen=True)
class BackendMeasurement:
    """One way to run a reader, measured against fp32 torch on the same questions.

    Attributes:
        backend: torch, onnxruntime or openvino.
        precision: fp32, bf16 or int8.
        path: its folder, relative to the reader folder ("." for the folder's own torch weights).
        exact, f1: its scores on `BackendTable.questions` questions.
        f1_change, exact_change: against fp32 torch on the same questions.
        questions_per_second: its speed there, on `cpu`.
        cpu: `precision.cpu_signature()` of the machine that measured it.
    """

    backend: str
    precision: str
    path: str
    exact: float
    f1: float
    f1_change: float
    exact_change: float
    questions_per_second: float
    cpu: str

    @property
    def name(self) -> str:
        return f"{self.backend} {self.precision}"


@dataclass(frozen=True)
class BackendTable(_Info):
    """Every backend of a reader folder, measured (`spanqa_backends.json`, written by `spanqa export`).

    Attributes:
        measured: one `BackendMeasurement` per backend and precision, fp32 torch first.
        data: the questions they were measured on; questions: how many.
    """

    FILE: ClassVar[str] = BACKENDS_FILE

    measured: list = field(default_factory=list)
    data: str = ""
    questions: int = 0
    schema_version: int = SCHEMA_VERSION

    def __post_init__(self) -> None:
        rows = _rows(BackendMeasurement, self.measured, f"{BACKENDS_FILE}: measured")
        for i, row in enumerate(rows):
            if row.backend not in RUNTIMES:
                raise SpanqaError(f"{BACKENDS_FILE}: measured[{i}]: backend {row.backend!r}: expected one of "
                                  f"{', '.join(RUNTIMES)}.")
        object.__setattr__(self, "measured", rows)


def numeric(metrics: dict) -> dict[str, float]:
    """The numeric entries of a metrics dict (what an info file keeps)."""
    return {k: v for k, v in metrics.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}


@dataclass(frozen=True)
class IndexInfo(_Info):
    """A collection index folder (`spanqa_index.json`), written by `spanqa index`.

    Attributes:
        retrievers: the searches the index holds: "bm25", and "dense" when it has passage vectors.
        default_retriever: what `retriever="auto"` uses: bm25, dense or hybrid (both, fused by rank).
        tokenizer: whose tokens measure passages (a reader's, so a passage fits one of its windows).
        passage_tokens: the most tokens in a passage.
        overlap_tokens: tokens a passage may repeat from the one before it (whole paragraphs only).
        encoder: the sentence encoder of the dense vectors ("" without them).
        vector_dtype: how the vectors are stored: float16 or int8.
        ann: whether to keep an HNSW graph of the vectors and search it (approximate): "auto" past a measured
            number of passages (`retrieval.dense.ANN_ABOVE`), "on", or "off" (always exact).
        documents, passages: how many, not counting deleted ones.
    """

    FILE: ClassVar[str] = INDEX_FILE

    retrievers: list[str] = field(default_factory=lambda: ["bm25"])
    default_retriever: str = "bm25"
    tokenizer: str = "minilm-l6"
    passage_tokens: int = 317
    overlap_tokens: int = 64
    encoder: str = ""
    vector_dtype: str = "float16"
    ann: str = "auto"
    documents: int = 0
    passages: int = 0
    schema_version: int = SCHEMA_VERSION

    def __post_init__(self) -> None:
        if self.default_retriever not in RETRIEVERS:
            raise SpanqaError(f"{INDEX_FILE}: default_retriever {self.default_retriever!r}: expected one of "
                              f"{', '.join(RETRIEVERS)}.")
        for name, value, allowed in (("vector_dtype", self.vector_dtype, VECTOR_DTYPES), ("ann", self.ann, ANN_MODES)):
            if value not in allowed:
                raise SpanqaError(f"{INDEX_FILE}: {name} {value!r}: expected one of {', '.join(allowed)}.")


@dataclass(frozen=True)
class SetScore:
    """A reader's scores on one evaluation set.

    Attributes:
        name: a short name for tables (the file name without its suffixes); source: the data as given.
        domain: "in" (the training distribution) or "out" (out of domain: the report's Test columns).
        scoring: the official rules applied (squad-v1.1, squad-v2.0 or mrqa).
        questions, exact, f1: as the official script counts them; has_ans_f1, no_ans_f1: SQuAD 2.0 only.
        questions_per_second, seconds: prediction speed and time (scoring excluded).
    """

    name: str
    source: str
    domain: str
    scoring: str
    questions: int
    exact: float
    f1: float
    has_ans_f1: float | None
    no_ans_f1: float | None
    questions_per_second: float
    seconds: float


@dataclass(frozen=True)
class ScoreTable(_Info):
    """A run's scores on several sets (`spanqa_scores.json`, written by `spanqa evaluate --model RUN DATA...`).

    Attributes:
        sets: one `SetScore` per set, in the order given.
        model: the reader scored; runs_on: its engine and precision.
    """

    FILE: ClassVar[str] = SCORES_FILE

    sets: list = field(default_factory=list)
    model: str = ""
    runs_on: str = ""
    schema_version: int = SCHEMA_VERSION

    def __post_init__(self) -> None:
        rows = _rows(SetScore, self.sets, f"{SCORES_FILE}: sets")
        for i, row in enumerate(rows):
            if row.domain not in DOMAINS:
                raise SpanqaError(f"{SCORES_FILE}: sets[{i}]: domain {row.domain!r}: expected in or out.")
        object.__setattr__(self, "sets", rows)

    def mean(self, domain: str) -> tuple[float, float] | None:
        """(EM, F1) averaged over the sets of `domain` (each set counts once), or None without such sets."""
        rows = [r for r in self.sets if r.domain == domain]
        if not rows:
            return None
        return sum(r.exact for r in rows) / len(rows), sum(r.f1 for r in rows) / len(rows)


@dataclass(frozen=True)
class CheckpointManifest(_Info):
    """What a complete checkpoint holds (`spanqa_checkpoint.json`, written last, atomically): every other file
    with its size and sha256. A checkpoint folder without it, or whose files differ from it, was cut short (a
    kill, a full disk, an interrupted copy) and is never resumed from.

    Attributes:
        step: the optimizer step it was saved at.
        files: one `FileDigest` per file.
    """

    FILE: ClassVar[str] = CHECKPOINT_FILE

    step: int = 0
    files: list = field(default_factory=list)
    schema_version: int = SCHEMA_VERSION

    def __post_init__(self) -> None:
        object.__setattr__(self, "files", _rows(FileDigest, self.files, f"{CHECKPOINT_FILE}: files"))
