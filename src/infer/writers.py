"""Output rows to file bytes, and committed chunks to the output file, in JSONL or Parquet.

A chunk is rendered in memory, whole, so a row no writer can encode fails before anything is written; if that
fails, :func:`infer.chunks.tag_chunk` bisects, and :func:`concat_parts` joins the rendered pieces into the same
bytes one piece would have given.  The merge streams the chunks into the output with the rows' one schema.
"""

from __future__ import annotations

import json
import shutil
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa

FORMATS = ("jsonl", "parquet")


@dataclass(frozen=True)
class Rendered:
    payload: object  # bytes (JSONL) or a pyarrow Table (Parquet)
    data: bytes
    sentences: int
    labels: dict[str, int]


def render(table: pa.Table, fmt: str) -> Rendered:
    """Strict: NaN, or anything else JSON or Arrow cannot hold, raises here."""
    labels = {k: int(v) for k, v in Counter(table.column("label").to_pylist()).items()}
    if fmt == "jsonl":
        data = "".join(json.dumps(row, ensure_ascii=False, allow_nan=False) + "\n"
                       for row in table.to_pylist()).encode("utf-8")
        return Rendered(data, data, table.num_rows, labels)
    return Rendered(table, _parquet_bytes(table), table.num_rows, labels)


def _parquet_bytes(table: pa.Table) -> bytes:
    import pyarrow.parquet as pq

    sink = pa.BufferOutputStream()
    pq.write_table(table, sink)
    return sink.getvalue().to_pybytes()


def concat_parts(parts: list[Rendered], fmt: str) -> bytes:
    if len(parts) == 1:
        return parts[0].data
    if fmt == "jsonl":
        return b"".join(p.payload for p in parts)
    return _parquet_bytes(pa.concat_tables([p.payload for p in parts]))


def write_jsonl(rows, path: Path) -> None:
    with open(path, "w", encoding="utf-8") as fh:
        for row in rows:
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")


def merge(parts: list[Path], target: Path, fmt: str, schema: pa.Schema) -> None:
    """The chunk files, in order, as one output file; no chunks still give a valid, empty file."""
    if fmt == "jsonl":
        concat(parts, target)
        return
    import pyarrow.parquet as pq

    with pq.ParquetWriter(target, schema) as writer:
        for part in parts:
            table = pq.read_table(part, schema=schema)
            if table.num_rows:
                writer.write_table(table)


def concat(parts: list[Path], target: Path) -> None:
    with open(target, "wb") as out:
        for part in parts:
            with open(part, "rb") as fh:
                shutil.copyfileobj(fh, out)
