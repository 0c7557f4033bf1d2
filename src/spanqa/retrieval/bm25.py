"""BM25 over passages with bm25s: sparse score matrices on disk, memory-mapped when loaded, no server.

Text is lower-cased, split into words of two or more letters or digits, English stop words dropped and words
stemmed (Snowball's English stemmer, through PyStemmer); the query goes through the same steps. bm25s
cannot add to or remove from a built index, so `spanqa index --add/--delete` rebuilds it over the live
passages: a few seconds for tens of thousands of passages (measured on the benchmarks page).
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)
FOLDER = "bm25"
ROWS_FILE = "rows.npy"  # [P'] the passage number of each row bm25s indexed (deleted passages have none)


def _stemmer():
    import Stemmer

    return Stemmer.Stemmer("english")


def _tokenize(texts: list[str]):
    import bm25s

    return bm25s.tokenize(texts, stopwords="en", stemmer=_stemmer(), show_progress=False)


class BM25Index:
    """bm25s's index plus the passage number of each of its rows."""

    def __init__(self, model, rows: np.ndarray) -> None:
        self.model, self.rows = model, rows

    @classmethod
    def build(cls, texts: list[str], rows: np.ndarray) -> BM25Index:
        """Index `texts` (the live passages), `rows[i]` being the passage number of `texts[i]`."""
        import bm25s

        if not texts:  # bm25s cannot index nothing; an empty collection finds nothing
            return cls(None, np.zeros(0, np.int64))
        model = bm25s.BM25()
        model.index(_tokenize(texts), show_progress=False)
        return cls(model, np.asarray(rows, np.int64))

    def save(self, folder: Path) -> None:
        (folder / FOLDER).mkdir(parents=True, exist_ok=True)
        if self.model is not None:
            self.model.save(str(folder / FOLDER), show_progress=False)
        np.save(folder / FOLDER / ROWS_FILE, self.rows)

    @classmethod
    def load(cls, folder: Path) -> BM25Index:
        import bm25s

        rows = np.load(folder / FOLDER / ROWS_FILE)
        return cls(bm25s.BM25.load(str(folder / FOLDER), mmap=True) if len(rows) else None, rows)

    def search(self, queries: list[str], k: int) -> tuple[np.ndarray, np.ndarray]:
        """(passage numbers [Q, k], scores [Q, k]), best first; -1 / -inf pad when fewer passages match."""
        k_here = min(k, len(self.rows)) if self.model is not None else 0
        ids = np.full((len(queries), k), -1, np.int64)
        scores = np.full((len(queries), k), -np.inf, np.float32)
        if k_here == 0:
            return ids, scores
        found, found_scores = self.model.retrieve(_tokenize(queries), k=k_here, show_progress=False, n_threads=1)
        matched = found_scores > 0  # bm25s fills with zero-score rows when fewer passages share a word
        ids[:, :k_here] = np.where(matched, self.rows[found], -1)
        scores[:, :k_here] = np.where(matched, found_scores, -np.inf)
        return ids, scores
