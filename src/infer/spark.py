"""``newstag tag --engine spark``: the local job, with the tagging of each chunk done by a Spark task.

The driver reads and validates the inputs with the local job's readers and cuts the same chunks; each chunk
still to do is staged as ``OUTPUT.parts/chunk-N.input.parquet``.  One Spark task a chunk then runs
:func:`infer.job.tag_chunk` (segmentation, the model, bisection down to the records that fail) and commits the
chunk exactly as the local engine does.  The driver merges the parts with the local job's code.  So rows, errors
file and summary are the local engine's by construction, a bad record in an executor is an error row, and
``--resume`` after a failed or killed Spark job skips the committed chunks (the manifest is shared, so a job
may even be resumed on the other engine).

On a cluster, ``OUTPUT.parts/`` (staged chunks and a copy of the model) must be on a filesystem every executor
sees at the same path, and executors need this package installed.
"""

from __future__ import annotations

import logging
import os
import shutil
import sys
import time
import warnings
from pathlib import Path

from infer.chunks import Parts
from infer.durable import atomic_write
from infer.errors import JobError, JobFailed
from infer.io import Record, error_row
from infer.job import Job
from infer.tagger import Spec, Tagger

INSTALL_HINT = "install it with `make setup EXTRAS=transformer,dev,spark,ui` or `pip install -e .[spark]`"
_STAGED = ("source", "line", "id", "title", "text", "error")


def check_environment() -> None:
    """Fail before loading the model or starting a JVM, with the fix in the message."""
    try:
        import pyspark  # noqa: F401
    except ImportError as err:
        raise JobError(f"--engine spark needs pyspark ({err}); {INSTALL_HINT}") from None
    java_home = os.environ.get("JAVA_HOME")  # spark-submit uses $JAVA_HOME/bin/java when set, else `java` on PATH
    if java_home and not Path(java_home, "bin", "java").is_file():
        raise JobError(f"--engine spark needs Java 17+: JAVA_HOME={java_home} has no bin/java; fix or unset JAVA_HOME")
    if not java_home and not shutil.which("java"):
        raise JobError("--engine spark needs Java 17+: no `java` on PATH; install a JDK (e.g. openjdk-17-jre-headless) "
                       "or set JAVA_HOME")


def _session(master: str):
    # A loopback address avoids Spark's hostname lookup warnings and keeps local mode off the network.  Workers
    # must run this interpreter (it has newstag, mlflow and the model's libraries); a cluster whose executors
    # keep Python elsewhere says so with spark.pyspark.python, which wins over the environment.
    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    os.environ["PYSPARK_PYTHON"] = os.environ["PYSPARK_DRIVER_PYTHON"] = sys.executable
    from pyspark.sql import SparkSession

    return (SparkSession.builder.master(master).appName("newstag-tag")
            .config("spark.log.level", "ERROR")  # set at startup; setLogLevel would miss the early chatter
            .config("spark.ui.showConsoleProgress", "false")
            .getOrCreate())


def _stage(path: Path, chunk: list[Record]) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    # Bad records travel as their (encodable) error rows; good ones are valid Unicode, the readers made sure.
    rows = [error_row(r) | {"title": None, "text": None, "error": error_row(r)["reason"]} if r.error else
            {"source": error_row(r)["source"], "line": r.line, "id": r.id, "title": r.title, "text": r.text, "error": None}
            for r in chunk]
    schema = pa.schema([("source", pa.string()), ("line", pa.int64()), *((c, pa.string()) for c in _STAGED[2:])])
    atomic_write(path, lambda p: pq.write_table(pa.Table.from_pylist(rows, schema=schema), p))


def _unstage(path: Path) -> list[Record]:
    import pyarrow.parquet as pq

    return [Record(**{k: row[k] for k in _STAGED}) for row in pq.read_table(path).to_pylist()]


_TAGGERS: dict[Spec, Tagger] = {}  # one model load per Python worker, reused by its later tasks


def _tag_staged(index: int, parts: Parts, spec: Spec) -> tuple[float, float]:
    """A Spark task: tag and commit chunk ``index``; returns its segmentation and model seconds."""
    if spec not in _TAGGERS:
        _TAGGERS[spec] = spec.build()
    return parts.tag_and_commit(_TAGGERS[spec], index, _unstage(parts.path(index, "input.parquet")))


class SparkJob(Job):
    """The local job whose chunks are staged while reading and tagged by Spark tasks at the end."""

    def __init__(self, *args, master: str = "local[*]", **kwargs):
        super().__init__(*args, **kwargs)
        self.master = master

    def process(self, index: int, chunk: list[Record]) -> None:
        _stage(self.parts.path(index, "input.parquet"), chunk)
        return None

    def finish(self, pending: list[int]) -> list[dict]:
        if not pending:  # everything committed, or nothing to tag: no JVM needed
            return []
        os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
        warnings.filterwarnings("ignore", message="PySpark does not yet fully support pandas", category=FutureWarning)
        t = self.tagger
        spec = self.worker_spec()
        parts, started = self.parts, time.perf_counter()
        spark = _session(self.master)
        quiet = logging.getLogger("py4j")
        quiet.setLevel(logging.ERROR)
        try:
            seconds = (spark.sparkContext.parallelize(pending, len(pending))
                       .map(lambda index: _tag_staged(index, parts, spec)).collect())
        except Exception as err:  # noqa: BLE001 - Py4J wraps executor deaths in several types
            first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise JobFailed(f"the Spark job failed ({first[:300]}); committed chunks are kept: rerun with --resume") from None
        finally:
            spark.stop()
        t.seconds["segment"] += sum(s for s, _ in seconds)
        t.seconds["model"] += time.perf_counter() - started  # wall time of the Spark phase, start-up included
        return [self.parts.stats(i) for i in pending]
