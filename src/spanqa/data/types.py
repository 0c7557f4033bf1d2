"""The records every reader produces: one `Example` per question."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Answer:
    """A gold answer span.

    Attributes:
        text: the answer as it appears in the context.
        start: char offset of `text` in the context (-1 when the source gives no position).
    """

    text: str
    start: int = -1

    @property
    def end(self) -> int:
        """Char offset one past the answer's last character."""
        return self.start + len(self.text)


@dataclass(frozen=True)
class Example:
    """One question about one context.

    Attributes:
        id: the question id predictions are keyed by (MRQA: `qid`).
        question: the question text.
        context: the passage the answer is cut from.
        answers: gold spans with char offsets, used for training labels; empty when unanswerable.
        is_impossible: True for SQuAD v2 questions with no answer in the context.
        title: article title, when the source has one.
        gold_texts: the texts scored against by the metrics; defaults to the answers' texts (MRQA scores
            against its `answers` strings, which can differ from the detected spans).
    """

    id: str
    question: str
    context: str
    answers: tuple[Answer, ...] = ()
    is_impossible: bool = False
    title: str = ""
    gold_texts: tuple[str, ...] = field(default=None)  # type: ignore[assignment]

    def __post_init__(self) -> None:
        if self.gold_texts is None:
            object.__setattr__(self, "gold_texts", tuple(a.text for a in self.answers))


@dataclass(frozen=True)
class QADataset:
    """Examples read from one source, with what the metrics need to know about it.

    Attributes:
        examples: the questions, in source order.
        source: where they came from (a path or a hub name), for messages.
        format: "squad", "mrqa", "jsonl" or "hf".
        version: the SQuAD version string when the source has one ("1.1", "v2.0"), else "".
        parts: for data pooled from several sources, each source's own dataset (scored separately).
    """

    examples: list[Example]
    source: str
    format: str
    version: str = ""
    parts: tuple["QADataset", ...] = ()

    def __len__(self) -> int:
        return len(self.examples)

    def head(self, n: int) -> QADataset:
        """The first `n` questions, scored as one source; `n` 0: this dataset as it is."""
        return QADataset(self.examples[:n], self.source, self.format, self.version) if n else self

    @property
    def has_unanswerable(self) -> bool:
        """True when the data can hold unanswerable questions (SQuAD v2 style scoring applies)."""
        return self.version.startswith("v2") or any(e.is_impossible for e in self.examples)

    @property
    def scoring(self) -> str:
        """Which official script this data is scored like: "squad-v1.1", "squad-v2.0" or "mrqa"."""
        if self.format == "mrqa":
            return "mrqa"
        return "squad-v2.0" if self.has_unanswerable else "squad-v1.1"
