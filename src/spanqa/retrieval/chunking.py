"""Documents -> passages that fit a reader's window, each a character span of its document.

A passage is `text[start:end]` of one document, so an answer found in a passage at offset i sits at
`start + i` in the document. Passages are packed from whole paragraphs (runs of text between blank lines)
while their tokens fit `max_tokens` (the reader's window less the question: 384 - 64 - 3 = 317 for the usual
settings), and a passage may begin with the last paragraphs of the one before it, up to `overlap_tokens`,
so an answer near a boundary is whole in one of the two. A paragraph longer than `max_tokens` is cut into
token windows that overlap by `overlap_tokens`, cut between words.

Worked example, max_tokens 10, overlap 4, paragraphs of 6, 3, 5 and 2 tokens: [p1 p2] (9 tokens; p3 would
make 14), then [p2 p3 p4] (p2's 3 tokens carried over as overlap, 10 in all).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

PARAGRAPH = re.compile(r"\S(?:.*?\S)?(?=\s*\n\s*\n|\s*$)", re.S)  # text between blank lines, ends trimmed


@dataclass(frozen=True)
class PassageSpans:
    """Passages of one document as char spans: starts [P], ends [P] (int64)."""

    starts: np.ndarray
    ends: np.ndarray


def paragraphs(text: str) -> list[tuple[int, int]]:
    """(start, end) of each paragraph: maximal runs of text between blank lines, without edge whitespace."""
    return [m.span() for m in PARAGRAPH.finditer(text)]


def split_document(text: str, tokenizer, max_tokens: int, overlap_tokens: int) -> PassageSpans:
    """Cut `text` into passages of at most `max_tokens` tokens of `tokenizer` (see the module doc)."""
    paras = paragraphs(text)
    if not paras:
        return PassageSpans(np.zeros(0, np.int64), np.zeros(0, np.int64))
    encoded = tokenizer([text[s:e] for s, e in paras], add_special_tokens=False, return_offsets_mapping=True)
    pieces = []  # (start, end, tokens): paragraphs, and the token windows of over-long ones
    for (s, _), offsets in zip(paras, encoded["offset_mapping"]):
        pieces += _windows(s, offsets, max_tokens, overlap_tokens)
    spans, current = [], []
    for piece in pieces:
        if current and sum(p[2] for p in current) + piece[2] > max_tokens:
            spans.append((current[0][0], current[-1][1]))
            current = _carried(current, overlap_tokens, max_tokens - piece[2])
        current.append(piece)
    spans.append((current[0][0], current[-1][1]))
    starts, ends = zip(*spans)
    return PassageSpans(np.asarray(starts, np.int64), np.asarray(ends, np.int64))


def _windows(start: int, offsets: list[tuple[int, int]], max_tokens: int, overlap: int) -> list[tuple[int, int, int]]:
    """A paragraph as one piece, or as overlapping token windows when it has more than `max_tokens` tokens."""
    n = len(offsets)
    if n <= max_tokens:
        return [(start + offsets[0][0], start + offsets[-1][1], n)] if n else []
    out, lo = [], 0
    while True:  # windows start and end between words; each starts `overlap` tokens before the last one ended
        hi = min(lo + max_tokens, n)
        if hi < n and _word_end(offsets, hi) > lo:
            hi = _word_end(offsets, hi)
        out.append((start + offsets[lo][0], start + offsets[hi - 1][1], hi - lo))
        if hi == n:
            break
        following = _word_start(offsets, max(hi - overlap, lo + 1))
        lo = following if following > lo else hi
    return out


MAX_WORD_TOKENS = 16  # a "word" longer than this (a URL, text without spaces) may be cut


def _touches(offsets, i: int) -> bool:
    """Token `i` continues the word of token i - 1 (no space between them)."""
    return 0 < i < len(offsets) and offsets[i][0] == offsets[i - 1][1]


def _word_start(offsets, i: int) -> int:
    """`i`, moved back to the first token of its word (by at most MAX_WORD_TOKENS)."""
    j = i
    while _touches(offsets, j) and i - j < MAX_WORD_TOKENS:
        j -= 1
    return j if not _touches(offsets, j) else i


def _word_end(offsets, i: int) -> int:
    """`i` (exclusive), moved back so the window ends where a word ends (by at most MAX_WORD_TOKENS)."""
    j = i
    while _touches(offsets, j) and i - j < MAX_WORD_TOKENS:
        j -= 1
    return j if not _touches(offsets, j) and j > 0 else i


def _carried(pieces: list, overlap: int, room: int) -> list:
    """The last whole pieces of a finished passage that fit in `overlap` tokens and in `room`."""
    carried, tokens = [], 0
    for piece in reversed(pieces):
        if tokens + piece[2] > min(overlap, room):
            break
        carried.insert(0, piece)
        tokens += piece[2]
    return carried
