"""Tokenizer utilities every stage shares: the Rust backend without stored truncation, where special
tokens go around a pair, and which tensors a model takes.
"""

from __future__ import annotations

import inspect
import weakref
from dataclasses import dataclass

import numpy as np

from spanqa.errors import SpanqaError

_BACKENDS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_TEMPLATES: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
MODEL_INPUTS = ("input_ids", "token_type_ids", "attention_mask")


@dataclass(frozen=True)
class PairTemplate:
    """Where special tokens go around a (first, second) pair, read off the tokenizer itself.

    A window is prefix + first + middle + second + suffix. `types` gives one token type per part; the special
    parts also keep theirs token by token (`special_types`), since a part can mix them: XLNet's suffix is
    `<sep>` (type 1) then `<cls>` (type 2).
    `question_first` is False for tokenizers that pad on the left (the context comes first).
    """

    prefix: np.ndarray
    middle: np.ndarray
    suffix: np.ndarray
    types: tuple[int, int, int, int, int]
    question_first: bool
    cls_id: int | None
    special_types: tuple[np.ndarray, np.ndarray, np.ndarray] = (np.zeros(0, np.int8),) * 3

    def window_types(self, first_len: int, second_len: int) -> np.ndarray:
        """[window length] token types of a window with `first_len` and `second_len` tokens in its two texts."""
        pre, mid, suf = self.special_types
        return np.concatenate([pre, np.full(first_len, self.types[1], np.int8), mid,
                               np.full(second_len, self.types[3], np.int8), suf]).astype(np.int8)

    @property
    def num_special(self) -> int:
        return len(self.prefix) + len(self.middle) + len(self.suffix)

    @classmethod
    def from_tokenizer(cls, tokenizer) -> PairTemplate:
        cached = _TEMPLATES.get(tokenizer)
        if cached is None or cached[0] != (len(tokenizer), tokenizer.padding_side):
            cached = ((len(tokenizer), tokenizer.padding_side), cls._read(tokenizer))
            _TEMPLATES[tokenizer] = cached
        return cached[1]

    @classmethod
    def _read(cls, tokenizer) -> PairTemplate:
        enc = plain_backend(tokenizer).encode("a", "b", add_special_tokens=True)
        seq = [-1 if s is None else s for s in enc.sequence_ids]
        ids, types = np.asarray(enc.ids, dtype=np.int32), enc.type_ids
        first = [i for i, s in enumerate(seq) if s == 0]
        second = [i for i, s in enumerate(seq) if s == 1]
        if not first or not second:
            raise SpanqaError("the tokenizer does not encode sentence pairs; a QA reader needs them.")
        parts = (ids[: first[0]], ids[first[-1] + 1 : second[0]], ids[second[-1] + 1 :])
        part_type = lambda lo, hi, fallback: types[lo] if lo < hi else fallback  # noqa: E731
        type_of = (
            part_type(0, first[0], types[first[0]]),
            types[first[0]],
            part_type(first[-1] + 1, second[0], types[second[0]]),
            types[second[0]],
            part_type(second[-1] + 1, len(ids), types[second[0]]),
        )
        cls_id = tokenizer.cls_token_id if tokenizer.cls_token_id is not None else None
        t = np.asarray(types, dtype=np.int8)
        special = (t[: first[0]], t[first[-1] + 1 : second[0]], t[second[-1] + 1 :])
        return cls(*parts, type_of, tokenizer.padding_side != "left", cls_id, special)


def plain_backend(tokenizer):
    """A copy of the tokenizer's Rust backend with its stored truncation and padding turned off.

    Some tokenizer.json files carry `truncation: 128` and fixed padding (all-MiniLM-L6-v2 does); left on,
    they would silently cut every context at 128 tokens. The copy is made once per tokenizer object and
    vocabulary size (serialising a 30k-word vocabulary costs more than answering a question).
    """
    from tokenizers import Tokenizer

    cached = _BACKENDS.get(tokenizer)
    if cached is not None and cached[0] == len(tokenizer):
        return cached[1]
    backend = Tokenizer.from_str(tokenizer.backend_tokenizer.to_str())
    backend.no_truncation()
    backend.no_padding()
    _BACKENDS[tokenizer] = (len(tokenizer), backend)
    return backend


def input_names_for(tokenizer, model=None) -> list[str]:
    """The tensors to feed: the tokenizer's `model_input_names`, with `token_type_ids` decided by the model when
    one is given: fed when it uses segments, whatever the tokenizer's list says (transformers 5 leaves them out
    of ALBERT's and XLNet's lists, and a folder whose tokenizer_config names PreTrainedTokenizerFast loses them
    too), and not fed when it has one segment type or none (DeBERTa-v3's tokenizer lists them)."""
    names = [n for n in getattr(tokenizer, "model_input_names", ["input_ids", "attention_mask"]) if n in MODEL_INPUTS]
    if model is None:
        return names
    names = [n for n in names if n != "token_type_ids"]
    if uses_segments(model):
        names.insert(1, "token_type_ids")
    return names


def uses_segments(model) -> bool:
    """True when the model takes `token_type_ids` and has more than one segment type (XLNet: always)."""
    graph_inputs = getattr(model, "input_names", None)  # ONNX Runtime / OpenVINO wrappers: their graph's inputs
    if graph_inputs is not None:
        return "token_type_ids" in graph_inputs
    forward = getattr(model, "forward", None)
    if forward is None or "token_type_ids" not in inspect.signature(forward).parameters:
        return False
    config = getattr(model, "config", None)
    return getattr(config, "type_vocab_size", 0) > 1 or getattr(config, "model_type", "") == "xlnet"
