"""Dense retrieval: a sentence encoder's passage vectors on disk, searched exactly by inner product.

Legend: N = passages, Q = queries, H = vector width (384 for all-MiniLM-L6-v2), T = tokens.

all-MiniLM-L6-v2 is a sentence-embedding model, used with its own recipe: mean of the last hidden states over
the real tokens (padding masked), L2-normalised, so the inner product is the cosine. Passages are cut at 256
tokens, the length it was trained on. Vectors are stored as float16 (`vectors.npy`, memory-mapped when
searched); a search is one [Q, H] x [H, N] product in float32 chunks and a top-k per query, exact: on 2 cores
that stays in the milliseconds per query for collections of tens of thousands of passages.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from spanqa.models.hub import load_tokenizer, resolve_model_path
from spanqa.precision import autocast, resolve_precision

VECTORS_FILE = "vectors.npy"  # [N, H] float16, one row per passage
MAX_TOKENS = 256
CHUNK = 65536  # passages scored per matrix product, to bound the float32 copy of the vectors


class SentenceEncoder:
    """Question and passage vectors from a sentence-embedding model (mean pooling, unit length)."""

    def __init__(self, name: str = "minilm-l6", batch_size: int = 64) -> None:
        from transformers import AutoModel

        self.name, self.batch_size = name, batch_size
        path = resolve_model_path(name)
        self.tokenizer = load_tokenizer(path)
        self.model = AutoModel.from_pretrained(path).eval()
        self.precision = resolve_precision("auto", torch.device("cpu"))

    @torch.inference_mode()
    def encode(self, texts: list[str], progress=None) -> np.ndarray:
        """[len(texts), H] float32 unit vectors; texts are encoded longest first, so batches pad little."""
        order = np.argsort([-len(t) for t in texts], kind="stable")
        out = np.zeros((len(texts), self.model.config.hidden_size), np.float32)
        for lo in range(0, len(texts), self.batch_size):
            rows = order[lo:lo + self.batch_size]
            batch = self.tokenizer([texts[i] for i in rows], padding=True, truncation=True, max_length=MAX_TOKENS,
                                   return_tensors="pt")
            with autocast(self.precision, torch.device("cpu")):
                hidden = self.model(**batch).last_hidden_state.float()  # [B, T, H]
            mask = batch["attention_mask"].unsqueeze(-1).float()  # [B, T, 1]
            mean = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1)  # [B, H]
            out[rows] = torch.nn.functional.normalize(mean, dim=-1).numpy()
            if progress is not None:
                progress(len(rows))
        return out


def save_vectors(folder: Path, vectors: np.ndarray) -> None:
    np.save(folder / VECTORS_FILE, vectors.astype(np.float16))


def load_vectors(folder: Path) -> np.ndarray:
    return np.load(folder / VECTORS_FILE, mmap_mode="r")


def search(vectors: np.ndarray, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """(passage numbers [Q, k], cosine scores [Q, k]) of the passages nearest each query, best first."""
    n = len(vectors)
    scores = np.empty((len(queries), n), np.float32)  # [Q, N]
    for lo in range(0, n, CHUNK):
        scores[:, lo:lo + CHUNK] = queries @ np.asarray(vectors[lo:lo + CHUNK], np.float32).T
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
