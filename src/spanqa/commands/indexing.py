"""`spanqa index` (make, add to, delete from a collection index) and `spanqa ask --index` (ask the collection)."""

from __future__ import annotations

import sys
from dataclasses import dataclass

from tqdm import tqdm

from spanqa.artifacts import IndexInfo, ReaderInfo
from spanqa.display import highlight
from spanqa.errors import SpanqaError
from spanqa.retrieval.index import Changes, CollectionIndex

STAGES = {"read": ("reading files", " items"), "cut": ("cutting passages", " docs"),
          "encode": ("encoding passages", " passages")}
SHOW_SKIPPED = 20


@dataclass(frozen=True)
class IndexSettings:
    """How `spanqa index` cuts and searches a new collection (an existing index keeps its own)."""

    retriever: str = "hybrid"
    reader: str = ""
    passage_tokens: int = 0
    overlap_tokens: int = 64
    encoder: str = "minilm-l6"
    vector_dtype: str = "float16"
    ann: str = "auto"

    def info(self) -> IndexInfo:
        """The new index's `IndexInfo`: passages sized to the reader's window less its question."""
        tokenizer, budget = "minilm-l6", 317
        if self.reader:
            from spanqa.models.hub import resolve_model_path

            data = (ReaderInfo.load(resolve_model_path(self.reader)) or ReaderInfo()).data
            tokenizer, budget = self.reader, data.max_seq_length - data.max_query_length - 3
        if self.passage_tokens < 0 or self.overlap_tokens < 0:
            raise SpanqaError("--passage-tokens and --overlap-tokens: expected 0 or more.")
        dense = self.retriever in ("dense", "hybrid")
        return IndexInfo(retrievers=["bm25"] + (["dense"] if dense else []), default_retriever=self.retriever,
                         tokenizer=tokenizer, passage_tokens=self.passage_tokens or budget,
                         overlap_tokens=self.overlap_tokens, encoder=self.encoder if dense else "",
                         vector_dtype=self.vector_dtype, ann=self.ann)


class Progress:
    """One tqdm bar per stage (counts and rates), on stderr."""

    def __init__(self) -> None:
        self.bars: dict[str, tqdm] = {}

    def __call__(self, stage: str, n: int) -> None:
        if stage not in self.bars:
            for bar in self.bars.values():
                bar.close()
            desc, unit = STAGES[stage]
            self.bars[stage] = tqdm(desc=desc, unit=unit, file=sys.stderr, mininterval=0.5)
        self.bars[stage].update(n)

    def close(self) -> None:
        for bar in self.bars.values():
            bar.close()


def run_index(sources: list[str], output: str, add: bool, delete: list[str], settings: IndexSettings) -> int:
    from spanqa.retrieval.postgres import PostgresIndex, is_postgres

    progress, kind = Progress(), PostgresIndex if is_postgres(output) else CollectionIndex
    if kind is PostgresIndex and settings.retriever != "bm25" and not (add or delete):
        print("spanqa: a PostgreSQL index searches by full text only (no vectors without pgvector); building "
              "that", file=sys.stderr)
    try:
        if delete:
            index = kind.open(output)
            changes = index.delete(delete)
        elif add:
            index = kind.open(output)
            changes = index.add(sources, progress)
        else:
            index, changes = kind.build(sources, output, settings.info(), progress)
    finally:
        progress.close()
    print(summary(index, changes), file=sys.stderr)
    return 0


def summary(index: CollectionIndex, changes: Changes) -> str:
    """What changed, what the index holds now, and every file skipped with its reason."""
    done = [f"{changes.documents:,} documents ({changes.passages:,} passages) added"] if changes.documents else []
    if changes.removed:
        done.append(f"{changes.removed:,} removed or replaced")
    info = index.info
    lines = [f"spanqa: {', '.join(done) or 'nothing added'} in {changes.seconds:.1f} s; {index.folder} holds "
             f"{info.documents:,} documents in {info.passages:,} passages ({', '.join(info.retrievers)}; "
             f"default retriever {info.default_retriever})"]
    if changes.skipped:
        lines.append(f"spanqa: skipped {len(changes.skipped)} file(s):")
        lines += [f"  {s.path}: {s.reason}" for s in changes.skipped[:SHOW_SKIPPED]]
        if len(changes.skipped) > SHOW_SKIPPED:
            lines.append(f"  ... and {len(changes.skipped) - SHOW_SKIPPED} more")
    return "\n".join(lines)


def ask_collection(reader, index_path: str, question: str, top_k: int, retrieve: int, retriever: str,
                   color: bool) -> int:
    from spanqa.answering.collection import ask
    from spanqa.retrieval import open_index

    index = open_index(index_path)
    answers = ask(reader, index, question, top_k=top_k, retrieve=retrieve, retriever=retriever)
    if not answers:
        print("no answer in the collection")
        return 0
    for rank, a in enumerate(answers, start=1):
        where = f"{a.document_id}" + (f" ({a.title})" if a.title else "")
        print(f"{rank:>2}. {a.text!r}  p {a.probability:.3f}  {where} chars {a.start}-{a.end}")
    best = answers[0]
    print()
    print(highlight(best.passage, best.start - best.passage_start, best.end - best.passage_start, color=color))
    return 0
