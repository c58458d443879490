"""A batch tagging job over article dumps: streaming, exact after ``kill -9`` and ``--resume``, never stopped by a
bad record.

Input records are cut into chunks of a fixed number of records.  Each chunk's rows, errors and counts are
written to ``OUTPUT.parts/`` (fsynced, renamed into place, the rows file last: its presence is the commit).
``OUTPUT.parts/manifest.json`` fingerprints the inputs and every option that decides the rows; ``--resume``
checks it (any change refuses), re-reads the inputs, skips committed chunks and redoes the rest.  The merge
streams the chunks into ``OUTPUT``; the parts are removed last.  Whatever a record holds can fail only that
record: a chunk the tagger or the writer fails on is bisected down to the records that fail (:func:`tag_chunk`).
"""

from __future__ import annotations

import json
import shutil
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import newstag
from infer.chunks import Parts, chunks, tag_chunk
from infer.durable import atomic_write, crash_point, differences, fingerprint
from infer.errors import JobError, JobFailed
from infer.io import MAX_CHARS, Record, SeenIds, read_records
from infer.tagger import Spec, Tagger
from infer.writers import FORMATS, concat, merge

__all__ = ["EXIT_OK", "EXIT_SKIPPED", "Job", "JobError", "JobFailed", "Summary", "output_format"]

EXIT_OK, EXIT_SKIPPED = 0, 3  # see the CLI docstring for the full table


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
    workers: int = 1  # local processes that tagged (``--workers``)

    def add(self, other: dict) -> None:
        for key in ("articles_read", "articles_tagged", "skipped", "sentences"):
            setattr(self, key, getattr(self, key) + other[key])
        for label, n in other["labels"].items():
            self.labels[label] = self.labels.get(label, 0) + n

    def as_dict(self) -> dict:
        out = asdict(self)
        out["labels"] = dict(sorted(self.labels.items()))
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


class Job:
    workers = 1  # processes that tag: here the main process itself; the pool sets its own

    def __init__(self, inputs: list[str], output: str, tagger: Tagger, fmt: str | None = None,
                 chunk_size: int = 1000, resume: bool = False, max_chars: int = MAX_CHARS, progress: bool | None = None,
                 runtime: str | None = None):
        self.inputs, self.output, self.tagger, self.runtime = inputs, Path(output), tagger, runtime
        self.fmt = output_format(self.output, fmt)
        self.parts = Parts(self.output.with_name(self.output.name + ".parts"), self.fmt)
        self.errors_path = self.output.with_name(self.output.name + ".errors.jsonl")
        self.summary_path = self.output.with_name(self.output.name + ".summary.json")
        self.chunk_size, self.resume, self.max_chars = chunk_size, resume, max_chars
        self.progress = sys.stderr.isatty() if progress is None else progress

    def manifest(self) -> dict:
        """Everything that decides the output rows.  Batch size counts only where scores depend on it (not the
        baseline's); the model's uuid pins the model an alias pointed at; the runtime is the one the model computes
        with, so a resume on a CPU where ``auto`` means another runtime is refused instead of mixing the two."""
        meta = self.tagger.model.metadata
        extra = meta.metadata or {}
        return {"newstag": newstag.__version__, "inputs": [str(Path(p).resolve()) for p in self.inputs],
                "format": self.fmt, "chunk_size": self.chunk_size, "max_chars": self.max_chars,
                "model_uri": self.tagger.model_uri, "model_version": self.tagger.version,
                "model_uuid": meta.model_uuid, "runtime": self.tagger.runtime or self.runtime,
                "segmenter": self.tagger.segmenter, "min_score": self.tagger.min_score, "context": extra.get("context"),
                "batch_size": None if extra.get("model_kind") == "baseline" else self.tagger.batch_size,
                "files": fingerprint(self.inputs)}

    def _prepare(self) -> None:
        folder = self.parts.folder
        shutil.rmtree(folder.with_name(folder.name + ".done"), ignore_errors=True)  # a finished job's leftovers
        current = self.manifest()
        if folder.exists():
            if not self.resume:
                raise JobError(f"{folder} holds an interrupted job: rerun with --resume, or delete it to start over")
            try:
                previous = json.loads((folder / "manifest.json").read_text())
            except (OSError, ValueError):
                previous = None
            if previous is None and any(folder.glob("chunk-*")):
                raise JobError(f"cannot resume {self.output}: {folder}/manifest.json is missing or corrupt, so the "
                               f"committed chunks cannot be checked; delete {folder} to start over")
            if previous is not None and (changed := differences(previous, current)):
                raise JobError(f"cannot resume {self.output}: " + "; ".join(changed)
                               + f". Rerun the original job, or delete {folder} to start over")
            if previous == current:
                return
        try:
            self.output.parent.mkdir(parents=True, exist_ok=True)
            folder.mkdir(exist_ok=True)
            atomic_write(folder / "manifest.json", lambda p: p.write_text(json.dumps(current, indent=2)))
        except OSError as err:  # checked before any record is read: the user's path, the user's fix
            raise JobError(f"cannot write the output {self.output}: {err.strerror or err}") from None
        crash_point("manifest")

    def worker_spec(self, threads: int | None = None) -> Spec:
        """The tagger for worker processes, on a copy of the model under the parts folder (which Spark executors see
        too), checked to be the model this job loaded."""
        import mlflow
        from mlflow.models import Model

        target = self.parts.folder / "model"
        shutil.rmtree(target, ignore_errors=True)
        local = mlflow.artifacts.download_artifacts(artifact_uri=self.tagger.model_uri, dst_path=str(target))
        if Model.load(local).model_uuid != self.tagger.model.metadata.model_uuid:
            raise JobError(f"{self.tagger.model_uri} changed while the job started; rerun")
        t = self.tagger
        threads = threads if "threads" in t.settable else None  # a baseline, or a model logged before threads existed
        return Spec(str(Path(local).resolve()), t.model_uri, t.version, self.runtime, t.segmenter, t.min_score,
                    t.batch_size, threads)

    def process(self, index: int, chunk: list[Record]) -> dict | None:
        """Tag and commit one chunk now; an engine that defers the work returns None and does it in ``finish``."""
        data, errors, stats = tag_chunk(self.tagger, chunk, self.fmt)
        t0 = time.perf_counter()
        self.parts.commit(index, data, errors, stats)
        self.write_seconds += time.perf_counter() - t0
        return stats

    def finish(self, pending: list[int]) -> list[dict]:
        return []

    def _merge(self, count: int) -> None:
        rows = [self.parts.path(i, self.fmt) for i in range(count)]
        atomic_write(self.output, lambda tmp: merge(rows, tmp, self.fmt, self.tagger.schema))
        crash_point("merge")
        atomic_write(self.errors_path, lambda tmp: concat([self.parts.path(i, "errors.jsonl") for i in range(count)], tmp))

    def run(self) -> Summary:
        self._prepare()
        summary, started, self.write_seconds = Summary(), time.perf_counter(), 0.0
        bar = _progress_bar(self.progress)
        seen = SeenIds(self.parts.folder / "ids.sqlite")
        records = read_records(self.inputs, self.max_chars, seen)
        count, pending = 0, []
        try:
            while True:
                t0 = time.perf_counter()
                chunk = next(chunks(records, self.chunk_size), None)
                summary.read_seconds += time.perf_counter() - t0
                if chunk is None:
                    break
                stats = self.parts.committed(count, chunk) or self.process(count, chunk)
                if stats is None:
                    pending.append(count)
                else:
                    summary.add(stats)
                count += 1
                if bar is not None:
                    bar.update(len(chunk))
                    bar.set_postfix(sentences=summary.sentences, skipped=summary.skipped,
                                    sent_per_s=f"{summary.sentences / max(time.perf_counter() - started, 1e-9):.0f}")
        finally:
            records.close()
            seen.close()
        for stats in self.finish(pending):
            summary.add(stats)
        summary.segment_seconds = self.tagger.seconds["segment"]
        summary.model_seconds = self.tagger.seconds["model"]
        summary.workers = self.workers
        t0 = time.perf_counter()
        self._merge(count)
        summary.write_seconds = self.write_seconds + time.perf_counter() - t0
        summary.seconds = time.perf_counter() - started
        atomic_write(self.summary_path, lambda p: p.write_text(json.dumps(summary.as_dict(), indent=2)))
        crash_point("cleanup")
        done = self.parts.folder.with_name(self.parts.folder.name + ".done")
        self.parts.folder.rename(done)  # one atomic step: a kill during removal leaves no half-deleted job
        shutil.rmtree(done)
        if bar is not None:
            bar.close()
        return summary


def _progress_bar(enabled: bool):
    if not enabled:
        return None
    from tqdm import tqdm

    return tqdm(unit=" articles", file=sys.stderr, dynamic_ncols=True)
