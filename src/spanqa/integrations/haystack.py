"""`SpanqaReader`: a Haystack component (2.x and later) that answers a query from the documents a retriever
found, in place of the `ExtractiveReader` Haystack 3.0 moved out of its core.

    from haystack import Pipeline
    from spanqa.integrations.haystack import SpanqaReader

    pipe = Pipeline()
    pipe.add_component("retriever", InMemoryBM25Retriever(document_store=store))
    pipe.add_component("reader", SpanqaReader("runs/minilm", top_k=3))
    pipe.connect("retriever.documents", "reader.documents")
    pipe.run({"retriever": {"query": q}, "reader": {"query": q}})["reader"]["answers"]

Answers are ranked across documents (`Reader.answer` with a list of passages: raw span scores, which
compare between documents), each an `ExtractedAnswer` pointing at its document with char offsets into its
content; `score` is the answer's probability over the pooled candidates. Like `ExtractiveReader`, a
"no answer" entry (data None) closes the list, scored with the reader's no-answer probability (SQuAD v2
readers) or 0. Needs `pip install 'spanqa[haystack]'`.
"""

from __future__ import annotations

from typing import Any

from spanqa.errors import SpanqaError

try:
    from haystack import Document, component, default_from_dict, default_to_dict
    from haystack.dataclasses import ExtractedAnswer
except ImportError:  # pragma: no cover - exercised only without the extra
    raise SpanqaError("spanqa.integrations.haystack needs Haystack: pip install 'spanqa[haystack]'") from None


@component
class SpanqaReader:
    """Extractive answers to a query from a list of Haystack `Document`s, by a spanqa reader."""

    def __init__(self, model: str, top_k: int = 20, backend: str = "auto", device: str = "",
                 overlap_threshold: float | None = 0.01, no_answer: bool = True) -> None:
        """
        Args:
            model: a reader folder, hub QA model or alias (what `Reader.load` takes).
            top_k: answers returned (before the "no answer" entry).
            backend: torch, onnxruntime, openvino or auto (see `spanqa.answering.backends`).
            overlap_threshold: drop spans overlapping a better one of the same document by more than this
                fraction of either's length (None keeps all).
            no_answer: end the list with a "no answer" entry, as Haystack's ExtractiveReader does.
        """
        self.model, self.top_k, self.backend, self.device = model, top_k, backend, device
        self.overlap_threshold, self.no_answer = overlap_threshold, no_answer
        self._reader = None

    def warm_up(self) -> None:
        if self._reader is None:
            from spanqa.reader import Reader

            self._reader = Reader.load(self.model, backend=self.backend, device=self.device)

    def to_dict(self) -> dict[str, Any]:
        return default_to_dict(self, model=self.model, top_k=self.top_k, backend=self.backend, device=self.device,
                               overlap_threshold=self.overlap_threshold, no_answer=self.no_answer)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SpanqaReader:
        return default_from_dict(cls, data)

    @component.output_types(answers=list[ExtractedAnswer])
    def run(self, query: str, documents: list[Document], top_k: int | None = None) -> dict[str, list]:
        self.warm_up()
        top_k = top_k or self.top_k
        usable = [d for d in documents if isinstance(d.content, str) and d.content.strip()]
        if not usable:
            return {"answers": [ExtractedAnswer(query=query, score=1.0, data=None)] if self.no_answer else []}
        found = [a for a in self._reader.answer(query, [d.content for d in usable], top_k, self.overlap_threshold)
                 if not a.is_no_answer]
        answers = [ExtractedAnswer(query=query, score=a.probability, data=a.text, document=usable[a.passage],
                                   document_offset=ExtractedAnswer.Span(a.start, a.end),
                                   meta={"logit_score": a.score, "passage": a.passage}) for a in found]
        if self.no_answer:
            p_none = found[0].no_answer_probability if found else 1.0
            answers.append(ExtractedAnswer(query=query, score=p_none, data=None))
        return {"answers": answers}
