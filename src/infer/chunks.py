"""One chunk of records, tagged and committed the same way by every engine.

Whatever a record holds can fail only that record: a batch the tagger or the writer fails on is halved until the
records that fail alone are found (:func:`tag_chunk`).  A chunk commits as three fsynced files, the rows last
(:class:`Parts`); a resume trusts a committed chunk only if it is intact and holds the records read now.
"""

from __future__ import annotations

import itertools
import json
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from infer.durable import atomic_write, crash_point, injected_failure
from infer.errors import JobError, JobFailed
from infer.io import Record, brief, error_row
from infer.tagger import Article, Tagger
from infer.writers import Rendered, concat_parts, render, write_jsonl


def chunks(records: Iterator[Record], size: int) -> Iterator[list[Record]]:
    while chunk := list(itertools.islice(records, size)):
        yield chunk


def _isolate(tagger: Tagger, records: list[tuple[int, Record]], fmt: str) -> tuple[list[Rendered], dict[int, str]]:
    """Tag and render ``records``; on failure, halve until the records that fail alone are found."""
    stage = "tagging"
    try:
        injected_failure([r.id for _, r in records])
        frame = tagger.tag([Article(r.id, r.text, r.title) for _, r in records])
        stage = "writing"
        return [render(frame, fmt)], {}
    except MemoryError:
        raise
    except Exception as err:  # noqa: BLE001 - any failure is a record's until bisection says otherwise
        if len(records) == 1:
            return [], {records[0][0]: f"{stage} failed ({type(err).__name__}: {brief(err)})"}
        mid = len(records) // 2
        left, right = _isolate(tagger, records[:mid], fmt), _isolate(tagger, records[mid:], fmt)
        return left[0] + right[0], left[1] | right[1]


def _where(record: Record) -> list:
    return [error_row(record)["source"], record.line]


def _check_tagger(tagger: Tagger, fmt: str, reasons: set[str]) -> None:
    """After every record of a chunk failed: a plain sentence failing too means the tagger, not the records, is
    broken, and the job must fail (exit 1) rather than list a whole dump as bad records."""
    try:
        render(tagger.tag([Article("canary", _CANARY)]), fmt)
    except Exception as err:  # noqa: BLE001
        raise JobFailed(f"the tagger fails on every article, a plain sentence included ({type(err).__name__}: "
                        f"{brief(err)}; records failed with: {'; '.join(sorted(reasons))[:300]})") from err


_CANARY = "The minister said the plan would be published on Monday."


def tag_chunk(tagger: Tagger, chunk: list[Record], fmt: str) -> tuple[bytes, list[dict], dict]:
    """A chunk's rows (as file bytes), error rows in input order, and counts; the same on every engine."""
    good = [(i, r) for i, r in enumerate(chunk) if r.error is None]
    rendered, failed = _isolate(tagger, good, fmt) if good else ([], {})
    if good and len(failed) == len(good):
        _check_tagger(tagger, fmt, set(failed.values()))
    data = concat_parts(rendered, fmt) if rendered else render(tagger.schema.empty_table(), fmt).data
    errors = [error_row(r if r.error else Record(r.source, r.line, r.id, error=failed[i]))
              for i, r in enumerate(chunk) if r.error or i in failed]
    labels = Counter()
    for part in rendered:
        labels.update(part.labels)
    stats = {"articles_read": len(chunk), "articles_tagged": len(good) - len(failed), "skipped": len(errors),
             "sentences": sum(p.sentences for p in rendered), "labels": dict(sorted(labels.items())),
             "first": _where(chunk[0]), "last": _where(chunk[-1])}
    return data, errors, stats


@dataclass(frozen=True)
class Parts:
    """The files of ``OUTPUT.parts/``; small and picklable, so Spark executors commit chunks exactly as we do."""

    folder: Path
    fmt: str

    def path(self, index: int, suffix: str) -> Path:
        return self.folder / f"chunk-{index:06d}.{suffix}"

    def commit(self, index: int, data: bytes, errors: list[dict], stats: dict) -> None:
        stats = stats | {"bytes": len(data)}
        atomic_write(self.path(index, "errors.jsonl"), lambda p: write_jsonl(errors, p))
        atomic_write(self.path(index, "stats.json"), lambda p: p.write_text(json.dumps(stats)))
        crash_point(f"commit-{index}")
        atomic_write(self.path(index, self.fmt), lambda p: p.write_bytes(data))  # the commit
        crash_point(f"chunk-{index}")

    def stats(self, index: int) -> dict:
        """The counts a committed chunk recorded (for engines whose workers committed it)."""
        return json.loads(self.path(index, "stats.json").read_text())

    def tag_and_commit(self, tagger: Tagger, index: int, chunk: list[Record]) -> tuple[float, float]:
        """A worker's task (Spark task or local worker): tag and commit one chunk; returns the segmentation and
        model seconds it took, for the main process's summary."""
        before = dict(tagger.seconds)
        self.commit(index, *tag_chunk(tagger, chunk, self.fmt))
        return tagger.seconds["segment"] - before["segment"], tagger.seconds["model"] - before["model"]

    def committed(self, index: int, chunk: list[Record]) -> dict | None:
        """The stats of a committed chunk holding exactly ``chunk``'s records; None if it must be (re)done."""
        data = self.path(index, self.fmt)
        if not data.exists():
            return None
        try:
            stats = json.loads(self.path(index, "stats.json").read_text())
            intact = stats["bytes"] == data.stat().st_size and self.path(index, "errors.jsonl").exists()
        except (OSError, ValueError, KeyError, TypeError):
            intact = False
        if not intact:  # written without the fsyncs of this version, or damaged since: redo it
            data.unlink()
            return None
        same = (stats["articles_read"] == len(chunk) and stats["first"] == _where(chunk[0])
                and stats["last"] == _where(chunk[-1]))
        if not same:
            raise JobError(f"cannot resume: committed chunk {index} holds other records than the inputs give now; "
                           f"delete {self.folder} to start over")
        return stats


