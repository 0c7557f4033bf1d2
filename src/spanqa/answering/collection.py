"""Answers from a document collection: retrieve passages from an index, read them, quote the documents.

    index = CollectionIndex.open("runs/manuals-index")
    reader.ask(index, "How do I reset the router?", top_k=3)
    -> [CollectionAnswer(text="hold the reset button for ten seconds", document_id="router.md", start=1043, ...)]

The reader ranks the spans of all retrieved passages together, with the retriever's order as a prior
(`answering.passages`, `RANK_WEIGHT` below), and each answer's
offsets are moved from its passage to its document: a passage is `document.text[p_start:p_end]`, so an answer
at [s, e) in the passage is `document.text[p_start + s:p_start + e]`. An empty list means "no answer in the
collection": nothing was retrieved, or a SQuAD v2 reader abstained, or the best answer's probability is below
`min_probability`, which by default is the threshold the reader's calibration chose on data
(`answering.calibration`; 0 for a reader never calibrated).
"""

from __future__ import annotations

from dataclasses import dataclass

# Passages read per question unless told otherwise, and how much the retriever's order weighs in the ranking
# (`answering.passages`: a span of the passage at rank r loses RANK_WEIGHT * ln(r)). Measured with the quickstart
# reader (OpenVINO int8) over SQuAD v1.1 train + dev's 20,958 paragraphs, hybrid retrieval, 200 dev questions
# not in the benchmark's cut: reading 1 / 2 / 3 / 5 / 10 passages gave EM 35.0 / 34.0 / 27.0 / 24.0 / 16.0 by
# the reader's scores alone (every extra passage is one more place to find a plausible wrong span), and
# 35.0 / 37.0 / 37.0 / 37.0 / 37.0 with weight 3. Weights 2..6 are within 0.5 EM of each other at 3 passages
# with hybrid retrieval; 3 is the best of them with BM25 (EM 39.0; 29.5 with weight 0). 3 passages keep
# alternatives from several documents at the accuracy of the best depth.
RETRIEVE = 3
RANK_WEIGHT = 3.0


@dataclass(frozen=True)
class CollectionAnswer:
    """One answer, quoted from a document of the collection.

    Attributes:
        text: the answer, exactly `document text[start:end]`.
        probability: the reader's probability, over the candidates of all passages read (calibrated: the
            chance the answer is right, when the reader has a calibration).
        score: start + end logit.
        document_id, title, path: which document it quotes.
        start, end: char offsets in the document's text.
        passage: the passage it was read in, and passage_start: where that passage starts in the document.
        retrieval_rank: the passage's rank in the retrieval (1 = first).
    """

    text: str
    probability: float
    score: float
    document_id: str
    title: str
    path: str
    start: int
    end: int
    passage: str
    passage_start: int
    retrieval_rank: int


def ask(reader, index, question: str, top_k: int = 3, retrieve: int = RETRIEVE, retriever: str = "auto",
        min_probability: float | None = None) -> list[CollectionAnswer]:
    """The best `top_k` answers to `question` in `index`'s documents (see the module doc)."""
    return ask_batch(reader, index, [question], top_k, retrieve, retriever, min_probability)[0]


def ask_batch(reader, index, questions: list[str], top_k: int = 3, retrieve: int = RETRIEVE,
              retriever: str = "auto", min_probability: float | None = None) -> list[list[CollectionAnswer]]:
    """`ask` for many questions: one retrieval call, one reader call over all their passages."""
    hits = index.search_batch(questions, retrieve, retriever)
    return read_hits(reader, questions, hits, top_k, min_probability)


def read_hits(reader, questions: list[str], hits: list[list], top_k: int = 3,
              min_probability: float | None = None) -> list[list[CollectionAnswer]]:
    """Read each question's retrieved passages (`index.search_batch` output) and quote the answers.

    `min_probability` None: the reader's calibrated abstention threshold when it has one, else 0 (answer always).
    """
    min_probability = abstain_below(reader) if min_probability is None else min_probability
    asked = [(q, [p.text for p, _ in h]) for q, h in zip(questions, hits) if h]
    read = iter(reader.answer_batch(asked, top_k=top_k, rank_weight=RANK_WEIGHT) if asked else [])
    return [quoted(next(read), h, min_probability) if h else [] for h in hits]


def quoted(answers, hits, min_probability: float) -> list[CollectionAnswer]:
    """The reader's answers over `hits`' passages that are worth giving, quoted from their documents."""
    return [quote(a, hits) for a in answers if not a.is_no_answer and a.probability >= min_probability]


def abstain_below(reader) -> float:
    """The probability under which a collection answer is withheld: the calibrated reader's, else 0."""
    calibration = getattr(reader.info, "calibration", None)
    return calibration.abstain_below if calibration is not None else 0.0


def quote(answer, hits) -> CollectionAnswer:
    """`answer` (a `ReaderAnswer` over the passages of `hits`) quoted from its document."""
    passage, _ = hits[answer.passage]
    doc = passage.document
    return CollectionAnswer(
        text=answer.text, probability=answer.probability, score=answer.score, document_id=doc.id,
        title=doc.title, path=doc.path, start=passage.start + answer.start, end=passage.start + answer.end,
        passage=passage.text, passage_start=passage.start, retrieval_rank=answer.passage + 1)
