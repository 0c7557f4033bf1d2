"""Dense retrieval: a sentence encoder's passage vectors on disk, searched exactly by inner product.

Legend: N = passages, Q = queries, H = vector width (384 for all-MiniLM-L6-v2), T = tokens.

all-MiniLM-L6-v2 is a sentence-embedding model, used with its own recipe: mean of the last hidden states over
the real tokens (padding masked), L2-normalised, so the inner product is the cosine. Passages are cut at 256
tokens, the length it was trained on.

Storage (`Vectors`): float16 (`vectors.npy`, memory-mapped when searched), or int8 with one scale per row
(`vector_scales.npy`: a row is int8 * scale, scale = max |component| / 127; half the disk and memory, the cosine
off by well under 1%). Exact search is one [Q, H] x [H, N] product in float32 chunks and a top-k per query.
Past `ANN_ABOVE` passages (measured: bench/dense_search.py) the index also keeps a usearch HNSW graph
(`vectors.usearch`, inner product, at the storage precision) and searches it instead: it proposes 2k candidates
in time logarithmic in N, whose cosines are then computed from the stored rows; approximate (a true neighbour the
graph misses is not found). Without the usearch package (`pip install 'spanqa[ann]'`) such an index is searched exactly, with a warning.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from spanqa.artifacts import VECTOR_DTYPES
from spanqa.errors import SpanqaError
from spanqa.models.engine_model import ShapeBuckets, pad_feed
from spanqa.models.hub import load_tokenizer, resolve_model_path
from spanqa.precision import autocast, cpu_has_native_bf16, resolve_precision

VECTORS_FILE = "vectors.npy"  # [N, H] float16 or int8, one row per passage
SCALES_FILE = "vector_scales.npy"  # [N] float32, int8 storage only
ANN_FILE = "vectors.usearch"  # the HNSW graph, past ANN_ABOVE passages
MAX_TOKENS = 256
CHUNK = 65536  # passages scored per matrix product, to bound the float32 copy of the vectors
# Passages past which an index keeps an HNSW graph. Measured by bench/dense_search.py (2 cores, all-MiniLM-L6-v2
# vectors of SQuAD paragraphs grown with near neighbours): one question searched exactly took 16 / 87 / 276 ms at
# 21k / 100k / 300k float16 passages; the graph 0.2-0.4 ms, with recall@20 against exact 0.997 / 0.997 / 1.000
# at search expansion 256 (0.947 at 300k with usearch's default 64, hence EXPANSION). Below 50,000 exact search
# costs less than reading one passage, and the index needs no extra file.
ANN_ABOVE = 50_000
EXPANSION = 256  # candidates the graph search keeps per step (usearch's expansion_search)
BULK_ABOVE = 10_000  # passages in one call past which OpenVINO int8 encodes them: its calibration takes ~20 s,
# which it wins back past ~3,000 passages
CALIBRATION_TEXTS = 160
log = logging.getLogger(__name__)


class SentenceEncoder:
    """Question and passage vectors from a sentence-embedding model (mean pooling, unit length).

    Passages in bulk (more than `BULK_ABOVE` in one call, as when a collection is indexed) run through OpenVINO
    with int8 matrix multiplications when it is installed (`pip install 'spanqa[openvino]'`): NNCF's
    post-training quantization, calibrated on `CALIBRATION_TEXTS` of the passages themselves (spread over them), with bf16 elsewhere
    on CPUs that have bf16 units. Measured on 1,500 SQuAD paragraphs (2-core EPYC with AVX512-BF16): torch bf16
    61 passages/s, OpenVINO bf16 75, OpenVINO int8 109, cosines to the torch vectors 0.993 at worst (0.997 on
    average); the recall it costs is on the benchmarks page. Questions, a few at a time, stay in torch.
    """

    def __init__(self, name: str = "minilm-l6", batch_size: int = 64, engine: str = "auto") -> None:
        from transformers import AutoModel

        if engine not in ("auto", "torch"):
            raise SpanqaError(f"encoder engine {engine!r}: expected auto or torch.")
        self.name, self.batch_size, self.engine = name, batch_size, engine
        path = resolve_model_path(name)
        self.tokenizer = load_tokenizer(path)
        self.model = AutoModel.from_pretrained(path).eval()
        self.precision = resolve_precision("auto", torch.device("cpu"))
        self._bulk = None  # the compiled OpenVINO int8 model, once made; False when OpenVINO is missing

    def encode(self, texts: list[str], progress=None) -> np.ndarray:
        """[len(texts), H] float32 unit vectors; texts are encoded longest first, so batches pad little."""
        run = self._torch_hidden
        if self.engine == "auto" and len(texts) > BULK_ABOVE:
            run = self._bulk_model(texts) or run
        order = np.argsort([-len(t) for t in texts], kind="stable")
        out = np.zeros((len(texts), self.model.config.hidden_size), np.float32)
        for lo in range(0, len(texts), self.batch_size):
            rows = order[lo:lo + self.batch_size]
            batch = self._tokens([texts[i] for i in rows])
            hidden = run(batch)  # [B, T, H]
            mask = batch["attention_mask"][..., None].astype(np.float32)  # [B, T, 1]
            mean = (hidden * mask).sum(1) / np.maximum(mask.sum(1), 1.0)  # [B, H]
            out[rows] = mean / np.maximum(np.linalg.norm(mean, axis=1, keepdims=True), 1e-12)
            if progress is not None:
                progress(len(rows))
        return out

    def _tokens(self, texts: list[str]) -> dict[str, np.ndarray]:
        return dict(self.tokenizer(texts, padding=True, truncation=True, max_length=MAX_TOKENS, return_tensors="np"))

    @torch.inference_mode()
    def _torch_hidden(self, batch: dict[str, np.ndarray]) -> np.ndarray:
        with autocast(self.precision, torch.device("cpu")):
            hidden = self.model(**{k: torch.from_numpy(v) for k, v in batch.items()}).last_hidden_state
        return hidden.float().numpy()

    def _bulk_model(self, texts: list[str]):
        """The OpenVINO int8 encoder (made on first use, calibrated on `texts`), or None without OpenVINO."""
        if self._bulk is None:
            try:
                import nncf
                import openvino as ov
            except ImportError:
                self._bulk = False
                return None
            with torch.inference_mode():
                graph = ov.convert_model(self.model.float(), example_input=self._tokens(texts[:2]))
            sample = texts[::max(1, len(texts) // CALIBRATION_TEXTS)][:CALIBRATION_TEXTS]
            feeds = [self._tokens(sample[lo:lo + 32]) for lo in range(0, len(sample), 32)]
            graph = nncf.quantize(graph, nncf.Dataset(feeds), model_type=nncf.ModelType.TRANSFORMER,
                                  subset_size=len(feeds))
            hint = "bf16" if cpu_has_native_bf16() else "f32"
            compiled = ov.Core().compile_model(graph, "CPU", {"INFERENCE_PRECISION_HINT": hint,
                                                              "PERFORMANCE_HINT": "LATENCY"})
            buckets = ShapeBuckets(max_tokens=MAX_TOKENS)  # OpenVINO keeps kernels per shape: few shapes

            def bulk(batch: dict[str, np.ndarray]) -> np.ndarray:
                rows, tokens = batch["input_ids"].shape
                return compiled(pad_feed(batch, *buckets.shape(rows, tokens)))[0][:rows, :tokens]  # [B, T, H]

            self._bulk = bulk
            log.info("encoding passages with OpenVINO int8 (%s elsewhere), calibrated on %d of them", hint,
                     len(sample))
        return self._bulk or None


@dataclass
class Vectors:
    """Passage vectors as stored (see the module doc): `data` [N, H] float16, or int8 with `scales` [N]."""

    data: np.ndarray
    scales: np.ndarray | None = None
    graph: object = None  # a usearch Index over the rows, when the folder has one

    @classmethod
    def store(cls, vectors: np.ndarray, dtype: str) -> Vectors:
        """`vectors` ([N, H] float32) at the storage precision `dtype`."""
        if dtype not in VECTOR_DTYPES:
            raise SpanqaError(f"vector dtype {dtype!r}: expected one of {', '.join(VECTOR_DTYPES)}.")
        if dtype == "float16":
            return cls(vectors.astype(np.float16))
        scales = np.maximum(np.abs(vectors).max(axis=1, initial=0.0), 1e-12) / 127.0
        return cls(np.round(vectors / scales[:, None]).astype(np.int8), scales.astype(np.float32))

    @property
    def dtype(self) -> str:
        return "int8" if self.scales is not None else "float16"

    def __len__(self) -> int:
        return len(self.data)

    def rows(self, lo: int = 0, hi: int | None = None) -> np.ndarray:
        """Rows [lo, hi) as float32 [n, H]."""
        return self.rows_at(slice(lo, hi))

    def rows_at(self, numbers: np.ndarray | slice) -> np.ndarray:
        """The rows `numbers` selects (ascending numbers, or a slice) as float32 [n, H]."""
        block = np.asarray(self.data[numbers], np.float32)
        return block * np.asarray(self.scales[numbers])[:, None] if self.scales is not None else block

    def take(self, keep: np.ndarray) -> Vectors:
        """The rows where `keep` is True, in memory."""
        return Vectors(np.asarray(self.data[keep]), None if self.scales is None else np.asarray(self.scales[keep]))

    def concat(self, more: np.ndarray) -> Vectors:
        """These rows followed by `more` ([n, H] float32) at the same precision, in memory."""
        fresh = Vectors.store(more, self.dtype)
        scales = None if self.scales is None else np.concatenate([np.asarray(self.scales), fresh.scales])
        return Vectors(np.concatenate([np.asarray(self.data), fresh.data]), scales)

    def save(self, folder: Path, ann: bool) -> None:
        np.save(folder / VECTORS_FILE, np.asarray(self.data))
        if self.scales is not None:
            np.save(folder / SCALES_FILE, np.asarray(self.scales))
        if ann:
            build_graph(self).save(str(folder / ANN_FILE))

    @classmethod
    def load(cls, folder: Path) -> Vectors:
        scales = np.load(folder / SCALES_FILE, mmap_mode="r") if (folder / SCALES_FILE).exists() else None
        return cls(np.load(folder / VECTORS_FILE, mmap_mode="r"), scales, load_graph(folder))


def build_graph(vectors: Vectors):
    """A usearch HNSW graph over `vectors` (inner product, at their storage precision)."""
    Index = _usearch()
    if Index is None:
        raise SpanqaError("an approximate (HNSW) vector index needs usearch: pip install 'spanqa[ann]'")
    graph = Index(ndim=vectors.data.shape[1], metric="ip", dtype="i8" if vectors.dtype == "int8" else "f16",
                  expansion_search=EXPANSION)
    if len(vectors):
        graph.add(np.arange(len(vectors), dtype=np.uint64), vectors.rows())
    return graph


def load_graph(folder: Path):
    """The folder's HNSW graph memory-mapped, or None (none written, or usearch missing: then exact search)."""
    if not (folder / ANN_FILE).exists():
        return None
    Index = _usearch()
    if Index is None:
        log.warning("%s: the index has an HNSW graph but usearch is not installed (pip install 'spanqa[ann]'): "
                    "searching its vectors exactly, which is slower at this size", folder)
        return None
    graph = Index.restore(str(folder / ANN_FILE), view=True)
    graph.expansion_search = EXPANSION  # a search setting, not saved with the graph
    return graph


def _usearch():
    try:
        from usearch.index import Index
    except ImportError:
        return None
    return Index


def search(vectors: Vectors, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """(passage numbers [Q, k], cosine scores [Q, k]) of the passages nearest each query, best first (-1 and
    -inf fill rows with fewer passages). Exact, or through the HNSW graph when `vectors` has one."""
    if vectors.graph is not None and len(vectors):
        return _search_graph(vectors, queries, k)
    n = len(vectors)
    scores = np.empty((len(queries), n), np.float32)  # [Q, N]
    for lo in range(0, n, CHUNK):
        scores[:, lo:lo + CHUNK] = queries @ vectors.rows(lo, lo + CHUNK).T
    k_here = min(k, n)
    ids = np.full((len(queries), k), -1, np.int64)
    best = np.full((len(queries), k), -np.inf, np.float32)
    if k_here == 0:
        return ids, best
    top = np.argpartition(-scores, k_here - 1, axis=1)[:, :k_here]  # [Q, k] unordered
    top_scores = np.take_along_axis(scores, top, 1)
    order = np.argsort(-top_scores, axis=1, kind="stable")
    ids[:, :k_here] = np.take_along_axis(top, order, 1)
    best[:, :k_here] = np.take_along_axis(top_scores, order, 1)
    return ids, best


def _search_graph(vectors: Vectors, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The graph proposes 2k candidates per query; their cosines are computed from the stored rows (the graph's
    own distances are on its int8 scale) and the best k kept."""
    ids = np.full((len(queries), k), -1, np.int64)
    best = np.full((len(queries), k), -np.inf, np.float32)
    found = vectors.graph.search(queries.astype(np.float32), min(2 * k, len(vectors)))
    keys = np.asarray(found.keys, np.int64).reshape(len(queries), -1)
    # one query gives a `Matches` (its keys are all found), several a `BatchMatches` with a count per query
    counts = np.asarray(found.counts).reshape(-1) if hasattr(found, "counts") else [keys.shape[1]]
    for q, (row, count) in enumerate(zip(keys, counts)):
        candidates = np.sort(row[:count])  # sorted reads of a memory-mapped file
        scores = vectors.rows_at(candidates) @ queries[q]
        order = np.argsort(-scores, kind="stable")[:k]
        ids[q, :len(order)], best[q, :len(order)] = candidates[order], scores[order]
    return ids, best
