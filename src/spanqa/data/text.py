"""Raw text for pretraining: documents of sentences, tokenized once and cached as Arrow.

Text files (plain or .gz) hold one sentence per line and documents separated by blank lines (BERT's
pretraining format). A saved `datasets` folder or a hub dataset name gives documents from its `text`
column, one line per sentence. `spanqa data contexts` writes such a file from QA data.

Legend: S = sentences, T = tokens of all sentences together.

The tokenized corpus is flat: `ids` [T] int32, `word_start` [T] bool (a token that begins a word, for
whole-word masking), `sentence_offsets` [S + 1] and `sentence_doc` [S]. It is saved under
`cache_dir/<key>` as an Arrow dataset, where the key hashes the text's bytes and the tokenizer's full
definition, so phase 2 of a pretraining run (or any rerun) reads it instead of tokenizing again.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from spanqa.files import read_text
from spanqa.errors import SpanqaError
from spanqa.tokenization import plain_backend

log = logging.getLogger(__name__)
CACHE_VERSION = "1"


@dataclass(frozen=True)
class TokenizedCorpus:
    """Sentences as token ids, grouped into documents."""

    ids: np.ndarray
    word_start: np.ndarray
    sentence_offsets: np.ndarray
    sentence_doc: np.ndarray

    @property
    def num_sentences(self) -> int:
        return len(self.sentence_doc)

    @property
    def num_documents(self) -> int:
        return int(self.sentence_doc[-1]) + 1 if len(self.sentence_doc) else 0

    def document_sentences(self) -> list[np.ndarray]:
        """Per document, the indices of its sentences."""
        bounds = np.flatnonzero(np.diff(self.sentence_doc)) + 1
        return np.split(np.arange(self.num_sentences), bounds)


def read_documents(source: str, split: str = "train") -> list[list[str]]:
    """Documents (lists of sentences) from a text file, a saved dataset folder or a hub dataset.

    Raises:
        SpanqaError: the source cannot be read, holds no text, or a dataset has no `text` column.
    """
    path = Path(source).expanduser()
    if path.is_file():
        return _split_documents(read_text(path), path)
    return _dataset_documents(source, split)


def _split_documents(text: str, path: Path) -> list[list[str]]:
    docs = []
    for block in re.split(r"\n[ \t]*\n", text.replace("\r\n", "\n")):
        sentences = [line.strip() for line in block.split("\n") if line.strip()]
        if sentences:
            docs.append(sentences)
    if not docs:
        raise SpanqaError(f"{path}: no text (expected sentences, one per line, documents separated by blank lines).")
    return docs


def _dataset_documents(name: str, split: str) -> list[list[str]]:
    from spanqa.data.hf import open_dataset

    data = open_dataset(name, split)
    if "text" not in data.column_names:
        raise SpanqaError(f"{name}: the dataset has no 'text' column (columns: {', '.join(data.column_names)}).")
    docs = [[s.strip() for s in str(t).split("\n") if s.strip()] for t in data["text"]]
    return [d for d in docs if d]


def tokenize_corpus(sources: list[str], tokenizer, cache_dir: str | Path | None, split: str = "train") -> TokenizedCorpus:
    """The tokenized corpus of `sources` (pooled in order), from the Arrow cache when it holds it."""
    key = _cache_key(sources, tokenizer, split)
    folder = Path(cache_dir) / key if cache_dir else None
    if folder is not None and folder.is_dir():
        log.info("tokenized corpus: cached in %s", folder)
        return _load(folder)
    docs = [d for s in sources for d in read_documents(s, split)]
    corpus = _tokenize(docs, tokenizer)
    if folder is not None:
        _save(corpus, folder)
        log.info("tokenized corpus: %d documents, %d sentences, %d tokens; cached in %s",
                 corpus.num_documents, corpus.num_sentences, len(corpus.ids), folder)
    return corpus


def _tokenize(docs: list[list[str]], tokenizer) -> TokenizedCorpus:
    sentences = [s for d in docs for s in d]
    doc_of = np.repeat(np.arange(len(docs)), [len(d) for d in docs]).astype(np.int32)
    ids, starts, lengths = [], [], []
    for lo in range(0, len(sentences), 4096):
        enc = tokenizer(sentences[lo : lo + 4096], add_special_tokens=False)
        for i, row in enumerate(enc["input_ids"]):
            words = np.asarray(enc.word_ids(i), dtype=np.int64)
            start = np.ones(len(row), dtype=bool)
            start[1:] = words[1:] != words[:-1]
            ids.append(np.asarray(row, dtype=np.int32))
            starts.append(start)
            lengths.append(len(row))
    keep = np.asarray(lengths) > 0
    offsets = np.concatenate([[0], np.cumsum(np.asarray(lengths)[keep])]).astype(np.int64)
    flat = lambda parts, dtype: np.concatenate(parts).astype(dtype) if parts else np.zeros(0, dtype)  # noqa: E731
    return TokenizedCorpus(flat(ids, np.int32), flat(starts, bool), offsets, doc_of[keep])


def _cache_key(sources: list[str], tokenizer, split: str) -> str:
    h = hashlib.sha256(CACHE_VERSION.encode())
    h.update(plain_backend(tokenizer).to_str().encode())  # without the call-to-call truncation/padding state
    for source in sources:
        path = Path(source).expanduser()
        if path.is_file():
            with open(path, "rb") as fh:
                for chunk in iter(lambda: fh.read(1 << 20), b""):
                    h.update(chunk)
        else:
            h.update(f"dataset:{source}:{split}".encode())
    return h.hexdigest()[:24]


def _save(corpus: TokenizedCorpus, folder: Path) -> None:
    """Written under a temporary name and renamed into place: a crash never leaves half a cache."""
    import pyarrow as pa
    from datasets import Dataset

    offsets = pa.array(corpus.sentence_offsets.astype(np.int32))
    table = pa.table({
        "ids": pa.ListArray.from_arrays(offsets, pa.array(corpus.ids)),
        "word_start": pa.ListArray.from_arrays(offsets, pa.array(corpus.word_start)),
        "doc": pa.array(corpus.sentence_doc),
    })
    import datasets

    tmp = folder.parent / f".tmp-{folder.name}-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    bars = not datasets.utils.are_progress_bars_disabled()
    datasets.disable_progress_bars()
    try:
        Dataset(table).save_to_disk(str(tmp))
    finally:
        if bars:
            datasets.enable_progress_bars()
    folder.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.replace(tmp, folder)
    except OSError:
        if not folder.is_dir():
            raise
        shutil.rmtree(tmp, ignore_errors=True)  # another process cached the same corpus first


def _load(folder: Path) -> TokenizedCorpus:
    from datasets import load_from_disk

    table = load_from_disk(str(folder)).data.table
    ids = table.column("ids").combine_chunks()
    starts = table.column("word_start").combine_chunks()
    return TokenizedCorpus(
        ids.values.to_numpy().astype(np.int32), starts.values.to_numpy(zero_copy_only=False).astype(bool),
        ids.offsets.to_numpy().astype(np.int64), table.column("doc").to_numpy().astype(np.int32),
    )


_SENTENCE_END = re.compile(r"(?:(?<=[.!?])|(?<=[.!?][\"')\]]))\s+(?=[\"'(\[]*[A-Z0-9])")


def split_sentences(text: str) -> list[str]:
    """A paragraph cut into sentences at . ! ? followed by space and a capital or digit (good enough for NSP)."""
    text = re.sub(r"\s*[\r\n\u2028\u2029]+\s*", " ", text.strip())  # a sentence is one line of the corpus
    return [s.strip() for s in _SENTENCE_END.split(text) if s.strip()]
