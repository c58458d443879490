"""`newstag tag --engine spark` gives the local engine's rows, errors and exit code on the same dump, isolates a
record that fails inside an executor, and resumes a failed Spark job from its committed chunks."""

import json
import os
import shutil
from importlib.util import find_spec
from pathlib import Path

import pandas as pd
import pytest
from conftest import last_json, run_cli

# Where spark-submit looks for Java: $JAVA_HOME/bin/java when JAVA_HOME is set, else `java` on PATH.
JAVA = (Path(os.environ["JAVA_HOME"], "bin", "java").is_file() if os.environ.get("JAVA_HOME")
        else shutil.which("java") is not None)
pytestmark = [pytest.mark.spark, pytest.mark.slow,
              pytest.mark.skipif(find_spec("pyspark") is None, reason="pyspark is not installed (pip install -e .[spark])"),
              pytest.mark.skipif(not JAVA, reason="no Java (java on PATH or JAVA_HOME; make system-deps)")]

MODEL = "models:/newstag-test@champion"
SENTENCES = [
    "The river burst its banks on Sunday, flooding more than 200 homes.",
    "“We lost everything in an hour,” said Maria Okafor, a shopkeeper.",
    "The ministry denied the report in a statement on Monday.",
    "Residents claimed the dam had been leaking for weeks.",
    "Police said two people died and three were missing.",
    "The striker is reportedly close to a deal with the club.",
    "Officials have not confirmed the figures.",
]


def dump(path):
    """Twelve articles with titles, bylines and furniture, plus an invalid-JSON line and an empty text."""
    lines = []
    for i in range(12):
        body = " ".join(SENTENCES[(i + k) % len(SENTENCES)] for k in range(1 + i % 4))
        text = f"Headline number {i}\nBy Jo Smith\n{body}\nAdvertisement\n{SENTENCES[i % len(SENTENCES)]}"
        row = {"id": f"n{i:02d}", "text": text, **({"title": f"Headline number {i}"} if i % 2 else {})}
        lines.append(json.dumps(row, ensure_ascii=False))
        if i == 4:
            lines.append('{"id": "broken", "text": ')
        if i == 8:
            lines.append(json.dumps({"id": "empty", "text": "  "}))
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def errors(path):
    return [(e["source"], e["line"], e["id"], e["reason"]) for e in map(json.loads, path.read_text().splitlines())]


FAIL = {"NEWSTAG_FAIL_ID": "n05"}  # tagging raises whenever article n05 is in the batch, in the executor too
SPARK = ["--engine", "spark", "--spark-master", "local[2]"]


@pytest.fixture(scope="module")
def local(tmp_path_factory, trained):
    d = tmp_path_factory.mktemp("local")
    dump(d / "dump.jsonl")
    proc = run_cli("tag", d / "dump.jsonl", "-o", d / "local.jsonl", "--model", MODEL, env=FAIL)
    assert proc.returncode == 3, proc.stderr
    return d, last_json(proc.stdout)


def test_spark_engine_matches_local(local):
    d, local_summary = local
    src = d / "dump.jsonl"
    runs = {}
    for name, extra in [("spark.jsonl", SPARK), ("spark.parquet", [*SPARK, "--chunk-size", "3"])]:
        proc = run_cli("tag", src, "-o", d / name, "--model", MODEL, *extra, env=FAIL, timeout=300)
        assert proc.returncode == 3, proc.stderr  # finished, skipped records
        assert "Traceback" not in proc.stderr
        runs[name] = last_json(proc.stdout)

    local_rows = pd.read_json(d / "local.jsonl", lines=True, dtype={"model_version": str})
    assert len(local_rows) > 12 and set(local_rows["article_id"]) == {f"n{i:02d}" for i in range(12)} - {"n05"}
    key = ["article_id", "sentence_index"]
    for name in ("spark.jsonl", "spark.parquet"):
        out = d / name
        rows = (pd.read_json(out, lines=True, dtype={"model_version": str}) if out.suffix == ".jsonl"
                else pd.read_parquet(out))
        assert list(rows.columns) == list(local_rows.columns), name
        assert rows[key].values.tolist() == local_rows[key].values.tolist(), name
        pd.testing.assert_frame_equal(rows, local_rows, check_dtype=False, check_exact=False, rtol=0, atol=1e-9, obj=name)
        assert errors(d / f"{name}.errors.jsonl") == errors(d / "local.jsonl.errors.jsonl"), name
        summary = json.loads((d / f"{name}.summary.json").read_text())
        for field in ("articles_read", "articles_tagged", "skipped", "sentences", "labels"):
            assert summary[field] == runs[name][field] == local_summary[field], (name, field)
        assert not (d / f"{name}.parts").exists(), "parts folder left behind"
    assert [e[1:] for e in errors(d / "local.jsonl.errors.jsonl")] == [
        (6, None, errors(d / "local.jsonl.errors.jsonl")[0][3]), (7, "n05", "tagging failed (RuntimeError: injected failure "
                                                                 "for article n05)"), (11, "empty", "empty text")]


def test_spark_resume_after_a_failed_or_killed_job_skips_committed_chunks(local, tmp_path):
    """An executor killed after committing chunk 1 fails the job (exit 1, parts kept); the resumes run with the kills
    still armed, so they get through only because committed chunks are skipped, not redone."""
    d, _ = local
    out = tmp_path / "spark.jsonl"
    crash = {**FAIL, "NEWSTAG_CRASH_AT": "chunk-1"}
    failed = run_cli("tag", d / "dump.jsonl", "-o", out, "--model", MODEL, *SPARK, "--chunk-size", "3", env=crash, timeout=300)
    assert failed.returncode == 1 and "rerun with --resume" in failed.stderr and "Traceback" not in failed.stderr
    assert (tmp_path / "spark.jsonl.parts" / "chunk-000001.jsonl").exists() and not out.exists()
    # Killed: the driver dies after the Spark phase; chunk 1 redone would have failed the job (exit 1) first.
    killed = run_cli("tag", d / "dump.jsonl", "-o", out, "--model", MODEL, *SPARK, "--chunk-size", "3", "--resume",
                     env={**crash, "NEWSTAG_CRASH_AT": "chunk-1,merge"}, timeout=300)
    assert killed.returncode == -9, killed.stderr
    every_chunk = ",".join(f"chunk-{i}" for i in range(5))  # all committed now: none may be tagged again
    resumed = run_cli("tag", d / "dump.jsonl", "-o", out, "--model", MODEL, *SPARK, "--chunk-size", "3", "--resume",
                      env={**crash, "NEWSTAG_CRASH_AT": every_chunk}, timeout=300)
    assert resumed.returncode == 3, resumed.stderr
    assert out.read_text() == (d / "local.jsonl").read_text()
    assert errors(tmp_path / "spark.jsonl.errors.jsonl") == errors(d / "local.jsonl.errors.jsonl")
