"""Streaming readers for article dumps: JSONL, CSV, Parquet (each optionally gzipped), .txt and .html files, and
folders of them.

Readers never raise on a bad record: they yield a :class:`Record` whose ``error`` says what is wrong and where
(file and line or row), so one hostile line cannot stop a dump of a million articles.  A file that breaks midway
(truncated gzip, corrupt Parquet, a reader bug) costs only its unread rest, reported as one error.  Memory stays
bounded: files are read line by line or in Parquet batches, and duplicate ids are found on disk (:class:`SeenIds`).
"""

from __future__ import annotations

import codecs
import csv
import gzip
import io
import json
import re
import shutil
import sqlite3
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

_KINDS = {".jsonl": "jsonl", ".ndjson": "jsonl", ".csv": "csv", ".parquet": "parquet", ".txt": "txt", ".html": "html", ".htm": "html"}
MAX_CHARS = 200_000
HTML_MAX_BYTES = 64 << 20  # scripts and styles can dwarf the article; past this a page is an error, not a truncation
# A lone surrogate is valid JSON ("\ud800") but not Unicode: no writer can encode it.  In CSV and text files it
# marks an undecodable byte (read with errors="surrogateescape").
_SURROGATE = re.compile("[\ud800-\udfff]")


@dataclass(frozen=True)
class Record:
    source: str
    line: int | None
    id: str | None = None
    title: str | None = None
    text: str | None = None
    error: str | None = None


def error_row(record: Record) -> dict:
    """The line a bad record gets in ``OUTPUT.errors.jsonl`` (both engines).

    Strings are made encodable: a file name with undecodable bytes or an id with a lone surrogate must not make
    the errors file itself unwritable.
    """
    return {"source": _writable(record.source), "line": record.line, "id": _writable(record.id),
            "reason": _writable(record.error)}


def _writable(value: str | None) -> str | None:
    return value if value is None or not _SURROGATE.search(value) else value.encode("utf-8", "backslashreplace").decode()


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


def _bad_unicode(field: str, value: str, undecoded: bool) -> str | None:
    m = _SURROGATE.search(value)
    if m is None:
        return None
    if undecoded:
        return f"not UTF-8 (byte 0x{ord(m.group()) - 0xDC00:02X} in {field}, character {m.start()})"
    return f"{field} holds a lone surrogate U+{ord(m.group()):04X} at character {m.start()} (not valid Unicode)"


def _check(source: str, line: int | None, raw_id, title, text, max_chars: int, undecoded: bool = False) -> Record:
    if raw_id is None or (isinstance(raw_id, str) and not raw_id.strip()):
        return Record(source, line, error="missing id")
    if isinstance(raw_id, bool) or not isinstance(raw_id, (str, int)):
        return Record(source, line, error=f"id is {type(raw_id).__name__}, not a string or integer")
    rid = str(raw_id)  # 7 and "7" are the same article: ids are compared as strings
    if reason := _bad_unicode("id", rid, undecoded):
        return Record(source, line, rid, error=reason)
    if text is None:
        return Record(source, line, rid, error="missing text")
    if not isinstance(text, str):
        return Record(source, line, rid, error=f"text is {type(text).__name__}, not a string")
    if not text.strip():
        return Record(source, line, rid, error="empty text")
    if len(text) > max_chars:
        return Record(source, line, rid, error=f"text has {len(text):,} characters, over the limit of {max_chars:,}")
    title = title if isinstance(title, str) else None
    for field, value in (("text", text), ("title", title or "")):
        if reason := _bad_unicode(field, value, undecoded):
            return Record(source, line, rid, error=reason)
    return Record(source, line, rid, title, text)


def _first_id(row: dict):
    """``id``, else ``article_id``: the same rule for every format."""
    rid = row.get("id")
    return row.get("article_id") if rid is None or rid == "" else rid


def _lines(fh, limit: int) -> Iterator[bytes | int]:
    """The lines of a binary file; a line over ``limit`` bytes comes as its length, never held in memory whole."""
    while raw := fh.readline(limit + 1):
        if len(raw) <= limit or raw.endswith(b"\n"):
            yield raw
            continue
        size = len(raw)
        while not raw.endswith(b"\n") and (raw := fh.readline(1 << 20)):
            size += len(raw)
        yield size


def _jsonl(path: Path, max_chars: int) -> Iterator[Record]:
    source = str(path)
    limit = max_chars * 12 + (1 << 20)  # text escaped as \uXXXX\uXXXX pairs, plus room for other fields
    with _open_binary(path) as fh:
        for number, raw in enumerate(_lines(fh, limit), 1):
            if isinstance(raw, int):
                yield Record(source, number, error=f"line has {raw:,} bytes, over the limit of {limit:,} (--max-chars)")
                continue
            if number == 1:
                raw = raw.removeprefix(codecs.BOM_UTF8)
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
            except (ValueError, RecursionError) as err:  # 5,000-digit numbers; arrays nested 100,000 deep
                yield Record(source, number, error=f"invalid JSON ({'nested too deeply' if isinstance(err, RecursionError) else err})")
                continue
            if not isinstance(row, dict):
                yield Record(source, number, error=f"not a JSON object (a {type(row).__name__})")
                continue
            yield _check(source, number, _first_id(row), row.get("title"), row.get("text"), max_chars)


def _csv(path: Path, max_chars: int) -> Iterator[Record]:
    source = str(path)
    csv.field_size_limit(max(2 * max_chars, 131_072))  # an unclosed quote must not read the whole file into one field
    with _open_binary(path) as fh:
        text = io.TextIOWrapper(fh, encoding="utf-8-sig", errors="surrogateescape", newline="")
        reader = csv.DictReader(text)
        if reader.fieldnames is None or "text" not in reader.fieldnames:
            yield Record(source, 1, error="CSV header has no `text` column")
            return
        while True:
            start = reader.line_num + 1
            try:
                row = next(reader)
            except StopIteration:
                return
            except csv.Error as err:
                yield Record(source, start, error=f"invalid CSV ({err})")
                if reader.line_num < start:  # the reader did not move on: nothing more can be read
                    return
                continue
            yield _check(source, start, _first_id(row), row.get("title"), row.get("text"), max_chars, undecoded=True)


def _parquet(path: Path, max_chars: int) -> Iterator[Record]:
    import pyarrow.parquet as pq

    source = str(path)
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
    """A whole .txt or .html file is one article, its id the path under the named folder."""
    source = str(path)
    rid = str(path.relative_to(root)) if root else path.name
    html = _kind(path) == "html"
    limit = max(HTML_MAX_BYTES, max_chars * 4) if html else max_chars * 4  # UTF-8: at most 4 bytes a character
    with _open_binary(path) as fh:
        data = fh.read(limit + 1)
    if len(data) > limit:
        what = "page" if html else "text"
        yield Record(source, None, rid, error=f"{what} has over {limit:,} bytes, over the limit of {max_chars:,} characters")
        return
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        yield Record(source, None, rid, error=f"not UTF-8 ({err.reason} at byte {err.start})")
        return
    title = None
    if html:
        title, text = html_to_text(text.replace("\x00", ""))  # lxml refuses NUL; it is never visible text
    yield _check(source, None, rid, title, text, max_chars)


_READERS = {"jsonl": _jsonl, "csv": _csv, "parquet": _parquet}


class SeenIds:
    """The first place of every id, in an sqlite file: memory stays flat however many ids a dump holds.

    The file is scratch space, rebuilt on every run (a resume re-reads the inputs from the start), so it is
    written without a journal or fsync.
    """

    def __init__(self, path: Path | None = None):
        self._tmp = None if path else tempfile.mkdtemp(prefix="newstag-ids-")
        self.path = Path(path or Path(self._tmp, "ids.sqlite"))
        self.path.unlink(missing_ok=True)
        self._db = sqlite3.connect(self.path, isolation_level=None)
        self._db.executescript("PRAGMA journal_mode=OFF; PRAGMA synchronous=OFF; PRAGMA cache_size=-8000;"
                               "CREATE TABLE seen (id TEXT PRIMARY KEY, source INTEGER, line INTEGER) WITHOUT ROWID;"
                               "BEGIN")
        self._sources: list[str] = []
        self._pending = 0

    def first(self, rid: str, source: str, line: int | None) -> str | None:
        """None the first time ``rid`` is seen; else where it was first seen."""
        if not self._sources or self._sources[-1] != source:
            self._sources.append(source)
        cur = self._db.execute("INSERT OR IGNORE INTO seen VALUES (?, ?, ?)", (rid, len(self._sources) - 1, line))
        self._pending += 1
        if self._pending >= 50_000:
            self._db.execute("COMMIT")
            self._db.execute("BEGIN")
            self._pending = 0
        if cur.rowcount:
            return None
        index, at = self._db.execute("SELECT source, line FROM seen WHERE id = ?", (rid,)).fetchone()
        return f"{self._sources[index]}:{at}" if at is not None else self._sources[index]

    def close(self) -> None:
        self._db.close()
        if self._tmp:
            shutil.rmtree(self._tmp, ignore_errors=True)
        else:
            self.path.unlink(missing_ok=True)


def _file_records(path: Path, root: Path | None, max_chars: int) -> Iterator[Record]:
    kind = _kind(path)
    if not path.is_file():
        yield Record(str(path), None, error="no such file")
    elif kind in _READERS:
        yield from _READERS[kind](path, max_chars)
    elif kind in ("txt", "html"):
        yield from _document(path, max_chars, root)
    else:
        yield Record(str(path), None, error="unknown file type (expected .jsonl, .csv, .parquet, .txt, .html, optionally .gz)")


def read_records(paths: list[str], max_chars: int = MAX_CHARS, seen: SeenIds | None = None) -> Iterator[Record]:
    """Every record of every input in order; bad ones carry an ``error``; duplicate ids after the first are errors."""
    own = seen is None
    seen = seen or SeenIds()
    try:
        for raw in paths:
            root = Path(raw) if Path(raw).is_dir() else None
            files = expand([raw])
            if not files and root is not None:
                yield Record(raw, None, error="folder holds no article files")
            for path in files:
                last = None
                try:
                    for record in _file_records(path, root, max_chars):
                        last = record.line
                        if record.error is None and (first := seen.first(record.id, record.source, record.line)):
                            record = Record(record.source, record.line, record.id, error=f"duplicate id (first at {first})")
                        yield record
                except Exception as err:  # truncated gzip, corrupt Parquet, anything: the file's rest, not the job
                    after = f" after line {last}" if last else ""
                    yield Record(str(path), last + 1 if last else None, error=f"unreadable{after}: {brief(err)}")
    finally:
        if own:
            seen.close()


def brief(err: BaseException) -> str:
    text = str(err) or type(err).__name__
    return text if len(text) <= 300 else text[:300] + "…"
