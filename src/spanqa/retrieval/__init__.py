"""Document collections: files and folders -> documents -> passages -> BM25 / dense / hybrid search."""

from __future__ import annotations

from pathlib import Path


def open_index(spec: str | Path):
    """The index a user names: a `postgresql://` URL (`retrieval.postgres`) or a folder written by `spanqa index`."""
    from spanqa.retrieval.index import CollectionIndex
    from spanqa.retrieval.postgres import PostgresIndex, is_postgres

    return PostgresIndex.open(str(spec)) if is_postgres(spec) else CollectionIndex.open(spec)
