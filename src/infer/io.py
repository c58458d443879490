"""Streaming readers for article dumps: JSONL, CSV, Parquet (each optionally gzipped), .txt and .html files, and
folders of them.

Readers never raise on a bad record: they yield a :class:`Record` whose ``error`` says what is wrong and where
(file and line or row), so one broken line cannot stop a dump of a million articles.  Memory stays bounded:
files are read line by line or in Parquet batches.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

_KINDS = {".jsonl": "jsonl", ".ndjson": "jsonl", ".csv": "csv", ".parquet": "parquet", ".txt": "txt", ".html": "html", ".htm": "html"}
MAX_CHARS = 200_000


@dataclass(frozen=True)
class Record:
    source: str
    line: int | None
    id: str | None = None
    title: str | None = None
    text: str | None = None
    error: str | None = None


def error_row(record: Record) -> dict:
    """The line a bad record gets in ``OUTPUT.errors.jsonl`` (both engines)."""
    return {"source": record.source, "line": record.line, "id": record.id, "reason": record.error}


def _kind(path: Path) -> str:
    name = path.name.lower().removesuffix(".gz")
    return next((kind for suffix, kind in _KINDS.items() if name.endswith(suffix)), "")


def expand(paths: list[str]) -> list[Path]:
    """Files named directly, plus every article file under a named folder, in a stable sorted order."""
    out: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            out.extend(p for p in sorted(path.rglob("*")) if p.is_file() and _kind(p))
        else:
            out.append(path)
    return out


def _open_binary(path: Path):
    return gzip.open(path, "rb") if path.name.lower().endswith(".gz") else open(path, "rb")


def _check(source: str, line: int | None, raw_id, title, text, max_chars: int) -> Record:
    if raw_id is None or (isinstance(raw_id, str) and not raw_id.strip()):
        return Record(source, line, error="missing id")
    rid = str(raw_id)
    if text is None:
        return Record(source, line, rid, error="missing text")
    if not isinstance(text, str):
        return Record(source, line, rid, error=f"text is {type(text).__name__}, not a string")
    if not text.strip():
        return Record(source, line, rid, error="empty text")
    if len(text) > max_chars:
        return Record(source, line, rid, error=f"text has {len(text):,} characters, over the limit of {max_chars:,}")
    return Record(source, line, rid, title if isinstance(title, str) else None, text)


def _first_id(row: dict):
    """``id``, else ``article_id``: the same rule for every format (ids are compared as strings)."""
    rid = row.get("id")
    return row.get("article_id") if rid is None or rid == "" else rid


def _jsonl(path: Path, max_chars: int) -> Iterator[Record]:
    source, number = str(path), 0
    try:
        with _open_binary(path) as fh:
            for number, raw in enumerate(fh, 1):
                if not raw.strip():
                    continue
                try:
                    row = json.loads(raw.decode("utf-8"))
                except UnicodeDecodeError as err:
                    yield Record(source, number, error=f"not UTF-8 ({err.reason} at byte {err.start})")
                    continue
                except json.JSONDecodeError as err:
                    yield Record(source, number, error=f"invalid JSON ({err.msg}, column {err.colno})")
                    continue
                if not isinstance(row, dict):
                    yield Record(source, number, error="not a JSON object")
                    continue
                yield _check(source, number, _first_id(row), row.get("title"), row.get("text"), max_chars)
    except (EOFError, OSError, zlib.error) as err:
        yield Record(source, number + 1 if number else None, error=f"unreadable after line {number}: {err}")


def _csv(path: Path, max_chars: int) -> Iterator[Record]:
    source = str(path)
    try:
        with _open_binary(path) as fh:
            reader = csv.DictReader(io.TextIOWrapper(fh, encoding="utf-8", newline=""))
            if reader.fieldnames is None or "text" not in reader.fieldnames:
                yield Record(source, 1, error="CSV header has no `text` column")
                return
            while True:
                try:
                    row = next(reader)
                except StopIteration:
                    return
                except UnicodeDecodeError as err:
                    yield Record(source, reader.line_num + 1, error=f"not UTF-8 ({err.reason}); rest of file skipped")
                    return
                yield _check(source, reader.line_num, _first_id(row), row.get("title"), row.get("text"), max_chars)
    except (EOFError, OSError, zlib.error, csv.Error) as err:
        yield Record(source, None, error=f"unreadable: {err}")


def _parquet(path: Path, max_chars: int) -> Iterator[Record]:
    import pyarrow.parquet as pq

    source = str(path)
    try:
        pf = pq.ParquetFile(path)
        names = set(pf.schema_arrow.names)
        if "text" not in names:
            yield Record(source, None, error="Parquet file has no `text` column")
            return
        columns = [c for c in ("id", "article_id", "title", "text") if c in names]
        row = 0
        for batch in pf.iter_batches(batch_size=1024, columns=columns):
            data = batch.to_pydict()
            for i in range(batch.num_rows):
                row += 1
                rid = _first_id({k: data[k][i] for k in ("id", "article_id") if k in data})
                yield _check(source, row, rid, data.get("title", [None] * batch.num_rows)[i], data["text"][i], max_chars)
    except (OSError, ValueError) as err:  # pyarrow raises ArrowInvalid (a ValueError) on corrupt files
        yield Record(source, None, error=f"unreadable Parquet: {err}")


def html_to_text(markup: str) -> tuple[str | None, str]:
    """Visible text of an HTML page, one block element a line; the <title> (or first <h1>) as title."""
    from bs4 import BeautifulSoup

    soup = BeautifulSoup(markup, "lxml")
    for tag in soup(["script", "style", "noscript", "nav", "footer", "header", "aside", "form"]):
        tag.decompose()
    heading = soup.title or soup.find("h1")
    title = heading.get_text(" ", strip=True) if heading else None
    if soup.title:
        soup.title.decompose()
    body = soup.body or soup
    return title, "\n".join(s for s in (t.strip() for t in body.get_text("\n").splitlines()) if s)


def _document(path: Path, max_chars: int, root: Path | None) -> Iterator[Record]:
    source = str(path)
    rid = str(path.relative_to(root)) if root else path.name
    try:
        with _open_binary(path) as fh:
            text = fh.read(max_chars * 4 + 1).decode("utf-8")
    except UnicodeDecodeError as err:
        yield Record(source, None, rid, error=f"not UTF-8 ({err.reason} at byte {err.start})")
        return
    except (EOFError, OSError, zlib.error) as err:
        yield Record(source, None, rid, error=f"unreadable: {err}")
        return
    title = None
    if _kind(path) == "html":
        title, text = html_to_text(text)
    yield _check(source, None, rid, title, text, max_chars)


_READERS = {"jsonl": _jsonl, "csv": _csv, "parquet": _parquet}


def read_records(paths: list[str], max_chars: int = MAX_CHARS) -> Iterator[Record]:
    """Every record of every input in order; bad ones carry an ``error``; duplicate ids after the first are errors."""
    seen: dict[str, str] = {}
    for raw in paths:
        root = Path(raw) if Path(raw).is_dir() else None
        files = expand([raw])
        if not files and root is not None:
            yield Record(raw, None, error="folder holds no article files")
        for path in files:
            kind = _kind(path)
            if not path.is_file():
                yield Record(str(path), None, error="no such file")
                continue
            if kind in _READERS:
                records = _READERS[kind](path, max_chars)
            elif kind in ("txt", "html"):
                records = _document(path, max_chars, root)
            else:
                yield Record(str(path), None, error="unknown file type (expected .jsonl, .csv, .parquet, .txt, .html, optionally .gz)")
                continue
            for record in records:
                if record.error is None:
                    where = f"{record.source}:{record.line}" if record.line else record.source
                    if record.id in seen:
                        record = Record(record.source, record.line, record.id, error=f"duplicate id (first at {seen[record.id]})")
                    else:
                        seen[record.id] = where
                yield record
