"""``newstag tag --workers N``: the local job, with its chunks tagged by N worker processes.

Segmentation, tokenisation and the scikit-learn baseline are single-threaded Python, so one process uses one
core whatever the machine has.  Here the main process reads, validates and cuts the same chunks as the local
engine, and each worker (one model load each, from the job's model copy) runs :func:`infer.chunks.tag_chunk` and
commits the chunk itself, as a Spark task does.  Rows, errors, summary and ``--resume`` are therefore the local
engine's; a worker that dies (``kill -9``, out of memory) fails the job with its committed chunks kept.  At most
two chunks a worker are in flight, so memory stays bounded on any dump.  Transformer workers share the cores:
each gets ``cores // workers`` intra-op threads.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import threading
import time
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool

from infer.chunks import Parts
from infer.errors import JobFailed
from infer.io import Record
from infer.job import Job
from infer.tagger import Spec, Tagger

_TAGGER: Tagger | None = None  # the worker's own tagger, built once by _start


def _start(spec: Spec, parent: int) -> None:
    global _TAGGER
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the main process's to handle: it stops the workers
    threading.Thread(target=_exit_with, args=(parent,), daemon=True).start()
    _TAGGER = spec.build()


def _exit_with(parent: int) -> None:
    """A worker ends within a second of its main process (killed with -9, it cannot stop them), instead of
    tagging on as an orphan and holding the job's output pipes open."""
    while os.getppid() == parent:
        time.sleep(0.5)
    os._exit(1)


def _tag(index: int, chunk: list[Record], parts: Parts) -> tuple[float, float]:
    return parts.tag_and_commit(_TAGGER, index, chunk)


def cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


class PoolJob(Job):
    def __init__(self, *args, workers: int = 2, **kwargs):
        super().__init__(*args, **kwargs)
        self.workers = workers
        self.pool: ProcessPoolExecutor | None = None
        self.futures: dict[int, Future] = {}

    def process(self, index: int, chunk: list[Record]) -> None:
        if self.pool is None:
            # fork: workers start in milliseconds with the modules already imported; each builds its own model
            # (runtime thread pools do not survive a fork, so the main process's model is never used there).
            self.pool = ProcessPoolExecutor(self.workers, mp_context=multiprocessing.get_context("fork"),
                                            initializer=_start,
                                            initargs=(self.worker_spec(max(1, cores() // self.workers)), os.getpid()))
        self.futures[index] = self.pool.submit(_tag, index, chunk, self.parts)
        running = [i for i, f in self.futures.items() if not f.done()]
        if len(running) > 2 * self.workers:
            self._result(running[0])
        return None

    def _result(self, index: int) -> tuple[float, float]:
        try:
            return self.futures[index].result()
        except BrokenProcessPool:
            raise JobFailed("a worker process died (killed, or out of memory); committed chunks are kept: "
                            "rerun with --resume") from None

    def finish(self, pending: list[int]) -> list[dict]:
        for index in pending:
            segment, model = self._result(index)
            self.tagger.seconds["segment"] += segment  # worker seconds: with N workers, up to N per second of wall
            self.tagger.seconds["model"] += model
        return [self.parts.stats(i) for i in pending]

    def run(self):
        try:
            return super().run()
        except BaseException:
            # Failed or interrupted: stop the workers now.  A chunk they were writing is not committed (the rows
            # file is renamed into place last) and is redone by --resume.
            for process in list((getattr(self.pool, "_processes", None) or {}).values()):
                process.kill()
            raise
        finally:
            if self.pool is not None:
                self.pool.shutdown(wait=True, cancel_futures=True)
