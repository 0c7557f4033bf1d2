"""Document collections: files and folders -> documents -> passages -> BM25 / dense / hybrid search."""
