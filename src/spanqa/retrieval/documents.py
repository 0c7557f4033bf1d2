"""Documents from folders and files: plain text, Markdown, HTML, PDF, JSONL rows, and QA data's contexts.

A `Document` is the text answers are quoted from: every offset spanqa reports for a collection is a character
offset into `Document.text`. For `.txt` and `.md` files that is the file's own text, unchanged; for HTML the
text a browser would show (scripts and styles dropped, block elements on their own lines); for PDF the pages'
extracted text joined by blank lines. QA data (SQuAD JSON, MRQA jsonl, JSONL `squad` rows, `datasets` folders
and hub names) gives one document per distinct context.

Files that cannot be read (an encrypted or broken PDF, a binary file, text that is not UTF-8, a document with
no text) are skipped and reported as `Skipped(path, reason)`; reading never stops at one bad file.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from spanqa.errors import SpanqaError
from spanqa.files import GZIP_MAGIC

log = logging.getLogger(__name__)

TEXT_SUFFIXES = {".txt", ".md", ".markdown", ".rst"}
HTML_SUFFIXES = {".html", ".htm", ".xhtml"}
QA_SUFFIXES = {".json", ".jsonl"}  # read as QA data or as {"id", "title", "text"} rows, by content
SUFFIXES = TEXT_SUFFIXES | HTML_SUFFIXES | QA_SUFFIXES | {".pdf"}


@dataclass(frozen=True)
class Document:
    """One document of a collection.

    Attributes:
        id: unique within the collection (a file's path relative to the folder given, a JSONL row's `id`, or
            the QA source's name and the context's number).
        title: a title when the source has one (HTML <title>, a JSONL `title`, a SQuAD article), else "".
        path: the file it was read from ("" for hub data).
        text: the document text; answers' offsets index into it.
    """

    id: str
    title: str
    path: str
    text: str


@dataclass(frozen=True)
class Skipped:
    """A file that gave no document, and why."""

    path: str
    reason: str


class Unreadable(Exception):
    """Raised by a file reader for a file to skip; the message is the reason shown to the user."""


def read_sources(sources: list[str]) -> Iterator[Document | Skipped]:
    """Documents (and skipped files) from files, folders (searched recursively) and QA data sources."""
    for source in sources:
        path = Path(source)
        if path.is_dir() and not (path / "dataset_info.json").exists() and not (path / "state.json").exists():
            for file in sorted(p for p in path.rglob("*") if p.is_file() and not p.name.startswith(".")):
                yield from _read_file(file, file.relative_to(path).as_posix())
        elif path.is_file():
            yield from _read_file(path, path.name)
        elif path.exists():
            yield from _qa_documents(source)  # a `datasets` save_to_disk folder
        elif "/" in source or path.suffix:
            raise SpanqaError(f"{source}: no such file or folder.")
        else:
            yield from _qa_documents(source)  # a hub dataset name


def read_documents(sources: list[str], progress=None) -> tuple[list[Document], list[Skipped]]:
    """`read_sources` gathered: the documents (a later one with the same id replaces the earlier) and the
    files skipped; `progress("read", 1)` after each item."""
    docs: dict[str, Document] = {}
    skipped: list[Skipped] = []
    for item in read_sources(sources):
        if isinstance(item, Skipped):
            skipped.append(item)
        else:
            docs[item.id] = item
        if progress is not None:
            progress("read", 1)
    return list(docs.values()), skipped


def _read_file(path: Path, doc_id: str) -> Iterator[Document | Skipped]:
    suffixes = [s.lower() for s in path.suffixes[-2:]]
    suffix = suffixes[-2] if suffixes[-1:] == [".gz"] and len(suffixes) == 2 else (suffixes[-1] if suffixes else "")
    if suffix not in SUFFIXES:
        yield Skipped(str(path), f"not a kind of file spanqa reads (expected {', '.join(sorted(SUFFIXES))})")
        return
    try:
        if suffix == ".pdf":
            docs = [_pdf(path, doc_id)]
        elif suffix in HTML_SUFFIXES:
            docs = [_html(path, doc_id)]
        elif suffix in TEXT_SUFFIXES:
            docs = [Document(doc_id, "", str(path), _text(path))]
        else:
            docs = list(_rows_or_qa(path, doc_id))
    except Unreadable as exc:
        yield Skipped(str(path), str(exc))
        return
    for doc in docs:
        yield doc if doc.text.strip() else Skipped(str(path), "no text in the document")


def _bytes(path: Path) -> bytes:
    raw = path.read_bytes()
    if raw.startswith(GZIP_MAGIC):
        try:
            raw = gzip.decompress(raw)
        except (EOFError, OSError) as exc:
            raise Unreadable(f"truncated or corrupt gzip data ({exc})") from None
    return raw


def _text(path: Path) -> str:
    raw = _bytes(path)
    if b"\x00" in raw[:8192]:
        raise Unreadable("a binary file (NUL bytes), not text")
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise Unreadable(f"not UTF-8 text (byte {exc.start})") from None


def _html(path: Path, doc_id: str) -> Document:
    from bs4 import BeautifulSoup

    soup = BeautifulSoup(_text(path), "html.parser")
    title = soup.title.get_text(" ", strip=True) if soup.title else ""
    for tag in soup(["script", "style", "noscript", "template", "head"]):
        tag.decompose()
    # block elements end their lines, so paragraphs stay paragraphs for the passage splitter
    lines = (line.strip() for line in soup.get_text("\n").splitlines())
    text = "\n\n".join(line for line in lines if line)
    return Document(doc_id, title, str(path), text)


def _pdf(path: Path, doc_id: str) -> Document:
    from pypdf import PdfReader
    from pypdf.errors import PdfReadError

    try:
        pdf = PdfReader(str(path))
        if pdf.is_encrypted:
            raise Unreadable("an encrypted PDF")
        title = str((pdf.metadata or {}).get("/Title") or "")
        pages = [(page.extract_text() or "").strip() for page in pdf.pages]
    except (PdfReadError, ValueError, KeyError, TypeError, OSError) as exc:
        raise Unreadable(f"a PDF pypdf cannot read ({type(exc).__name__}: {exc})") from None
    return Document(doc_id, title, str(path), "\n\n".join(p for p in pages if p))


def _rows_or_qa(path: Path, doc_id: str) -> Iterator[Document]:
    """`{"id", "title", "text"}` JSONL rows, else QA data (SQuAD JSON, MRQA jsonl, squad-shaped rows)."""
    text = _text(path)
    first = next((line for line in text.splitlines() if line.strip()), "")
    try:
        row = json.loads(first)
    except json.JSONDecodeError:
        row = None
    if isinstance(row, dict) and "text" in row and "context" not in row and "header" not in row:
        for lineno, line in enumerate(text.splitlines(), start=1):
            if line.strip():
                yield _row(line, path, lineno)
        return
    try:
        yield from _qa_documents(str(path), doc_id)
    except SpanqaError as exc:
        raise Unreadable(str(exc).removeprefix(f"{path}: ")) from None


def _row(line: str, path: Path, lineno: int) -> Document:
    try:
        row = json.loads(line)
    except json.JSONDecodeError as exc:
        raise Unreadable(f"line {lineno}: not valid JSON ({exc.msg})") from None
    if not isinstance(row, dict) or not isinstance(row.get("text"), str):
        raise Unreadable(f'line {lineno}: expected an object with a string "text" (and "id", "title")')
    doc_id = str(row.get("id") or f"{path.name}:{lineno}")
    return Document(doc_id, str(row.get("title") or ""), str(path), row["text"])


def _qa_documents(source: str, name: str = "") -> Iterator[Document]:
    """One document per distinct context of a QA source, in first-seen order, ids `NAME#N`."""
    from spanqa.data import load_examples

    dataset = load_examples(source)
    name = name or (Path(source).name if Path(source).exists() else source)
    path = source if Path(source).exists() else ""
    seen = set()
    for ex in dataset.examples:
        key = hashlib.sha1(ex.context.encode()).hexdigest()
        if key in seen:
            continue
        seen.add(key)
        yield Document(f"{name}#{len(seen) - 1}", ex.title, path, ex.context)

