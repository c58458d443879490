"""Batch tagging as production tooling: kill -9 and resume, every kind of bad record, Parquet and JSONL output."""

import gzip
import json
import os
import random
import signal
import subprocess
import time

import pandas as pd
import pytest
from conftest import BIN, TINY, last_json, run_cli

SENTENCES = pd.read_json(TINY, lines=True)["text"].tolist()
MODEL = "models:/newstag-test@champion"


def make_dump(path, n, seed=0):
    rng = random.Random(seed)
    with open(path, "w", encoding="utf-8") as fh:
        for i in range(n):
            text = " ".join(rng.sample(SENTENCES, rng.randint(2, 6)))
            fh.write(json.dumps({"id": f"art-{i:05d}", "title": f"Story {i}", "text": text}) + "\n")


def sorted_rows(path):
    frame = pd.read_json(path, lines=True) if str(path).endswith(".jsonl") else pd.read_parquet(path)
    return frame.sort_values(["article_id", "sentence_index"]).reset_index(drop=True)


@pytest.mark.slow
@pytest.mark.parametrize("fmt", ["jsonl", "parquet"])
def test_kill_9_then_resume_equals_uninterrupted(tmp_path, trained, fmt):
    dump = tmp_path / "dump.jsonl"
    make_dump(dump, 1500)
    reference = tmp_path / f"ref.{fmt}"
    run_cli("tag", dump, "-o", reference, "--model", MODEL, "--chunk-size", "25", check=True)

    out = tmp_path / f"out.{fmt}"
    parts = tmp_path / f"out.{fmt}.parts"
    proc = subprocess.Popen([str(BIN / "newstag"), "tag", str(dump), "-o", str(out), "--model", MODEL,
                             "--chunk-size", "25"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while not list(parts.glob(f"chunk-*.{fmt}")) and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    time.sleep(random.Random(fmt).uniform(0.0, 0.6))
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert parts.exists() and not out.exists(), "the job finished before it could be killed; make the dump larger"
    committed = len(list(parts.glob(f"chunk-*.{fmt}")))
    assert 0 < committed < 60

    again = run_cli("tag", dump, "-o", out, "--model", MODEL, "--chunk-size", "25")
    assert again.returncode == 2 and "--resume" in again.stderr  # refuses to clobber an interrupted job

    resumed = run_cli("tag", dump, "-o", out, "--model", MODEL, "--chunk-size", "25", "--resume", check=True)
    summary = last_json(resumed.stdout)
    assert summary["articles_read"] == summary["articles_tagged"] == 1500
    assert not parts.exists()
    pd.testing.assert_frame_equal(sorted_rows(out), sorted_rows(reference))


def test_resume_refuses_a_different_job(tmp_path, trained):
    dump = tmp_path / "dump.jsonl"
    make_dump(dump, 20)
    out = tmp_path / "out.jsonl"
    (tmp_path / "out.jsonl.parts").mkdir()
    (tmp_path / "out.jsonl.parts" / "manifest.json").write_text(json.dumps({"inputs": ["/elsewhere"], "chunk_size": 7}))
    proc = run_cli("tag", dump, "-o", out, "--model", MODEL, "--resume")
    assert proc.returncode == 2 and "chunk_size" in proc.stderr and "inputs" in proc.stderr


def test_every_kind_of_bad_record_is_listed_and_good_ones_tagged(tmp_path, trained):
    d = tmp_path / "in"
    d.mkdir()
    good = [{"id": f"g{i}", "text": SENTENCES[i] + " " + SENTENCES[i + 1]} for i in range(6)]
    lines = [
        json.dumps(good[0]),
        "{not json",
        json.dumps({"id": "no-text"}),
        json.dumps({"id": "empty", "text": "   "}),
        json.dumps({"id": "number", "text": 42}),
        json.dumps({"text": "No id here."}),
        json.dumps({"id": "huge", "text": "Word. " * 50_000}),
        json.dumps(good[1]),
        json.dumps({"id": "g0", "text": "A duplicate id."}),
        "[1, 2, 3]",
    ]
    (d / "a.jsonl").write_text("\n".join(lines) + "\n")
    (d / "b.jsonl").write_bytes(json.dumps(good[2]).encode() + b"\n" + b'{"id": "latin", "text": "caf\xe9"}\n')
    blob = gzip.compress(("\n".join(json.dumps(g) for g in good[3:5]) + "\n").encode() * 200)
    (d / "c.jsonl.gz").write_bytes(blob[: len(blob) - 20])  # corrupt gzip tail
    (d / "d.parquet").write_bytes(b"PAR1 this is not parquet")
    pd.DataFrame([good[5]]).to_csv(d / "e.csv", index=False)
    out = tmp_path / "out.jsonl"
    proc = run_cli("tag", d, tmp_path / "missing.jsonl", "-o", out, "--model", MODEL, "--max-chars", "100000")
    assert proc.returncode == 3, proc.stderr
    errors = [json.loads(l) for l in (tmp_path / "out.jsonl.errors.jsonl").read_text().splitlines()]
    reasons = {(os.path.basename(e["source"]), e["line"]): e["reason"] for e in errors}
    assert reasons[("a.jsonl", 2)].startswith("invalid JSON")
    assert reasons[("a.jsonl", 3)] == "missing text"
    assert reasons[("a.jsonl", 4)] == "empty text"
    assert reasons[("a.jsonl", 5)] == "text is int, not a string"
    assert reasons[("a.jsonl", 6)] == "missing id"
    assert "over the limit" in reasons[("a.jsonl", 7)]
    assert reasons[("a.jsonl", 9)].startswith("duplicate id")
    assert reasons[("a.jsonl", 10)].startswith("not a JSON object")
    assert reasons[("b.jsonl", 2)].startswith("not UTF-8")
    assert any(k[0] == "c.jsonl.gz" and "unreadable" in v for k, v in reasons.items())
    assert any(k[0] == "d.parquet" for k in reasons)
    assert any(k[0] == "missing.jsonl" and v == "no such file" for k, v in reasons.items())
    rows = pd.read_json(out, lines=True)
    tagged = set(rows["article_id"])
    assert {"g0", "g1", "g2", "g3", "g4", "g5"} <= tagged
    s = last_json(proc.stdout)
    assert s["articles_read"] == s["articles_tagged"] + s["skipped"]
    assert s["skipped"] == len(errors)
    assert json.loads((tmp_path / "out.jsonl.summary.json").read_text())["skipped"] == len(errors)


@pytest.mark.parametrize("fmt", ["jsonl", "parquet"])
def test_chunks_without_sentences_keep_the_schema(tmp_path, trained, fmt):
    """A chunk of only bad records or only page furniture yields no rows, and must not break the job or the merge."""
    dump = tmp_path / "d.jsonl"
    dump.write_text("\n".join([json.dumps({"id": "bad", "text": ""}), json.dumps({"id": "furniture", "text": "Source link"}),
                               json.dumps({"id": "good", "text": SENTENCES[0]})]) + "\n")
    out = tmp_path / f"o.{fmt}"
    proc = run_cli("tag", dump, "-o", out, "--model", MODEL, "--chunk-size", "1")
    assert proc.returncode == 3, proc.stderr
    rows = sorted_rows(out)
    assert list(rows["article_id"]) == ["good"]


class FailingModel:
    """The real model, except that it raises on, or returns a NaN score for, sentences holding a marker."""

    def __init__(self, model, always=False):
        self.model, self.always = model, always

    def predict(self, frame):
        if self.always or frame["text"].str.contains("RAISE").any():
            raise ValueError("model cannot handle this")
        out = self.model.predict(frame)
        out.loc[frame["text"].str.contains("NANSCORE").to_numpy(), "score"] = float("nan")
        return out

    def __getattr__(self, name):
        return getattr(self.model, name)


def test_a_record_the_model_or_the_writer_fails_on_fails_alone(tmp_path, trained):
    """Bisection finds the two bad records of a 40-record chunk; the other 38 are tagged as if they were alone."""
    from infer.job import Job
    from infer.tagger import Tagger

    rows = [{"id": f"a{i:02d}", "text": f"{SENTENCES[i % len(SENTENCES)]} {SENTENCES[(i + 3) % len(SENTENCES)]}"}
            for i in range(40)]
    bad = [dict(rows[7], text="Police said the RAISE plan failed."), dict(rows[30], text="The NANSCORE mayor said so.")]
    (tmp_path / "clean.jsonl").write_text("".join(json.dumps(r) + "\n" for i, r in enumerate(rows) if i not in (7, 30)))
    (tmp_path / "dump.jsonl").write_text("".join(json.dumps({7: bad[0], 30: bad[1]}.get(i, r)) + "\n" for i, r in enumerate(rows)))
    tagger = Tagger(MODEL)
    tagger.model = FailingModel(tagger.model)
    summary = Job([str(tmp_path / "dump.jsonl")], str(tmp_path / "out.jsonl"), tagger, chunk_size=40).run()
    Job([str(tmp_path / "clean.jsonl")], str(tmp_path / "clean-out.jsonl"), tagger, chunk_size=40).run()
    errors = [json.loads(l) for l in (tmp_path / "out.jsonl.errors.jsonl").read_text().splitlines()]
    assert [(e["line"], e["id"], e["reason"]) for e in errors] == [
        (8, "a07", "tagging failed (ValueError: model cannot handle this)"),
        (31, "a30", "writing failed (ValueError: Out of range float values are not JSON compliant)")]
    assert (summary.articles_read, summary.articles_tagged, summary.skipped) == (40, 38, 2)
    assert (tmp_path / "out.jsonl").read_text() == (tmp_path / "clean-out.jsonl").read_text()


def test_duplicate_ids_are_found_on_disk_with_flat_memory(tmp_path):
    """Python memory while reading does not grow with the number of ids (a dict of ids would: ~5 MB here)."""
    import tracemalloc

    from infer.io import read_records

    def peak(n):
        path = tmp_path / f"{n}.jsonl"
        path.write_text("".join(json.dumps({"id": f"article-{i:08d}", "text": "Police said so."}) + "\n" for i in range(n))
                        + json.dumps({"id": "article-00000000", "text": "Again."}) + "\n")
        tracemalloc.start()
        errors = [r for r in read_records([str(path)]) if r.error]
        top = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        assert [(r.line, r.error) for r in errors] == [(n + 1, f"duplicate id (first at {path}:1)")]
        return top

    small, large = peak(5_000), peak(50_000)
    assert large < small * 1.2 + 200_000, (small, large)


def test_a_broken_model_fails_the_job_instead_of_every_record(tmp_path, trained):
    """Bisection must not turn a model that fails on everything into a dump of "bad records" and exit 3."""
    from infer.job import Job, JobFailed
    from infer.tagger import Tagger

    dump = tmp_path / "d.jsonl"
    make_dump(dump, 6)
    tagger = Tagger(MODEL)
    tagger.model = FailingModel(tagger.model, always=True)
    with pytest.raises(JobFailed, match="fails on every article, a plain sentence included"):
        Job([str(dump)], str(tmp_path / "o.jsonl"), tagger, chunk_size=3).run()
    assert not (tmp_path / "o.jsonl").exists()
