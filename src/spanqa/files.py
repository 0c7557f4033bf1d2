"""Reading text and JSON from plain or gzip files, with errors that name the file and line."""

from __future__ import annotations

import errno
import gzip
import hashlib
import io
import json
import os
import struct
import tempfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from spanqa.errors import SpanqaError, first_line

GZIP_MAGIC = b"\x1f\x8b"


def read_text(path: str | Path) -> str:
    """Return the whole text of `path`, gunzipping it when it starts with the gzip magic bytes.

    Raises:
        SpanqaError: missing file, a directory, an empty file, a truncated or corrupt gzip, or bytes
            that are not UTF-8.
    """
    path = Path(path)
    if not path.exists():
        raise SpanqaError(f"{path}: no such file.")
    if path.is_dir():
        raise SpanqaError(f"{path}: is a folder, expected a file.")
    raw = path.read_bytes()
    if raw.startswith(GZIP_MAGIC):
        try:
            raw = gzip.decompress(raw)
        except (EOFError, OSError, zlib.error) as exc:
            raise SpanqaError(f"{path}: the gzip data is truncated or corrupt ({exc}).") from None
    if not raw.strip():
        raise SpanqaError(f"{path}: the file is empty.")
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise SpanqaError(f"{path}: not UTF-8 text (byte {exc.start}).") from None


def open_text(path: str | Path):
    """`path` opened for reading text line by line (gunzipped when it starts with the gzip magic bytes).

    Raises:
        SpanqaError: missing file or a folder.
    """
    path = Path(path)
    if not path.is_file():
        raise SpanqaError(f"{path}: {'is a folder, expected a file' if path.is_dir() else 'no such file'}.")
    return io.TextIOWrapper(open_bytes(path), encoding="utf-8-sig")


def open_bytes(path: str | Path):
    """`path` opened for reading bytes, gunzipped when it starts with the gzip magic bytes."""
    with open(path, "rb") as fh:
        gz = fh.read(2) == GZIP_MAGIC
    return gzip.open(path, "rb") if gz else open(path, "rb")


def parse_json(text: str, path: str | Path, what: str = "JSON") -> Any:
    """Parse `text` as one JSON document; the error names the file, line and column."""
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise SpanqaError(
            f"{path}: line {exc.lineno}, column {exc.colno}: not valid JSON ({exc.msg}); expected {what}."
        ) from None


def read_json(path: str | Path, what: str = "JSON") -> Any:
    """`read_text` then `parse_json`."""
    return parse_json(read_text(path), path, what)


def iter_jsonl(text: str | Iterator[str], path: str | Path) -> Iterator[tuple[int, dict]]:
    """Yield (line number, object) for each non-blank line of `text` (or of lines, read as they come); the
    error names the line."""
    for lineno, line in enumerate(text.splitlines() if isinstance(text, str) else text, start=1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            raise SpanqaError(f"{path}: line {lineno}: not valid JSON ({exc.msg}).") from None
        if not isinstance(obj, dict):
            raise SpanqaError(f"{path}: line {lineno}: expected a JSON object, got {type(obj).__name__}.")
        yield lineno, obj


def write_json_atomic(path: str | Path, obj: Any, indent: int | None = 2) -> None:
    """Write `obj` as JSON so that a reader sees the old file or the whole new one, never half."""
    write_text_atomic(path, json.dumps(obj, indent=indent, ensure_ascii=False) + "\n")


def file_mode() -> int:
    """The mode a plain `open(path, "w")` would give a new file under this process's umask (0644 under 022).

    The umask is read from /proc/self/status where Linux shows it: setting and restoring it (the only other way)
    would, for that moment, give files other threads create mode 0666.
    """
    try:
        status = Path("/proc/self/status").read_text()
        umask = int(next(line.split()[1] for line in status.splitlines() if line.startswith("Umask:")), 8)
    except (OSError, StopIteration, IndexError, ValueError):
        umask = os.umask(0)
        os.umask(umask)
    return 0o666 & ~umask


def write_text_atomic(path: str | Path, text: str) -> None:
    """Write `text` to a temporary file beside `path`, fsync it, then rename it over `path`; a write that fails
    (a full disk) removes the temporary file, leaves `path` as it was and raises `write_failed`'s error.

    The file gets the umask's mode, as `open` would give it (mkstemp's own 0600 would hide results from the
    colleagues a shared cluster folder is for)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        os.fchmod(fd, file_mode())
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        Path(tmp).unlink(missing_ok=True)
        raise write_failed(exc, path, len(text.encode())) from None
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def get_field(obj: Any, key: str, kind: type | tuple, source: str, where: str, default: Any = ...) -> Any:
    """Return `obj[key]`, checked to be of `kind`; the error names `source`, `where` and `key`."""
    if not isinstance(obj, dict):
        raise SpanqaError(f"{source}: {where}: expected a JSON object, got {type(obj).__name__}.")
    if key not in obj:
        if default is ...:
            raise SpanqaError(f"{source}: {where}: missing field '{key}'.")
        return default
    value = obj[key]
    if not isinstance(value, kind) or isinstance(value, bool):
        name = kind.__name__ if isinstance(kind, type) else " or ".join(k.__name__ for k in kind)
        raise SpanqaError(f"{source}: {where}.{key}: expected {name}, got {type(value).__name__}.")
    return value


@dataclass(frozen=True)
class FileDigest:
    """One file of a folder that is checked before it is trusted (a bundle, a checkpoint): its path relative to
    the folder, size in bytes and sha256."""

    path: str
    size: int
    sha256: str


def sha256_file(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def describe_files(folder: Path, paths: list[Path] | None = None) -> list[FileDigest]:
    """Every file under `folder` (or `paths`, under it), sorted, with its size and sha256."""
    files = sorted(paths if paths is not None else (p for p in folder.rglob("*") if p.is_file()))
    return [FileDigest(str(p.relative_to(folder)), p.stat().st_size, sha256_file(p)) for p in files]


def file_problems(folder: Path, files: list[FileDigest]) -> list[str]:
    """What is wrong with `folder` against `files` (missing, another size, another sha256); [] when all match.
    Sizes are compared first, so a file cut short is named without reading it."""
    problems = []
    for f in files:
        path = folder / f.path
        if not path.is_file():
            problems.append(f"{f.path} is missing")
        elif (size := path.stat().st_size) != f.size:
            problems.append(f"{f.path} has {size:,} bytes, the manifest says {f.size:,} (cut short or replaced)")
        elif sha256_file(path) != f.sha256:
            problems.append(f"{f.path} does not match its sha256 (corrupt or replaced)")
    return problems


def folder_bytes(folder: Path) -> int:
    """The size of every file under `folder` (0 when it is missing)."""
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file()) if folder.is_dir() else 0


DISK_FULL = (errno.ENOSPC, errno.EDQUOT)


def write_failed(exc: BaseException, what: str | Path, needs: int = 0) -> SpanqaError:
    """The error for a write that failed (a full disk, a quota, a read-only folder), naming what could not be
    written and, when known, how much space it needs; callers have removed what they had half written.
    Libraries that write in native code report a full disk in their own words (torch: "iostream error",
    safetensors: "IoError(StorageFull)"): a write whose folder has less room left than `needs` is read as one."""
    errno_ = getattr(exc, "errno", None)
    reason = {errno.ENOSPC: "the disk is full", errno.EDQUOT: "the disk quota is used up",
              errno.EROFS: "the file system is read-only", errno.EACCES: "permission denied"}.get(errno_, "")
    free = _free_bytes(Path(what)) if not reason and needs else 0
    if not reason and needs and free < needs:
        reason = f"the disk is full ({size_text(free)} free)"
    reason = reason or getattr(exc, "strerror", None) or first_line(exc)
    need = f"; it needs about {size_text(needs)}" if needs else ""
    return SpanqaError(f"could not write {what}: {reason}{need}. Nothing half-written was left; what was there before "
                       "is unchanged. Free some space (or choose another folder) and run the command again.")


def out_of_space(exc: BaseException, folder: Path, needs: int) -> bool:
    """Whether a failed write is a full disk: the error says so, or `folder` has less room left than `needs`."""
    return getattr(exc, "errno", None) in DISK_FULL or _free_bytes(folder) < needs


def _free_bytes(path: Path) -> int:
    """Room left on the file system that holds `path` (or its nearest existing parent)."""
    import shutil

    while not path.exists() and path != path.parent:
        path = path.parent
    try:
        return shutil.disk_usage(path).free
    except OSError:
        return 1 << 62


def size_text(n: int) -> str:
    """Bytes as people read them: 512 bytes, 3.2 MB, 1.4 GB."""
    for unit in ("bytes", "KB", "MB", "GB", "TB"):
        if n < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n} bytes"


def check_safetensors(path: Path) -> None:
    """Refuse a safetensors file that is cut short or is not one, before a library reads it: its header names
    where every tensor ends, so the file's size must reach the furthest end.

    Raises:
        SpanqaError: naming the file, its size and what it should have.
    """
    try:
        with open(path, "rb") as fh:
            size = os.fstat(fh.fileno()).st_size
            head = fh.read(8)
            n = struct.unpack("<Q", head)[0] if len(head) == 8 else -1
            header = json.loads(fh.read(n)) if 0 < n <= size - 8 else None
    except (OSError, ValueError) as exc:
        raise SpanqaError(f"{path}: not a readable safetensors file ({exc}).") from None
    if not isinstance(header, dict):
        raise SpanqaError(f"{path}: not a safetensors file, or cut short inside its header ({size:,} bytes).")
    ends = [v["data_offsets"][1] for k, v in header.items() if k != "__metadata__" and isinstance(v, dict)
            and isinstance(v.get("data_offsets"), list) and len(v["data_offsets"]) == 2]
    needed = 8 + n + max(ends, default=0)
    if size < needed:
        raise SpanqaError(f"{path}: cut short: {size:,} bytes of the {needed:,} its header describes (an interrupted "
                          "copy or download, or a disk that filled); copy or fetch it again.")
