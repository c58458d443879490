"""``newstag tag --engine spark``: the local job's inputs, rows, errors and summary, with the heavy work on Spark.

Reading stays on the driver and reuses :func:`infer.io.read_records`, so validation (bad JSON, empty text,
duplicate ids, ...) cannot drift from the local engine.  Good records are streamed into a staging Parquet file
with a sequence number (bounded memory); Spark range-partitions that by sequence number, segments each article
(``mapInPandas``) and applies the model with ``mlflow.pyfunc.spark_udf``.  Each output partition is a contiguous
range of articles sorted by (sequence, sentence), so the driver streams the part files into ``OUTPUT`` in order
without a global sort, and writes ``OUTPUT.errors.jsonl`` and ``OUTPUT.summary.json`` with the local job's helpers.

Staging and Spark output live in ``OUTPUT.spark-*/`` next to the output: on a cluster that folder must be on a
filesystem every executor sees at the same path, and executors need this package installed.  ``--resume`` is not
offered: Spark retries failed tasks itself, and a rerun redoes the whole dump.
"""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
import sys
import tempfile
import time
import warnings
from collections import Counter
from pathlib import Path

from infer.io import error_row, read_records
from infer.job import JobError, Summary, _atomic_write, _concat, _chunks, _write_jsonl, output_format
from infer.tagger import NEEDS_REVIEW, Tagger

INSTALL_HINT = "install it with `make setup EXTRAS=transformer,dev,spark,ui` or `pip install -e .[spark]`"
_SEQ = "_seq"  # input order of an article; dropped from the output


def _check_environment() -> None:
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


def _session(master: str, partitions: int, batch_size: int):
    # A loopback address avoids Spark's hostname lookup warnings and keeps local mode off the network.  Workers
    # must run this interpreter (it has newstag, mlflow and the model's libraries); a cluster whose executors
    # keep Python elsewhere says so with spark.pyspark.python, which wins over the environment.
    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    os.environ["PYSPARK_PYTHON"] = os.environ["PYSPARK_DRIVER_PYTHON"] = sys.executable
    from pyspark.sql import SparkSession

    return (SparkSession.builder.master(master).appName("newstag-tag")
            .config("spark.log.level", "ERROR")  # set at startup; setLogLevel would miss the early chatter
            .config("spark.ui.showConsoleProgress", "false")
            .config("spark.sql.shuffle.partitions", str(partitions))
            # AQE would merge our small-in-bytes partitions into one task and serialise the model work.
            .config("spark.sql.adaptive.coalescePartitions.enabled", "false")
            # Rows per Arrow batch = sentences per model call, as --batch-size does for the local engine.
            .config("spark.sql.execution.arrow.maxRecordsPerBatch", str(batch_size))
            .getOrCreate())


def _stage(inputs: list[str], max_chars: int, chunk_size: int, staging: Path, errors_dir: Path, summary: Summary) -> int:
    """Good records -> one Parquet file (a row group a chunk); bad ones -> per-chunk error files.  Returns the count."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = pa.schema([(_SEQ, pa.int64()), ("id", pa.string()), ("title", pa.string()), ("text", pa.string())])
    good = 0
    with pq.ParquetWriter(staging, schema) as writer:
        for index, chunk in enumerate(_chunks(read_records(inputs, max_chars), chunk_size)):
            ok = [r for r in chunk if r.error is None]
            errors = [error_row(r) for r in chunk if r.error]
            writer.write_table(pa.table({_SEQ: range(good, good + len(ok)), "id": [r.id for r in ok],
                                         "title": [r.title for r in ok], "text": [r.text for r in ok]}, schema=schema))
            _write_jsonl(errors, errors_dir / f"{index:06d}.jsonl")
            good += len(ok)
            summary.articles_read += len(chunk)
            summary.skipped += len(errors)
    summary.articles_tagged = good
    return good


def _segment_batches(batches, backend: str, seconds):
    """mapInPandas body: one row a sentence, exactly as Tagger.tag builds them; time spent added to ``seconds``."""
    import pandas as pd

    from infer.segment import model_text, segment

    for pdf in batches:
        start, rows = time.perf_counter(), []
        for seq, rid, title, text in zip(pdf[_SEQ], pdf["id"], pdf["title"], pdf["text"]):
            title = title if isinstance(title, str) else None
            for index, span in enumerate(segment(text, title, backend)):
                rows.append((seq, rid, index, span.start, span.end, span.text, model_text(span.text)))
        seconds.add(time.perf_counter() - start)
        yield pd.DataFrame(rows, columns=[_SEQ, "article_id", "sentence_index", "start", "end", "text", "model_text"])


def _tag(spark, args, tagger: Tagger, staging: Path, out_dir: Path, good: int) -> float:
    """Segment and tag on Spark into Parquet part files; returns the segmentation seconds summed over tasks."""
    import mlflow.pyfunc
    from pyspark.sql import functions as F
    from pyspark.sql.types import DoubleType, LongType, StringType, StructField, StructType

    probs = [f"prob_{label}" for label in tagger.labels]
    result = StructType([StructField("label", StringType()), StructField("score", DoubleType()),
                         *(StructField(p, DoubleType()) for p in probs)])
    sentences = StructType([StructField(_SEQ, LongType()), StructField("article_id", StringType()),
                            *(StructField(c, LongType()) for c in ("sentence_index", "start", "end")),
                            StructField("text", StringType()), StructField("model_text", StringType())])
    # model_config is how the pyfunc picks its runtime at load, as Tagger passes it to load_model.  mlflow's
    # advice against env_manager="local" is muted: the workers run this very interpreter.
    quiet = logging.getLogger("mlflow.pyfunc")
    level = quiet.level
    quiet.setLevel(logging.ERROR)
    try:
        predict = mlflow.pyfunc.spark_udf(spark, args.model, result_type=result, env_manager="local",
                                          model_config={"runtime": args.runtime} if args.runtime else None)
    finally:
        quiet.setLevel(level)
    # Contiguous article ranges, at most --chunk-size articles a task but at least one task a core.
    parts = max(1, min(good, max(spark.sparkContext.defaultParallelism, math.ceil(good / args.chunk_size))))
    backend, seconds = args.segmenter, spark.sparkContext.accumulator(0.0)
    frame = (spark.read.parquet(staging.as_uri()).repartitionByRange(parts, _SEQ)
             .mapInPandas(lambda batches: _segment_batches(batches, backend, seconds), sentences)
             # A struct named `text`: the pyfunc reads a DataFrame column `text`, with or without a signature.
             .withColumn("_p", predict(F.struct(F.col("model_text").alias("text")))))
    label = F.col("_p.label")
    if tagger.min_score is not None:  # same rule and threshold (flag, else the model's own) as Tagger.predict
        label = F.when(F.col("_p.score") < tagger.min_score, F.lit(NEEDS_REVIEW)).otherwise(label)
    (frame.select(_SEQ, "article_id", "sentence_index", "start", "end", "text", label.alias("label"),
                  F.col("_p.score").alias("score"), *(F.col(f"_p.{p}").alias(p) for p in probs))
     .sortWithinPartitions(_SEQ, "sentence_index")
     .write.parquet(out_dir.as_uri()))
    return seconds.value


def _ordered_parts(out_dir: Path) -> list[Path]:
    """Non-empty part files by their first row: partitions are disjoint, sorted ranges (file names are not trusted)."""
    import pyarrow.parquet as pq

    firsts = []
    for path in out_dir.glob("part-*.parquet"):
        pf = pq.ParquetFile(path)
        if pf.metadata.num_rows:
            first = pf.read_row_group(0, columns=[_SEQ, "sentence_index"]).slice(0, 1).to_pylist()[0]
            firsts.append((first[_SEQ], first["sentence_index"], path))
    return [path for *_, path in sorted(firsts)]


def _merge(parts: list[Path], tagger: Tagger, fmt: str, target: Path, summary: Summary) -> None:
    """Stream Spark's part files into one file with Tagger's columns; rows go through pandas as in the local job."""
    import pandas as pd
    import pyarrow as pa
    import pyarrow.parquet as pq

    labels: Counter = Counter()

    def frames():
        for path in parts:
            for batch in pq.ParquetFile(path).iter_batches(batch_size=10_000):
                frame = batch.to_pandas()
                frame["model_uri"], frame["model_version"] = tagger.model_uri, tagger.version
                labels.update(frame["label"])
                summary.sentences += len(frame)
                yield frame[tagger.columns]

    def write(tmp: Path) -> None:
        if fmt == "jsonl":
            _write_jsonl((row for frame in frames() for row in frame.to_dict("records")), tmp)
            return
        writer = None
        for frame in frames():
            table = pa.Table.from_pandas(frame, preserve_index=False)
            writer = writer or pq.ParquetWriter(tmp, table.schema)
            writer.write_table(table.cast(writer.schema))
        if writer is None:  # no sentences: still a valid, empty file, as the local job leaves
            pd.DataFrame(columns=tagger.columns).to_parquet(tmp, index=False)
        else:
            writer.close()

    _atomic_write(target, write)
    summary.labels = {k: int(v) for k, v in labels.items()}


def run_spark(args) -> Summary:
    """Tag ``args.inputs`` into ``args.output`` on Spark (``args.spark_master``, default ``local[*]``).

    Segmentation and the model run pipelined in the same Spark tasks, so the summary's ``model_seconds`` is the
    wall time of the whole Spark phase (start-up included) and ``segment_seconds`` the segmentation time summed
    over tasks (part of that wall time, and over it when tasks run in parallel).
    """
    if args.resume:
        raise JobError("--resume is not supported with --engine spark; rerun without it (Spark retries failed tasks, "
                       "and a rerun redoes the whole dump), or use --engine local --resume")
    output = Path(args.output)
    fmt = output_format(output, args.format)
    _check_environment()
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # spark_udf copies the model with bars
    warnings.filterwarnings("ignore", message="PySpark does not yet fully support pandas", category=FutureWarning)
    # Loaded once on the driver for the labels, output columns and registry version, and to fail fast on a bad URI.
    tagger = Tagger(args.model, runtime=args.runtime, segmenter=args.segmenter, min_score=args.min_score)
    output.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=output.name + ".spark-", dir=output.parent)).resolve()  # Spark wants URIs
    summary, started, spark = Summary(), time.perf_counter(), None
    try:
        (work / "errors").mkdir()
        good = _stage(args.inputs, args.max_chars, args.chunk_size, work / "staging.parquet", work / "errors", summary)
        t0 = time.perf_counter()
        summary.read_seconds = t0 - started
        parts: list[Path] = []
        if good:  # a dump of only bad records needs no JVM
            spark = _session(args.spark_master, min(good, 8), args.batch_size)
            summary.segment_seconds = _tag(spark, args, tagger, work / "staging.parquet", work / "tagged", good)
            parts = _ordered_parts(work / "tagged")
        t1 = time.perf_counter()
        summary.model_seconds = t1 - t0
        _merge(parts, tagger, fmt, output, summary)
        errors = output.with_name(output.name + ".errors.jsonl")
        _atomic_write(errors, lambda tmp: _concat(sorted((work / "errors").glob("*.jsonl")), tmp))
        summary.write_seconds = time.perf_counter() - t1
        summary.seconds = time.perf_counter() - started
        _atomic_write(output.with_name(output.name + ".summary.json"),
                      lambda p: p.write_text(json.dumps(summary.as_dict(), indent=2)))
        return summary
    finally:
        if spark is not None:
            spark.stop()
        shutil.rmtree(work, ignore_errors=True)
