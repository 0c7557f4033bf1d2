"""A collection index: documents, their passages, BM25 and optional dense vectors, in one folder.

    index = CollectionIndex.build(["manuals/"], "runs/manuals-index")     # spanqa index manuals/ --output ...
    index.search("How do I reset the router?", k=20)    # -> [(Passage, score), ...], best first

The folder holds `spanqa_index.json` (`IndexInfo`), `documents.jsonl` (id, title, path, text),
`passages.npy` ([P, 3] int64: document number, start, end: each passage is `documents[d].text[start:end]`),
`bm25/` and, with dense retrieval, `vectors.npy` ([P, H] float16 or int8; `retrieval.dense`), with an HNSW graph
past a measured size. `add` and `delete` rewrite the folder:
the new one is written beside it and renamed into place, so the folder is the old index or the whole new one,
never a mix (an interrupted write leaves the old one as it was).
Adding a document whose id is already there replaces it.

Hybrid retrieval fuses BM25's and the dense ranking by reciprocal rank (score = sum over rankings of
1 / (60 + rank), rank from 1; Cormack et al. 2009), which needs no score calibration between the two.
"""

from __future__ import annotations

import json
import logging
import shutil
import tempfile
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from spanqa.artifacts import INDEX_FILE, RETRIEVERS, IndexInfo
from spanqa.errors import SpanqaError
from spanqa.files import file_mode, folder_bytes, read_text, write_failed
from spanqa.retrieval import dense
from spanqa.retrieval.bm25 import BM25Index
from spanqa.retrieval.chunking import PassageSpans, split_document
from spanqa.retrieval.documents import Document, Skipped, read_documents

log = logging.getLogger(__name__)
DOCUMENTS_FILE = "documents.jsonl"
PASSAGES_FILE = "passages.npy"
RRF_K = 60
FUSION_DEPTH = 50  # each ranking's depth before fusion (at least k)


@dataclass(frozen=True)
class Passage:
    """One passage: `document.text[start:end]`."""

    number: int
    document: Document
    start: int
    end: int

    @property
    def text(self) -> str:
        return self.document.text[self.start:self.end]


@dataclass
class Changes:
    """What `build`, `add` or `delete` did: counts, the files skipped and why, the time taken."""

    documents: int = 0
    passages: int = 0
    removed: int = 0
    skipped: list[Skipped] = field(default_factory=list)
    seconds: float = 0.0


class CollectionIndex:
    """Documents cut into passages, searchable by BM25, dense vectors, or both (see the module doc)."""

    def __init__(self, folder: Path, info: IndexInfo, documents: list[Document], passages: np.ndarray,
                 bm25: BM25Index, vectors: dense.Vectors | None) -> None:
        self.folder, self.info, self.documents, self.passages = folder, info, documents, passages
        self.bm25, self.vectors = bm25, vectors
        self._encoder = None

    # -- making and changing ---------------------------------------------------------------------------------

    @classmethod
    def build(cls, sources: list[str], output: str | Path, info: IndexInfo = IndexInfo(), progress=None,
              ) -> tuple[CollectionIndex, Changes]:
        """Index `sources` (files, folders, QA data) into the new folder `output`."""
        output = Path(output)
        if (output / INDEX_FILE).exists():
            raise SpanqaError(f"{output}: already an index; add to it with --add, or choose a new --output.")
        if output.exists() and any(output.iterdir()):
            raise SpanqaError(f"{output}: the folder is not empty; choose a new --output.")
        empty = cls(output, info, [], np.zeros((0, 3), np.int64), BM25Index.build([], np.zeros(0)), None)
        return empty._with(sources, set(), progress)

    @classmethod
    def open(cls, folder: str | Path) -> CollectionIndex:
        """Open an index folder written by `spanqa index`.

        Raises:
            SpanqaError: not an index folder, or one of its files is missing or unreadable.
        """
        folder = Path(folder)
        info = IndexInfo.load(folder)
        if info is None:
            raise SpanqaError(f"{folder}: not a spanqa index (no {INDEX_FILE}); make one with: spanqa index "
                              f"SOURCES --output {folder}")
        try:
            documents = [Document(**json.loads(line)) for line in
                         read_text(folder / DOCUMENTS_FILE).splitlines() if line.strip()]
            passages = np.load(folder / PASSAGES_FILE)
            bm25 = BM25Index.load(folder)
            vectors = dense.Vectors.load(folder) if "dense" in info.retrievers else None
        except (OSError, ValueError, TypeError, json.JSONDecodeError) as exc:
            raise SpanqaError(f"{folder}: a damaged index ({type(exc).__name__}: {exc}); rebuild it.") from None
        return cls(folder, info, documents, passages, bm25, vectors)

    def add(self, sources: list[str], progress=None) -> Changes:
        """Add (or replace, by id) the documents of `sources`, and rewrite the folder."""
        new, changes = self._with(sources, {d.id for d in self.documents}, progress)
        self.__dict__.update(new.__dict__)
        return changes

    def delete(self, ids: list[str]) -> Changes:
        """Remove the documents with these ids, and rewrite the folder.

        Raises:
            SpanqaError: an id the index does not hold (nothing is removed then).
        """
        t0 = time.perf_counter()
        have = {d.id for d in self.documents}
        unknown = [i for i in ids if i not in have]
        if unknown:
            raise SpanqaError(f"{self.folder}: no document with id {', '.join(map(repr, unknown[:5]))}"
                              f"{' ...' if len(unknown) > 5 else ''}; nothing was deleted.")
        keep_docs = np.array([d.id not in set(ids) for d in self.documents], bool)
        new = self._kept(keep_docs)
        new.bm25 = self._bm25(new.documents, new.passages)
        new.info = replace(new.info, documents=len(new.documents), passages=len(new.passages))
        new._write()
        self.__dict__.update(new.__dict__)
        return Changes(removed=int((~keep_docs).sum()), seconds=time.perf_counter() - t0)

    def _with(self, sources: list[str], existing: set[str], progress) -> tuple[CollectionIndex, Changes]:
        t0 = time.perf_counter()
        docs, skipped = read_documents(sources, progress)
        replaced = {d.id for d in docs} & existing
        base = self._kept(np.array([d.id not in replaced for d in self.documents], bool))
        spans = cut_passages(docs, self.info, progress)
        first = len(base.documents)
        rows = np.array([(first + i, s, e) for i, sp in enumerate(spans) for s, e in zip(sp.starts, sp.ends)],
                        np.int64).reshape(-1, 3)
        documents, passages = base.documents + docs, np.concatenate([base.passages, rows])
        vectors = self._vectors(base, documents, rows, progress)
        info = replace(self.info, documents=len(documents), passages=len(passages),
                       retrievers=["bm25"] + (["dense"] if vectors is not None else []))
        new = CollectionIndex(self.folder, info, documents, passages, self._bm25(documents, passages), vectors)
        new._write()
        return new, Changes(len(docs), len(rows), len(replaced), skipped, time.perf_counter() - t0)

    def _kept(self, keep_docs: np.ndarray) -> CollectionIndex:
        """This index without the documents where `keep_docs` is False (passages renumbered), in memory; its
        BM25 and counts still describe the old passages until the caller rebuilds them."""
        renumber = np.cumsum(keep_docs) - 1
        keep = keep_docs[self.passages[:, 0]] if len(self.passages) else np.zeros(0, bool)
        passages = self.passages[keep].copy()
        passages[:, 0] = renumber[passages[:, 0]] if len(passages) else passages[:, 0]
        documents = [d for d, k in zip(self.documents, keep_docs) if k]
        vectors = self.vectors.take(keep) if self.vectors is not None else None
        return CollectionIndex(self.folder, self.info, documents, passages, self.bm25, vectors)

    def _vectors(self, base: CollectionIndex, documents: list[Document], rows: np.ndarray, progress):
        if not self.info.encoder:
            return None
        texts = [documents[d].text[s:e] for d, s, e in rows]
        fresh = self.encoder.encode(texts, (lambda n: progress("encode", n)) if progress else None)
        if base.vectors is None:
            return dense.Vectors.store(fresh, self.info.vector_dtype)
        return base.vectors.concat(fresh)

    @staticmethod
    def _bm25(documents: list[Document], passages: np.ndarray) -> BM25Index:
        return BM25Index.build([documents[d].text[s:e] for d, s, e in passages], np.arange(len(passages)))

    def _write(self) -> None:
        """Write the whole index into a new folder beside `self.folder`, then swap it in."""
        parent = self.folder.parent
        parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{self.folder.name}.", dir=parent))
        try:
            lines = (json.dumps(d.__dict__, ensure_ascii=False) for d in self.documents)
            (tmp / DOCUMENTS_FILE).write_text("".join(line + "\n" for line in lines), encoding="utf-8")
            np.save(tmp / PASSAGES_FILE, self.passages)
            self.bm25.save(tmp)
            if self.vectors is not None:
                self.vectors.save(tmp, ann=self.keeps_graph())
            self.info.save(tmp)
            mode = file_mode()  # mkdtemp's 0700 would hide the index from the colleagues it may be for
            tmp.chmod(mode | (mode & 0o444) >> 2)
            _swap(tmp, self.folder)
        except OSError as exc:
            needs = max(folder_bytes(self.folder), folder_bytes(tmp))  # the old index's size, or what got out
            shutil.rmtree(tmp, ignore_errors=True)
            raise write_failed(exc, self.folder, needs) from None
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        self.bm25 = BM25Index.load(self.folder)
        self.vectors = dense.Vectors.load(self.folder) if self.vectors is not None else None

    def keeps_graph(self) -> bool:
        """Whether the folder keeps an HNSW graph of its vectors: `info.ann` on, or auto past `ANN_ABOVE`."""
        return self.info.ann == "on" or (self.info.ann == "auto" and len(self.passages) > dense.ANN_ABOVE)

    # -- searching -------------------------------------------------------------------------------------------

    @property
    def encoder(self) -> dense.SentenceEncoder:
        if self._encoder is None:
            self._encoder = dense.SentenceEncoder(self.info.encoder or "minilm-l6")
        return self._encoder

    def passage(self, number: int) -> Passage:
        d, s, e = (int(x) for x in self.passages[number])
        return Passage(number, self.documents[d], s, e)

    def search(self, question: str, k: int = 20, retriever: str = "auto") -> list[tuple[Passage, float]]:
        """The `k` passages that best match `question`, best first, with their scores."""
        return self.search_batch([question], k, retriever)[0]

    def search_batch(self, questions: list[str], k: int = 20, retriever: str = "auto"
                     ) -> list[list[tuple[Passage, float]]]:
        """`search` for many questions at once (one BM25 call, one encoder pass, one matrix product)."""
        retriever = self.info.default_retriever if retriever == "auto" else retriever
        if retriever not in RETRIEVERS:
            raise SpanqaError(f"retriever {retriever!r}: expected auto, {', '.join(RETRIEVERS)}.")
        if retriever != "bm25" and self.vectors is None:
            raise SpanqaError(f"{self.folder}: this index has no dense vectors (built with --retriever bm25); "
                              f"use retriever bm25, or rebuild it with --retriever {retriever}.")
        depth = max(k, FUSION_DEPTH) if retriever == "hybrid" else k
        rankings = []
        if retriever in ("bm25", "hybrid"):
            rankings.append(self.bm25.search(questions, depth))
        if retriever in ("dense", "hybrid"):
            rankings.append(dense.search(self.vectors, self.encoder.encode(questions), depth))
        ids, scores = rankings[0] if len(rankings) == 1 else fuse(rankings, k)
        return [[(self.passage(int(i)), float(s)) for i, s in zip(row_ids[:k], row_scores[:k]) if i >= 0]
                for row_ids, row_scores in zip(ids, scores)]


def cut_passages(docs: list[Document], info: IndexInfo, progress=None) -> list[PassageSpans]:
    """Each document's passages, cut with `info`'s tokenizer and budget; `progress("cut", 1)` after each."""
    from spanqa.models.hub import load_tokenizer, resolve_model_path

    tokenizer = load_tokenizer(resolve_model_path(info.tokenizer))
    spans = []
    for doc in docs:
        spans.append(split_document(doc.text, tokenizer, info.passage_tokens, info.overlap_tokens))
        if progress is not None:
            progress("cut", 1)
    return spans


def fuse(rankings: list[tuple[np.ndarray, np.ndarray]], k: int) -> tuple[np.ndarray, np.ndarray]:
    """Reciprocal-rank fusion of rankings ([Q, depth] ids, -1 = none): ([Q, k] ids, [Q, k] fused scores)."""
    n_queries = len(rankings[0][0])
    ids, scores = np.full((n_queries, k), -1, np.int64), np.full((n_queries, k), -np.inf, np.float32)
    for q in range(n_queries):
        fused: dict[int, float] = {}
        for ranked, _ in rankings:
            for rank, i in enumerate(ranked[q], start=1):
                if i >= 0:
                    fused[int(i)] = fused.get(int(i), 0.0) + 1.0 / (RRF_K + rank)
        best = sorted(fused.items(), key=lambda kv: (-kv[1], kv[0]))[:k]
        for j, (i, s) in enumerate(best):
            ids[q, j], scores[q, j] = i, s
    return ids, scores


def _swap(new: Path, folder: Path) -> None:
    """Put folder `new` where `folder` is: the old one is moved aside first and removed after."""
    old = None
    if folder.exists():
        old = folder.with_name(f".{folder.name}.old-{time.time_ns()}")
        folder.rename(old)
    new.rename(folder)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
