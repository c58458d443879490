"""A batch tagging job over article dumps: streaming, resumable after ``kill -9``, never stopped by a bad record.

Input records are cut into chunks of a fixed number of records.  Each chunk's rows, errors and counts are
written to ``OUTPUT.parts/`` as temporary files and renamed into place, the data file last: its presence is the
commit.  ``--resume`` re-reads the input (cheap), skips committed chunks and redoes the rest; the final merge
streams the chunks into ``OUTPUT`` (write-then-rename) and removes the parts.  An interrupted job therefore ends
with exactly the rows of an uninterrupted one.
"""

from __future__ import annotations

import itertools
import json
import os
import shutil
import sys
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Iterable, Iterator

import pandas as pd

from infer.io import MAX_CHARS, Record, error_row, read_records
from infer.tagger import Article, Tagger

EXIT_OK, EXIT_SKIPPED = 0, 3  # see the CLI docstring for the full table
FORMATS = ("jsonl", "parquet")


class JobError(Exception):
    """A user error that stops the job before it starts (bad output path, resume mismatch)."""


@dataclass
class Summary:
    articles_read: int = 0
    articles_tagged: int = 0
    skipped: int = 0
    sentences: int = 0
    seconds: float = 0.0
    labels: dict[str, int] = field(default_factory=dict)
    read_seconds: float = 0.0
    segment_seconds: float = 0.0
    model_seconds: float = 0.0
    write_seconds: float = 0.0

    def add(self, other: dict) -> None:
        for key in ("articles_read", "articles_tagged", "skipped", "sentences"):
            setattr(self, key, getattr(self, key) + other[key])
        for label, n in other["labels"].items():
            self.labels[label] = self.labels.get(label, 0) + n

    def as_dict(self) -> dict:
        out = asdict(self)
        out["sentences_per_second"] = round(self.sentences / self.seconds, 1) if self.seconds else 0.0
        out["articles_per_second"] = round(self.articles_read / self.seconds, 1) if self.seconds else 0.0
        out["seconds"] = round(self.seconds, 3)
        return out


def output_format(output: Path, fmt: str | None) -> str:
    if fmt:
        if fmt not in FORMATS:
            raise JobError(f"--format {fmt!r}: expected one of {', '.join(FORMATS)}")
        return fmt
    name = output.name.lower()
    if name.endswith(".parquet"):
        return "parquet"
    if name.endswith((".jsonl", ".ndjson", ".json")):
        return "jsonl"
    raise JobError(f"{output}: cannot tell the format from the extension; use .jsonl or .parquet, or --format")


def _atomic_write(path: Path, write) -> None:
    tmp = path.with_name(path.name + ".tmp")
    write(tmp)
    os.replace(tmp, path)


def _write_rows(frame: pd.DataFrame, path: Path, fmt: str) -> None:
    if fmt == "parquet":
        frame.to_parquet(path, index=False)
    else:
        _write_jsonl(frame.to_dict("records"), path)


def _write_jsonl(rows: Iterable[dict], path: Path) -> None:
    with open(path, "w", encoding="utf-8") as fh:
        for row in rows:
            fh.write(json.dumps(row, ensure_ascii=False, default=_plain) + "\n")


def _plain(value):
    """numpy scalars and pandas NA in rows become JSON numbers and null."""
    return None if pd.isna(value) else value.item()


def _chunks(records: Iterator[Record], size: int) -> Iterator[list[Record]]:
    while chunk := list(itertools.islice(records, size)):
        yield chunk


class Job:
    def __init__(self, inputs: list[str], output: str, tagger: Tagger, fmt: str | None = None,
                 chunk_size: int = 1000, resume: bool = False, max_chars: int = MAX_CHARS, progress: bool | None = None):
        self.inputs, self.output, self.tagger = inputs, Path(output), tagger
        self.fmt = output_format(self.output, fmt)
        self.parts = self.output.with_name(self.output.name + ".parts")
        self.errors_path = self.output.with_name(self.output.name + ".errors.jsonl")
        self.summary_path = self.output.with_name(self.output.name + ".summary.json")
        self.chunk_size, self.resume, self.max_chars = chunk_size, resume, max_chars
        self.progress = sys.stderr.isatty() if progress is None else progress
        self.manifest = {"inputs": [str(Path(p).resolve()) for p in inputs], "model_uri": tagger.model_uri,
                         "model_version": tagger.version, "format": self.fmt, "chunk_size": chunk_size,
                         "segmenter": tagger.segmenter, "min_score": tagger.min_score, "max_chars": max_chars}

    def _prepare(self) -> None:
        manifest = self.parts / "manifest.json"
        if self.parts.exists():
            if not self.resume:
                raise JobError(f"{self.parts} holds an interrupted job: rerun with --resume, or delete it to start over")
            try:
                previous = json.loads(manifest.read_text())
            except (OSError, json.JSONDecodeError):
                previous = None
            if previous is not None and previous != self.manifest:
                changed = sorted(k for k in self.manifest if previous.get(k) != self.manifest[k])
                raise JobError(f"cannot resume {self.output}: {', '.join(changed)} differ from the interrupted job")
        self.output.parent.mkdir(parents=True, exist_ok=True)
        self.parts.mkdir(exist_ok=True)
        _atomic_write(manifest, lambda p: p.write_text(json.dumps(self.manifest, indent=2)))

    def _part(self, index: int, suffix: str) -> Path:
        return self.parts / f"chunk-{index:06d}.{suffix}"

    def _process(self, index: int, chunk: list[Record], summary: Summary) -> dict:
        good = [r for r in chunk if r.error is None]
        errors = [error_row(r) for r in chunk if r.error]
        frame = self.tagger.tag([Article(r.id, r.text, r.title) for r in good])
        t1 = time.perf_counter()
        stats = {"articles_read": len(chunk), "articles_tagged": len(good), "skipped": len(errors),
                 "sentences": len(frame), "labels": {k: int(v) for k, v in Counter(frame["label"]).items()}}
        _atomic_write(self._part(index, "errors.jsonl"), lambda p: _write_jsonl(errors, p))
        _atomic_write(self._part(index, "stats.json"), lambda p: p.write_text(json.dumps(stats)))
        _atomic_write(self._part(index, self.fmt), lambda p: _write_rows(frame, p, self.fmt))  # the commit
        summary.write_seconds += time.perf_counter() - t1
        return stats

    def _merge(self, count: int) -> None:
        def rows(tmp: Path) -> None:
            if self.fmt == "parquet":
                import pyarrow.parquet as pq

                writer = None
                for i in range(count):
                    table = pq.read_table(self._part(i, "parquet"))
                    writer = writer or pq.ParquetWriter(tmp, table.schema)
                    if table.num_rows:
                        writer.write_table(table)
                if writer is None:  # no chunks at all: still leave a valid, empty file
                    pd.DataFrame(columns=self.tagger.columns).to_parquet(tmp, index=False)
                else:
                    writer.close()
            else:
                _concat([self._part(i, "jsonl") for i in range(count)], tmp)

        _atomic_write(self.output, rows)
        _atomic_write(self.errors_path, lambda tmp: _concat([self._part(i, "errors.jsonl") for i in range(count)], tmp))

    def run(self) -> Summary:
        self._prepare()
        summary, started = Summary(), time.perf_counter()
        bar = _progress_bar(self.progress)
        records = read_records(self.inputs, self.max_chars)
        count = 0
        while True:
            t0 = time.perf_counter()
            chunk = next(_chunks(records, self.chunk_size), None)
            summary.read_seconds += time.perf_counter() - t0
            if chunk is None:
                break
            if self._part(count, self.fmt).exists():
                stats = json.loads(self._part(count, "stats.json").read_text())
            else:
                stats = self._process(count, chunk, summary)
            summary.add(stats)
            count += 1
            if bar is not None:
                bar.update(stats["articles_read"])
                bar.set_postfix(sentences=summary.sentences, skipped=summary.skipped,
                                sent_per_s=f"{summary.sentences / max(time.perf_counter() - started, 1e-9):.0f}")
        summary.segment_seconds = self.tagger.seconds["segment"]
        summary.model_seconds = self.tagger.seconds["model"]
        t0 = time.perf_counter()
        self._merge(count)
        summary.write_seconds += time.perf_counter() - t0
        summary.seconds = time.perf_counter() - started
        _atomic_write(self.summary_path, lambda p: p.write_text(json.dumps(summary.as_dict(), indent=2)))
        shutil.rmtree(self.parts)
        if bar is not None:
            bar.close()
        return summary


def _concat(parts: list[Path], target: Path) -> None:
    with open(target, "wb") as out:
        for part in parts:
            with open(part, "rb") as fh:
                shutil.copyfileobj(fh, out)


def _progress_bar(enabled: bool):
    if not enabled:
        return None
    from tqdm import tqdm

    return tqdm(unit=" articles", file=sys.stderr, dynamic_ncols=True)
