"""Every supported QA source -> `QADataset` of `Example`s.

`load_examples` detects the format from the content, not the file name: SQuAD JSON (an object with
`data`), MRQA jsonl (a `header` line), row JSONL, a `save_to_disk` folder, or a hub name.
"""

from __future__ import annotations

import json
import logging
from dataclasses import replace
from pathlib import Path

from spanqa.bundle import from_bundle
from spanqa.data import hf
from spanqa.files import parse_json, read_text
from spanqa.data.jsonl import parse_jsonl
from spanqa.data.mrqa import parse_mrqa
from spanqa.data.squad import parse_squad
from spanqa.data.types import Answer, Example, QADataset
from spanqa.errors import SpanqaError

__all__ = ["Answer", "Example", "QADataset", "load_examples", "check_answer_starts", "check_source"]
log = logging.getLogger(__name__)


def load_examples(source: str | Path, split: str = "validation", repair_answers: bool = False) -> QADataset:
    """Read questions from any supported source.

    Args:
        source: a file (SQuAD JSON, MRQA jsonl, row JSONL; plain or .gz), a `save_to_disk` folder, or a
            hub name such as `squad_v2` or `squad:train`.
        split: the split to take from a hub dataset or a saved `DatasetDict`.
        repair_answers: move an `answer_start` that does not point at its text to the nearest occurrence.

    Raises:
        SpanqaError: the source is missing, empty, corrupt, or not one of the formats above.
    """
    path = Path(source)
    if not path.exists():
        path = from_bundle("dataset", str(source)) or path  # a file or folder fetched into the active bundle
    if path.is_dir():
        if not hf.is_saved_dataset(path):
            raise SpanqaError(f"{path}: a folder, but not one written by `datasets` `save_to_disk`.")
        dataset = hf.load_saved(path, split)
    elif path.exists() or path.suffix in (".json", ".jsonl", ".gz"):
        dataset = _parse_file(read_text(path), str(path))
    else:
        dataset = hf.load_hub(str(source), split)
    if not dataset.examples:
        raise SpanqaError(f"{source}: no questions found.")
    return _checked(dataset, repair_answers)


def check_source(source: str | Path) -> None:
    """Fail now, not after minutes of work, when `source` names a local file (a .json, .jsonl or .gz suffix)
    that is not there; hub names and folders are checked when they are read.

    Raises:
        SpanqaError: the file is missing.
    """
    path = Path(source)
    if path.suffix in (".json", ".jsonl", ".gz") and not path.exists() and not from_bundle("dataset", str(source)):
        raise SpanqaError(f"{path}: no such file.")


def _parse_file(text: str, source: str) -> QADataset:
    stripped = text.lstrip()
    first_line = stripped.split("\n", 1)[0]
    try:
        first = json.loads(first_line)
    except json.JSONDecodeError:
        first = None
    if isinstance(first, dict) and "header" in first:
        return parse_mrqa(text, source)
    if isinstance(first, dict) and {"question", "context"} <= first.keys():
        return parse_jsonl(text, source)
    return parse_squad(parse_json(text, source, "SQuAD JSON, MRQA jsonl or JSONL rows"), source)


def _checked(dataset: QADataset, repair: bool) -> QADataset:
    examples, bad = check_answer_starts(dataset.examples, repair)
    if bad:
        shown = ", ".join(bad[:5])
        action = "moved to the nearest occurrence" if repair else "kept as given (--repair-answers moves them)"
        log.warning(
            "%s: %d answer_start value(s) do not point at their answer text (%s%s); %s.",
            dataset.source, len(bad), shown, ", ..." if len(bad) > 5 else "", action,
        )
    return replace(dataset, examples=examples)


def check_answer_starts(examples: list[Example], repair: bool = False) -> tuple[list[Example], list[str]]:
    """Find gold answers whose `start` does not point at their text.

    Returns:
        (examples, ids of the questions with a bad start). With `repair`, each bad start is moved to the
        occurrence of the text nearest to it (left alone when the text is not in the context).
    """
    bad: list[str] = []
    out = []
    for ex in examples:
        wrong = [a for a in ex.answers if a.start >= 0 and ex.context[a.start : a.end] != a.text]
        if wrong:
            bad.append(ex.id)
            if repair:
                ex = replace(ex, answers=tuple(_nearest(ex.context, a) for a in ex.answers))
        out.append(ex)
    return out, bad


def _nearest(context: str, answer: Answer) -> Answer:
    if answer.start >= 0 and context[answer.start : answer.end] == answer.text:
        return answer
    hits, i = [], context.find(answer.text)
    while i >= 0 and answer.text:
        hits.append(i)
        i = context.find(answer.text, i + 1)
    if not hits:
        return answer
    return Answer(answer.text, min(hits, key=lambda h: abs(h - answer.start)))
