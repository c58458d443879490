"""`newstag tag --engine spark` gives the local engine's rows, errors and exit code on the same dump."""

import json
import os
import shutil
from pathlib import Path

import pandas as pd
import pytest
from conftest import last_json, run_cli

pytest.importorskip("pyspark", reason="pyspark is not installed (pip install -e .[spark])")
# Where spark-submit looks for Java: $JAVA_HOME/bin/java when JAVA_HOME is set, else `java` on PATH.
JAVA = (Path(os.environ["JAVA_HOME"], "bin", "java").is_file() if os.environ.get("JAVA_HOME")
        else shutil.which("java") is not None)
pytestmark = [pytest.mark.spark, pytest.mark.slow, pytest.mark.skipif(not JAVA, reason="no Java (java on PATH or JAVA_HOME)")]

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


def test_spark_engine_matches_local(tmp_path, trained):
    src = tmp_path / "dump.jsonl"
    dump(src)
    runs = {}
    for name, extra in [("local.jsonl", []), ("spark.jsonl", ["--engine", "spark", "--spark-master", "local[2]"]),
                        ("spark.parquet", ["--engine", "spark", "--spark-master", "local[2]", "--chunk-size", "3"])]:
        proc = run_cli("tag", src, "-o", tmp_path / name, "--model", MODEL, *extra, timeout=300)
        assert proc.returncode == 3, proc.stderr  # finished, skipped records
        assert "Traceback" not in proc.stderr
        runs[name] = last_json(proc.stdout)

    local = pd.read_json(tmp_path / "local.jsonl", lines=True, dtype={"model_version": str})
    assert len(local) > 12 and set(local["article_id"]) == {f"n{i:02d}" for i in range(12)}
    key = ["article_id", "sentence_index"]
    for name in ("spark.jsonl", "spark.parquet"):
        out = tmp_path / name
        rows = (pd.read_json(out, lines=True, dtype={"model_version": str}) if out.suffix == ".jsonl"
                else pd.read_parquet(out))
        assert list(rows.columns) == list(local.columns), name
        # Written in input order already; compare after sorting anyway so a failure shows the real difference.
        assert rows[key].values.tolist() == local[key].values.tolist(), name
        pd.testing.assert_frame_equal(rows.sort_values(key, ignore_index=True), local.sort_values(key, ignore_index=True),
                                      check_dtype=False, check_exact=False, rtol=0, atol=1e-9, obj=name)
        assert errors(tmp_path / f"{name}.errors.jsonl") == errors(tmp_path / "local.jsonl.errors.jsonl"), name
        summary = json.loads((tmp_path / f"{name}.summary.json").read_text())
        for field in ("articles_read", "articles_tagged", "skipped", "sentences", "labels"):
            assert summary[field] == runs[name][field] == runs["local.jsonl"][field], (name, field)
        assert not list(tmp_path.glob(f"{name}.spark-*")), "temporary Spark folder left behind"
    assert [e[1:3] for e in errors(tmp_path / "local.jsonl.errors.jsonl")] == [(6, None), (11, "empty")]


def test_spark_engine_refuses_resume(tmp_path, trained):
    src = tmp_path / "dump.jsonl"
    dump(src)
    proc = run_cli("tag", src, "-o", tmp_path / "o.jsonl", "--model", MODEL, "--engine", "spark", "--resume")
    assert proc.returncode == 2 and "--resume is not supported with --engine spark" in proc.stderr
    assert "Traceback" not in proc.stderr
