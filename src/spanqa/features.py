"""Examples -> model windows ("features"), with char offsets, labels and max-context ownership.

Legend: F = windows, T = tokens of all windows together, L = padded window length, n = context tokens.

Each distinct context is tokenized once (SQuAD has ~5 questions per paragraph) and each question once;
windows are then assembled from token ids, so no pair is re-tokenized per window.

Sliding windows. A context longer than the room a window leaves is cut into overlapping spans:
`doc_stride` is the overlap in tokens, as in transformers. Worked example: 10 context tokens, room for 4,
doc_stride 2 -> the window advances by 4 - 2 = 2 tokens: [0,4) [2,6) [4,8) [6,10), and stops at the end.

Max-context ownership. A token in several windows belongs to the one where it has most context on both
sides: score = min(tokens left of it, tokens right of it) + 0.01 * window length, first window on ties.
Worked example (windows above): token 3 is in [0,4) with min(3, 0) = 0 and in [2,6) with min(1, 2) = 1,
so it belongs to [2,6). Only owned tokens may start an answer, so each span is decoded once.

Char <-> token offsets. Offsets are char offsets into the example's own context, trimmed of whitespace,
so a byte-level BPE token "ĠParis" covering " Paris" maps to exactly "Paris". An answer [s, e) in chars
starts at the first token ending after s and ends at the last token starting before e. Worked example:
"in Paris." -> tokens "in" (0,2), "paris" (3,8), "." (8,9); answer "Paris" at [3, 8) -> tokens 1..1.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

import numpy as np

from spanqa.batching import PAD_ID, Ragged
from spanqa.config import DataConfig
from spanqa.data import Example
from spanqa.errors import SpanqaError
from spanqa.tokenization import PairTemplate, plain_backend

_SURROGATE = re.compile("[\ud800-\udfff]")
# Every char that str.isspace() accepts; offsets are trimmed of these.
_SPACE_CODEPOINTS = np.array([c for c in range(0x3001) if chr(c).isspace()], dtype=np.uint32)


@dataclass(frozen=True)
class Features(Ragged):
    """All windows of a list of examples, ragged (no padding), as flat arrays.

    Attributes:
        input_ids: [T] int32 token ids of every window, concatenated.
        token_type_ids: [T] int8 segment ids.
        offsets: [T, 2] int32 char [start, end) in the example's context; -1 for question/special tokens.
        is_max_context: [T] bool, True where this window owns the context token.
        row_splits: [F + 1] int64; window f is tokens row_splits[f]:row_splits[f + 1].
        example_index: [F] int32 index of the window's example in the list it was built from.
        start_positions: [F] int32 answer start token in the window (cls_index when not inside).
        end_positions: [F] int32 answer end token, inclusive (cls_index when not inside).
        cls_index: [F] int32 position of the CLS token (the "no answer" position).

    `pad(rows, pad_id)` gives input_ids, token_type_ids, attention_mask [B, L]; offsets [B, L, 2] (-1 at
    padding); is_max_context [B, L]; start_positions, end_positions, cls_index [B]; rows [B].
    """

    TOKEN_FIELDS = {
        "input_ids": ("input_ids", PAD_ID, np.int64),
        "token_type_ids": ("token_type_ids", 0, np.int64),
        "offsets": ("offsets", -1, None),
        "is_max_context": ("is_max_context", False, None),
    }
    ROW_FIELDS = {"start_positions": "start_positions", "end_positions": "end_positions", "cls_index": "cls_index"}

    input_ids: np.ndarray
    token_type_ids: np.ndarray
    offsets: np.ndarray
    is_max_context: np.ndarray
    row_splits: np.ndarray
    example_index: np.ndarray
    start_positions: np.ndarray
    end_positions: np.ndarray
    cls_index: np.ndarray


def trim_offsets(context: str, offsets: np.ndarray) -> np.ndarray:
    """Shrink each [start, end) so it neither starts nor ends on whitespace (all-space tokens -> empty).

    Args:
        offsets: [n, 2] char offsets into `context`.
    Returns:
        [n, 2] trimmed offsets, start <= end.
    """
    if not len(offsets) or not context:
        return offsets
    codes = np.frombuffer(context.encode("utf-32-le"), dtype=np.uint32)
    space = np.isin(codes, _SPACE_CODEPOINTS)
    if not space[np.minimum(offsets[:, 0], len(codes) - 1)].any() and not space[offsets[:, 1] - 1].any():
        return offsets
    idx = np.arange(len(codes) + 1)
    # next_real[c]: first non-space char at or after c; prev_real_end[c]: one past the last non-space before c
    next_real = np.minimum.accumulate(np.where(np.append(~space, True), idx, len(codes))[::-1])[::-1]
    prev_real_end = np.maximum.accumulate(np.where(np.insert(~space, 0, True), idx, 0))
    start = np.minimum(next_real[offsets[:, 0]], offsets[:, 1])
    end = np.maximum(prev_real_end[offsets[:, 1]], start)
    return np.stack([start, end], axis=1).astype(np.int32)


def extend_over_marks(context: str, offsets: np.ndarray) -> np.ndarray:
    """Let each token end after the combining marks that follow it, so a normaliser that strips accents
    still cuts "e\u0301" (e + combining acute) whole, not "e".

    Args:
        offsets: [n, 2] char offsets into `context`.
    """
    if not len(offsets) or not any(unicodedata.combining(c) for c in context):
        return offsets
    marks = np.array([unicodedata.combining(c) > 0 for c in context] + [False])
    ends = offsets[:, 1].copy()
    limit = np.append(np.maximum(offsets[1:, 0], offsets[:-1, 1]), len(context))  # never into the next token
    while True:
        more = (ends > offsets[:, 0]) & (ends < limit) & marks[ends]
        if not more.any():
            return np.stack([offsets[:, 0], ends], axis=1).astype(np.int32)
        ends[more] += 1


def answer_token_span(offsets: np.ndarray, start_char: int, end_char: int) -> tuple[int, int]:
    """Context token span [first, last] covering chars [start_char, end_char); (-1, -1) when none does."""
    first = int(np.searchsorted(offsets[:, 1], start_char, side="right"))
    last = int(np.searchsorted(offsets[:, 0], end_char, side="left")) - 1
    if first >= len(offsets) or last < first:
        return -1, -1
    return first, last


def window_starts(n: int, room: int, doc_stride: int) -> np.ndarray:
    """Start token of each window over `n` context tokens (see the worked example at the top)."""
    if n <= room:
        return np.zeros(1, dtype=np.int64)
    step = room - doc_stride
    return np.arange(0, 1 + -(-(n - room) // step)) * step


def max_context_owner(starts: np.ndarray, n: int, room: int) -> np.ndarray:
    """[n] index of the window that owns each context token (see the worked example at the top)."""
    pos = np.arange(n)[None, :]
    lo, hi = starts[:, None], np.minimum(starts + room, n)[:, None]  # [W, 1]
    score = np.minimum(pos - lo, hi - 1 - pos) + 0.01 * (hi - lo)  # [W, n]
    score = np.where((pos >= lo) & (pos < hi), score, -np.inf)
    return score.argmax(axis=0)


@dataclass(frozen=True)
class _Tokenized:
    """A context or question tokenized once: ids [n] and trimmed char offsets [n, 2]."""

    ids: np.ndarray
    offsets: np.ndarray


def _tokenize(backend, texts: list[str]) -> list[_Tokenized]:
    out = []
    for text, enc in zip(texts, backend.encode_batch(texts, add_special_tokens=False)):
        offsets = np.asarray(enc.offsets, dtype=np.int32).reshape(-1, 2)
        out.append(_Tokenized(np.asarray(enc.ids, dtype=np.int32), extend_over_marks(text, trim_offsets(text, offsets))))
    return out


def check_encodable(examples: list[Example]) -> None:
    """Refuse text no tokenizer can take: a lone surrogate (half of a UTF-16 pair, e.g. an emoji cut in two)
    cannot be encoded as UTF-8.

    Raises:
        SpanqaError: naming the question, the field and the character position.
    """
    contexts: set[str] = set()  # SQuAD has ~5 questions per context: each context is read once
    for ex in examples:
        for name in ("question", "context"):
            text = getattr(ex, name)
            if name == "context":
                if text in contexts:
                    continue
                contexts.add(text)
            bad = _SURROGATE.search(text)
            if bad:
                raise SpanqaError(
                    f"question {ex.id!r}: {name} character {bad.start()} is a lone surrogate "
                    f"(U+{ord(bad.group()):04X}, half of a UTF-16 pair, e.g. an emoji cut in two), which cannot be "
                    "encoded as UTF-8; send whole characters.")


def window_room(config: DataConfig, question_tokens: int, num_special: int) -> int:
    """Context tokens a window holds beside a question of `question_tokens` tokens and the special tokens."""
    return config.max_seq_length - question_tokens - num_special


def count_windows(pairs: list[tuple[str, str]], tokenizer, config: DataConfig) -> list[int]:
    """Windows each (question, context) pair makes under `config`, from one tokenization pass (no windows
    built): what answering it costs, for admission and scheduling."""
    check_encodable([Example(str(i), q, c) for i, (q, c) in enumerate(pairs)])
    template = PairTemplate.from_tokenizer(tokenizer)
    backend = plain_backend(tokenizer)
    contexts = backend.encode_batch([c for _, c in pairs], add_special_tokens=False)
    questions = backend.encode_batch([q.strip() for q, _ in pairs], add_special_tokens=False)
    out = []
    for q, c in zip(questions, contexts):
        room = window_room(config, min(len(q.ids), config.max_query_length), template.num_special)
        out.append(len(window_starts(len(c.ids), max(room, 1), min(config.doc_stride, max(room - 1, 0)))))
    return out


def build_features(examples: list[Example], tokenizer, config: DataConfig) -> Features:
    """Cut every example into windows of at most `config.max_seq_length` tokens.

    Raises:
        SpanqaError: `config` leaves no room for context or a `doc_stride` that would not advance; text with a
            lone surrogate (`check_encodable`).
    """
    check_encodable(examples)
    template = PairTemplate.from_tokenizer(tokenizer)
    config.context_room(template.num_special)
    backend = plain_backend(tokenizer)
    context_ids: dict[str, int] = {}
    for ex in examples:
        context_ids.setdefault(ex.context, len(context_ids))
    contexts = _tokenize(backend, list(context_ids))
    questions = backend.encode_batch([ex.question.strip() for ex in examples], add_special_tokens=False)
    builder = _WindowBuilder(template, config)
    for i, (ex, q) in enumerate(zip(examples, questions)):
        q_ids = np.asarray(q.ids[: config.max_query_length], dtype=np.int32)
        builder.add(i, ex, q_ids, contexts[context_ids[ex.context]])
    return builder.finish()


class _WindowBuilder:
    """Accumulates windows example by example, then concatenates them into `Features` once."""

    def __init__(self, template: PairTemplate, config: DataConfig) -> None:
        self.t, self.config = template, config
        self.parts: dict[str, list[np.ndarray]] = {k: [] for k in ("ids", "types", "offsets", "owned")}
        self.rows: dict[str, list[int]] = {k: [] for k in ("example", "start", "end", "cls", "length")}

    def add(self, index: int, ex: Example, q_ids: np.ndarray, ctx: _Tokenized) -> None:
        t, n = self.t, len(ctx.ids)
        room = window_room(self.config, len(q_ids), t.num_special)
        starts = window_starts(n, room, self.config.doc_stride)
        owner = max_context_owner(starts, n, room)
        answer = _answer_tokens(ex, ctx.offsets)
        for w, a in enumerate(starts):
            b = min(a + room, n)
            self._add_window(index, q_ids, ctx, a, b, owner[a:b] == w, answer)

    def _add_window(self, index, q_ids, ctx, a, b, owned, answer) -> None:
        t = self.t
        first, second = (q_ids, ctx.ids[a:b]) if t.question_first else (ctx.ids[a:b], q_ids)
        pieces = (t.prefix, first, t.middle, second, t.suffix)
        ids = np.concatenate(pieces)
        ctx_at = len(t.prefix) + (len(q_ids) + len(t.middle) if t.question_first else 0)
        offsets = np.full((len(ids), 2), -1, dtype=np.int32)
        offsets[ctx_at : ctx_at + b - a] = ctx.offsets[a:b]
        is_owned = np.zeros(len(ids), dtype=bool)
        is_owned[ctx_at : ctx_at + b - a] = owned
        cls = self._cls_position(len(ids))
        inside = answer[0] >= a and 0 <= answer[1] < b
        self.parts["ids"].append(ids)
        self.parts["types"].append(t.window_types(len(first), len(second)))
        self.parts["offsets"].append(offsets)
        self.parts["owned"].append(is_owned)
        for key, value in (
            ("example", index),
            ("start", ctx_at + answer[0] - a if inside else cls),
            ("end", ctx_at + answer[1] - a if inside else cls),
            ("cls", cls),
            ("length", len(ids)),
        ):
            self.rows[key].append(value)

    def _cls_position(self, length: int) -> int:
        t = self.t
        if t.cls_id is not None and t.cls_id in t.prefix:
            return int(np.flatnonzero(t.prefix == t.cls_id)[0])
        if t.cls_id is not None and t.cls_id in t.suffix:
            return length - len(t.suffix) + int(np.flatnonzero(t.suffix == t.cls_id)[0])
        return 0

    def finish(self) -> Features:
        p, r = self.parts, self.rows
        cat = lambda xs, dtype, shape=(0,): np.concatenate(xs) if xs else np.zeros(shape, dtype)  # noqa: E731
        return Features(
            input_ids=cat(p["ids"], np.int32),
            token_type_ids=cat(p["types"], np.int8),
            offsets=cat(p["offsets"], np.int32, (0, 2)),
            is_max_context=cat(p["owned"], bool),
            row_splits=np.concatenate([[0], np.cumsum(r["length"], dtype=np.int64)]),
            example_index=np.asarray(r["example"], dtype=np.int32),
            start_positions=np.asarray(r["start"], dtype=np.int32),
            end_positions=np.asarray(r["end"], dtype=np.int32),
            cls_index=np.asarray(r["cls"], dtype=np.int32),
        )


def _answer_tokens(ex: Example, offsets: np.ndarray) -> tuple[int, int]:
    """Context token span of the first positioned gold answer; (-1, -1) when unanswerable or lost."""
    if ex.is_impossible:
        return -1, -1
    for ans in ex.answers:
        if ans.start >= 0 and ans.text:
            return answer_token_span(offsets, ans.start, ans.end)
    return -1, -1
