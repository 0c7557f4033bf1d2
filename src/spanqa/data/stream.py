"""Questions read one at a time: what `spanqa predict` runs over a corpus without holding it.

`open_stream(source, split)` detects the format as `load_examples` does and gives a `QuestionStream`: the
questions in source order as `Example`s, and their count (one streaming pass, for a progress bar's ETA).
SQuAD JSON is parsed article by article (ijson: the file is never held whole), MRQA and row JSONL line by
line, `save_to_disk` folders and hub datasets in row batches (Arrow, memory-mapped).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from spanqa.bundle import from_bundle
from spanqa.data import hf
from spanqa.data.jsonl import row_to_example
from spanqa.data.mrqa import mrqa_examples
from spanqa.data.squad import article_examples
from spanqa.data.types import Example
from spanqa.errors import SpanqaError, first_line
from spanqa.files import iter_jsonl, open_bytes, open_text

PEEK = 1 << 20  # bytes read to tell the formats apart: a JSONL first line fits, a one-line SQuAD file need not
ROW_BATCH = 1000


@dataclass(frozen=True)
class QuestionStream:
    """One source's questions, read as they are needed.

    Attributes:
        source: the path or hub name, for messages.
        format: "squad", "mrqa", "jsonl" or "hf" (as `QADataset.format`).
        path: the file or folder read ("" for a hub dataset).
        split: the split of a `DatasetDict` or hub dataset.
    """

    source: str
    format: str
    path: str = ""
    split: str = "validation"

    def __iter__(self) -> Iterator[Example]:
        if self.format == "hf":
            yield from self._rows()
            return
        if self.format == "squad":
            yield from self._articles()
            return
        with open_text(self.path) as fh:
            lines = iter_jsonl((line.rstrip("\n") for line in fh), self.source)
            if self.format == "mrqa":
                yield from mrqa_examples(lines, self.source)
            else:
                yield from (row_to_example(obj, self.source, f"line {n}") for n, obj in lines)

    def count(self) -> tuple[int, str]:
        """(questions, SQuAD "version" or "") in one streaming pass; a dataset's row count directly."""
        if self.format == "hf":
            return len(hf.open_dataset(self.path or self.source, self.split)), ""
        if self.format != "squad":
            return sum(1 for _ in self), ""
        import ijson

        n, version = 0, ""
        with open_bytes(self.path) as fh:
            try:
                for prefix, event, value in ijson.parse(fh):
                    if event == "start_map" and prefix == "data.item.paragraphs.item.qas.item":
                        n += 1
                    elif prefix == "version" and event in ("string", "number"):
                        version = str(value)
            except ijson.JSONError as exc:
                raise SpanqaError(f"{self.source}: not valid JSON ({first_line(exc)}); expected SQuAD JSON.") from None
        return n, version

    def _articles(self) -> Iterator[Example]:
        import ijson

        with open_bytes(self.path) as fh:
            try:
                for a, article in enumerate(ijson.items(fh, "data.item", use_float=True)):
                    yield from article_examples(article, a, self.source)
            except ijson.JSONError as exc:
                raise SpanqaError(f"{self.source}: not valid JSON ({first_line(exc)}); expected SQuAD JSON.") from None

    def _rows(self) -> Iterator[Example]:
        ds = hf.open_dataset(self.path or self.source, self.split)
        missing = {"id", "question", "context"} - set(ds.column_names)
        if missing:
            raise SpanqaError(f"{self.source}: rows lack column(s) {sorted(missing)}; expected the `squad` schema.")
        i = 0
        for batch in ds.iter(batch_size=ROW_BATCH):
            for values in zip(*batch.values()):
                yield row_to_example(dict(zip(batch, values)), self.source, f"row {i}")
                i += 1


def open_stream(source: str | Path, split: str = "validation") -> QuestionStream:
    """The questions of `source` (any source `load_examples` reads), to read one at a time.

    Raises:
        SpanqaError: a missing file or an unreadable folder (the content's errors come as it is read).
    """
    path = Path(source)
    if not path.exists():
        path = from_bundle("dataset", str(source)) or path
    if path.is_dir():
        if not hf.is_saved_dataset(path):
            raise SpanqaError(f"{path}: a folder, but not one written by `datasets` `save_to_disk`.")
        return QuestionStream(str(source), "hf", str(path), split)
    if not path.exists() and path.suffix not in (".json", ".jsonl", ".gz"):
        return QuestionStream(str(source), "hf", "", split)  # a hub name
    with open_bytes(path) as fh:
        head = fh.read(PEEK)
    if not head.strip():
        raise SpanqaError(f"{path}: the file is empty.")
    line = head.lstrip().split(b"\n", 1)
    first = None
    if len(line) == 2 or len(head) < PEEK:
        try:
            first = json.loads(line[0])
        except (json.JSONDecodeError, UnicodeDecodeError):
            first = None
    if isinstance(first, dict) and "header" in first:
        return QuestionStream(str(source), "mrqa", str(path))
    if isinstance(first, dict) and {"question", "context"} <= first.keys():
        return QuestionStream(str(source), "jsonl", str(path))
    return QuestionStream(str(source), "squad", str(path))
