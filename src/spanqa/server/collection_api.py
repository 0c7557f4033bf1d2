"""`spanqa serve --index`: POST /v1/ask answers from the collection, GET /v1/index describes it.

The index is searched in a worker thread (BM25 and the question's vector are CPU work), then the retrieved
passages go through the same micro-batcher as every other question, so collection questions share forward
passes fairly with single-passage ones. When `spanqa index --add/--delete` rewrites the folder, the next
request sees it: the folder's `spanqa_index.json` is checked (one stat) on each request and the index reopened
when it changed.
"""

from __future__ import annotations

import asyncio
import threading
import time
from dataclasses import asdict
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field, field_validator

from spanqa.answering.collection import RETRIEVE, abstain_below, quoted
from spanqa.artifacts import INDEX_FILE
from spanqa.retrieval.index import CollectionIndex
from spanqa.retrieval.postgres import PostgresIndex, is_postgres, read_info


class AskRequest(BaseModel):
    question: str = Field(min_length=1, description="the question, asked of the whole collection")
    top_k: int = Field(3, ge=1, strict=True, description="answers to return, best first (a JSON integer)")
    retrieve: int = Field(RETRIEVE, ge=1, strict=True, description="passages the reader reads")
    retriever: Literal["auto", "bm25", "dense", "hybrid"] = Field("auto", description="how passages are found")

    @field_validator("question")
    @classmethod
    def not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("must not be blank")
        return value


class ServedIndex:
    """The open index, reopened when its folder is rewritten (by `spanqa index --add/--delete`); a PostgreSQL
    index reads its tables on every query, so it is always current."""

    def __init__(self, spec: str | Path) -> None:
        self.lock, self.postgres = threading.Lock(), is_postgres(spec)
        self.folder = Path(str(spec)) if not self.postgres else None
        self.index = PostgresIndex.open(str(spec)) if self.postgres else CollectionIndex.open(spec)
        self.stamp = self._stamp()
        self.name = self.index.folder if self.postgres else self.folder.name

    def _stamp(self) -> int:
        return 0 if self.postgres else (self.folder / INDEX_FILE).stat().st_mtime_ns

    def search(self, questions: list[str], k: int, retriever: str) -> list:
        if self.postgres:
            with self.lock:  # one connection, one query at a time; the tables are read as they are now
                return self.index.search_batch(questions, k, retriever)
        return self.current().search_batch(questions, k, retriever)

    def info(self):
        """The index's info as it is now (a PostgreSQL index's counts change under other processes)."""
        if self.postgres:
            with self.lock:
                return read_info(self.index.url)
        return self.current().info

    def current(self) -> CollectionIndex:
        with self.lock:
            stamp = self._stamp()
            if stamp != self.stamp:
                encoder = self.index._encoder  # the same encoder: no reload
                self.index, self.stamp = CollectionIndex.open(self.folder), stamp
                self.index._encoder = encoder
            return self.index


def add_collection_routes(app, served: ServedIndex, config, shown: str, submit, check, limit_error) -> None:
    """Add /v1/ask and /v1/index to `app`; `submit`, `check` and `limit_error` are the app's own."""
    threshold = abstain_below(app.state.reader)

    @app.post("/v1/ask")
    async def ask(req: AskRequest) -> dict:
        if req.retrieve > config.max_passages:
            raise limit_error("max_passages", req.retrieve, config.max_passages)
        check([], req.top_k, config)
        if len(req.question) > config.max_question_chars:
            raise limit_error("max_question_chars", len(req.question), config.max_question_chars)
        t0 = time.perf_counter()
        (hits,) = await asyncio.to_thread(served.search, [req.question], req.retrieve, req.retriever)
        answers = []
        if hits:
            (read,) = await submit([(req.question, [p.text for p, _ in hits])], req.top_k)
            answers = quoted(read, hits, threshold)
        return {"answers": [asdict(a) for a in answers], "no_answer": not answers, "retrieved": len(hits),
                "model": shown, "time_ms": round((time.perf_counter() - t0) * 1000, 2)}

    @app.get("/v1/index")
    async def index_info() -> dict:
        info = await asyncio.to_thread(served.info)
        return {"index": served.name if not config.show_model_path or served.postgres else str(served.folder),
                **asdict(info)}
