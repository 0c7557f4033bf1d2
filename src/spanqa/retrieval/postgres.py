"""A collection index in PostgreSQL: documents, passages and a full-text index that several servers share.

    spanqa index manuals/ --output postgresql://user@host/db      # or --add / --delete, while servers run
    spanqa serve --model RUN --index postgresql://user@host/db      # any number of them, on any machine

Tables (created on first use): `spanqa_documents` (id, title, path, body), `spanqa_passages` (document id,
start and end character offsets, `tsv tsvector` of the passage text under the `english` configuration, with a
GIN index) and `spanqa_index_info` (the `IndexInfo`, as JSON). Passages are cut exactly as in a folder index, so
answers carry the same document offsets.

Search is PostgreSQL's full text search: the question's lexemes (`plainto_tsquery('english', q)`, stop words
dropped, Snowball-stemmed) OR-ed together, so a passage needs only some of them, ranked by `ts_rank` with
normalisation 1 (the rank divided by 1 + log of the passage's length): term frequency with a length penalty,
close to BM25 but without its inverse document frequency. Every query reads the tables as they are, so documents
added or deleted through one process are seen by every server at once. Dense vectors are not stored here: that
needs the pgvector extension, which this backend does not use; use a folder index for dense or hybrid search.
"""

from __future__ import annotations

import json
from dataclasses import asdict, replace
from urllib.parse import urlsplit, urlunsplit

from spanqa.artifacts import IndexInfo
from spanqa.errors import SpanqaError
from spanqa.retrieval.documents import Document, read_documents
from spanqa.retrieval.index import Changes, Passage, cut_passages

SCHEMES = ("postgresql://", "postgres://")
SCHEMA = """
CREATE TABLE IF NOT EXISTS spanqa_index_info (key text PRIMARY KEY, value jsonb NOT NULL);
CREATE TABLE IF NOT EXISTS spanqa_documents (id text PRIMARY KEY, title text NOT NULL, path text NOT NULL,
                                             body text NOT NULL);
CREATE TABLE IF NOT EXISTS spanqa_passages (
    id bigserial PRIMARY KEY,
    document_id text NOT NULL REFERENCES spanqa_documents(id) ON DELETE CASCADE,
    start_char integer NOT NULL, end_char integer NOT NULL, tsv tsvector NOT NULL);
CREATE INDEX IF NOT EXISTS spanqa_passages_tsv ON spanqa_passages USING GIN (tsv);
CREATE INDEX IF NOT EXISTS spanqa_passages_document ON spanqa_passages (document_id);
"""
SEARCH = """
WITH q AS (SELECT replace(plainto_tsquery('english', %(question)s)::text, '&', '|') AS text)
SELECT p.id, d.id, d.title, d.path, d.body, p.start_char, p.end_char, ts_rank(p.tsv, q.text::tsquery, 1) AS rank
FROM q, spanqa_passages p JOIN spanqa_documents d ON d.id = p.document_id
WHERE q.text <> '' AND p.tsv @@ q.text::tsquery
ORDER BY rank DESC, p.id LIMIT %(k)s
"""


def is_postgres(spec) -> bool:
    return str(spec).startswith(SCHEMES)


def _connect(url: str):
    try:
        import psycopg
    except ImportError:
        raise SpanqaError("a PostgreSQL index needs psycopg: pip install 'spanqa[postgres]'") from None
    try:
        return psycopg.connect(url, autocommit=True)  # transactions are explicit blocks
    except psycopg.OperationalError as exc:
        raise SpanqaError(f"{_safe(url)}: cannot connect to PostgreSQL ({str(exc).strip()}).") from None


def _safe(url: str) -> str:
    """The URL without its password, for messages."""
    parts = urlsplit(url)
    if not parts.password:
        return url
    return urlunsplit(parts._replace(netloc=parts.netloc.replace(f":{parts.password}@", ":***@")))


def read_info(url: str) -> IndexInfo:
    """The `IndexInfo` stored in the database at `url` (one short connection).

    Raises:
        SpanqaError: no connection, or no spanqa index in that database.
    """
    conn = _connect(url)
    try:
        with conn, conn.transaction(), conn.cursor() as cur:
            cur.execute("SELECT to_regclass('spanqa_index_info')")
            row = cur.fetchone()
            if row[0] is not None:
                cur.execute("SELECT value FROM spanqa_index_info WHERE key = 'info'")
                row = cur.fetchone()
    finally:
        conn.close()
    if not row or row[0] is None:
        raise SpanqaError(f"{_safe(url)}: no spanqa index in this database; make one with: spanqa index "
                          f"SOURCES --output {_safe(url)}")
    return IndexInfo.from_dict(row[0], f"{_safe(url)} spanqa_index_info")


class PostgresIndex:
    """The same searches and changes as `CollectionIndex`, kept in PostgreSQL tables (see the module doc)."""

    def __init__(self, url: str, info: IndexInfo) -> None:
        self.url, self.info, self.folder = url, info, _safe(url)
        self.conn = _connect(url)

    @classmethod
    def build(cls, sources: list[str], url: str, info: IndexInfo, progress=None) -> tuple[PostgresIndex, Changes]:
        """Create the tables (refusing a database that already holds an index) and index `sources`."""
        conn = _connect(url)
        with conn, conn.transaction(), conn.cursor() as cur:
            cur.execute(SCHEMA)
            cur.execute("SELECT 1 FROM spanqa_index_info WHERE key = 'info'")
            if cur.fetchone():
                raise SpanqaError(f"{_safe(url)}: already holds a spanqa index; add to it with --add.")
            info = replace(info, retrievers=["bm25"], default_retriever="bm25", encoder="")
            cur.execute("INSERT INTO spanqa_index_info VALUES ('info', %s)", (json.dumps(asdict(info)),))
        conn.close()
        index = cls.open(url)
        return index, index.add(sources, progress)

    @classmethod
    def open(cls, url: str) -> PostgresIndex:
        return cls(url, read_info(url))

    def add(self, sources: list[str], progress=None) -> Changes:
        """Add (or replace, by id) the documents of `sources`: read and cut first, then one transaction."""
        docs, skipped = read_documents(sources, progress)
        cuts = cut_passages(docs, self.info, progress)
        changes = Changes(documents=len(docs), skipped=skipped)
        with self.conn.transaction(), self.conn.cursor() as cur:
            cur.execute("DELETE FROM spanqa_documents WHERE id = ANY(%s)", ([d.id for d in docs],))
            changes.removed = cur.rowcount
            for doc, spans in zip(docs, cuts):
                cur.execute("INSERT INTO spanqa_documents VALUES (%s, %s, %s, %s)", (doc.id, doc.title, doc.path,
                                                                                    doc.text))
                cur.executemany(
                    "INSERT INTO spanqa_passages (document_id, start_char, end_char, tsv) "
                    "VALUES (%s, %s, %s, to_tsvector('english', %s))",
                    [(doc.id, int(s), int(e), doc.text[s:e]) for s, e in zip(spans.starts, spans.ends)])
                changes.passages += len(spans.starts)
            self._count(cur)
        return changes

    def delete(self, ids: list[str]) -> Changes:
        """Remove the documents with these ids (an unknown id: an error, and nothing is removed)."""
        with self.conn.transaction(), self.conn.cursor() as cur:
            cur.execute("SELECT id FROM spanqa_documents WHERE id = ANY(%s)", (ids,))
            unknown = sorted(set(ids) - {r[0] for r in cur.fetchall()})
            if unknown:
                raise SpanqaError(f"{self.folder}: no document with id {', '.join(map(repr, unknown[:5]))}; "
                                  "nothing was deleted.")
            cur.execute("DELETE FROM spanqa_documents WHERE id = ANY(%s)", (ids,))
            removed = cur.rowcount
            self._count(cur)
        return Changes(removed=removed)

    def _count(self, cur) -> None:
        cur.execute("SELECT (SELECT count(*) FROM spanqa_documents), (SELECT count(*) FROM spanqa_passages)")
        documents, passages = cur.fetchone()
        self.info = replace(self.info, documents=documents, passages=passages)
        cur.execute("UPDATE spanqa_index_info SET value = %s WHERE key = 'info'", (json.dumps(asdict(self.info)),))

    @property
    def documents(self) -> list[Document]:
        with self.conn.transaction(), self.conn.cursor() as cur:
            cur.execute("SELECT id, title, path, body FROM spanqa_documents ORDER BY id")
            return [Document(*row) for row in cur.fetchall()]

    def search(self, question: str, k: int = 20, retriever: str = "auto") -> list[tuple[Passage, float]]:
        return self.search_batch([question], k, retriever)[0]

    def search_batch(self, questions: list[str], k: int = 20, retriever: str = "auto"
                     ) -> list[list[tuple[Passage, float]]]:
        """The `k` passages whose text best matches each question (PostgreSQL full text search, ts_rank)."""
        if retriever not in ("auto", "bm25"):
            raise SpanqaError(f"{self.folder}: a PostgreSQL index searches by full text only (retriever auto or "
                              f"bm25); {retriever} needs passage vectors: use a folder index.")
        out = []
        with self.conn.transaction(), self.conn.cursor() as cur:
            for question in questions:
                cur.execute(SEARCH, {"question": question, "k": k})
                out.append([(Passage(int(pid), Document(did, title, path, body), int(s), int(e)), float(rank))
                            for pid, did, title, path, body, s, e, rank in cur.fetchall()])
        return out
