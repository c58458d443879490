"""Output rows rendered to file bytes in memory, so a row no writer can encode fails before anything is written.

A chunk is rendered whole; if that fails, :func:`infer.job.tag_chunk` bisects, and the rendered pieces are joined
by :func:`concat_parts` into the same bytes one piece would have given.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass

import pandas as pd


@dataclass(frozen=True)
class Rendered:
    payload: object  # bytes (JSONL) or a pyarrow Table (Parquet)
    data: bytes
    sentences: int
    labels: dict[str, int]


def _plain(value):
    """numpy scalars and pandas NA in rows become JSON numbers and null."""
    return None if pd.isna(value) else value.item()


def render(frame: pd.DataFrame, fmt: str) -> Rendered:
    """Strict: a lone surrogate, NaN or anything else JSON or Arrow cannot hold raises here."""
    labels = {k: int(v) for k, v in Counter(frame["label"]).items()}
    if fmt == "jsonl":
        data = "".join(json.dumps(row, ensure_ascii=False, allow_nan=False, default=_plain) + "\n"
                       for row in frame.to_dict("records")).encode("utf-8")
        return Rendered(data, data, len(frame), labels)
    import pyarrow as pa

    table = pa.Table.from_pandas(frame, preserve_index=False)
    return Rendered(table, _parquet_bytes(table), len(frame), labels)


def _parquet_bytes(table) -> bytes:
    import pyarrow as pa
    import pyarrow.parquet as pq

    sink = pa.BufferOutputStream()
    pq.write_table(table, sink)
    return sink.getvalue().to_pybytes()


def concat_parts(parts: list[Rendered], fmt: str) -> bytes:
    if len(parts) == 1:
        return parts[0].data
    if fmt == "jsonl":
        return b"".join(p.payload for p in parts)
    import pyarrow as pa

    return _parquet_bytes(pa.concat_tables([p.payload for p in parts]))


def empty_rows(tagger) -> pd.DataFrame:
    """No sentences, every column typed: a chunk of only bad records still has the output's schema."""
    return tagger.tag([])
