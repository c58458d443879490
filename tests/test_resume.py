"""A resume is exact or refuses: crash points, changed inputs and options, damaged parts, fsync before rename.

Crashes are real ``kill -9``s of the CLI process, placed deterministically by the ``NEWSTAG_CRASH_AT`` hook.
"""

import json
import os
import shutil

import pandas as pd
import pytest
from conftest import TINY, last_json, run_cli

from infer.job import Job, JobError
from infer.tagger import Tagger

S = pd.read_json(TINY, lines=True)["text"].tolist()
MODEL = "models:/newstag-test@champion"
CHUNK = "10"


def make_folder(d, files=4, per_file=30):
    """Four files of short articles, with an invalid line and an id repeated across files."""
    d.mkdir()
    for f in range(files):
        lines = [json.dumps({"id": f"f{f}-{i:03d}", "text": f"{S[(f + i) % len(S)]} {S[(f * 7 + i) % len(S)]}"})
                 for i in range(per_file)]
        if f == 1:
            lines[5] = "{broken"
            lines[9] = json.dumps({"id": "f0-003", "text": S[0]})
        (d / f"{chr(97 + f)}.jsonl").write_text("\n".join(lines) + "\n")
    return d


def tag(src, out, *extra, crash=None, timeout=600):
    """Run from the folder above, so errors name sources the same way in every test (``in/b.jsonl``).  One process
    unless `extra` says ``--workers N`` (the last flag wins): crash points fall in the process that reaches them."""
    assert out.parent == src.parent
    return run_cli("tag", src.name, "-o", out.name, "--model", MODEL, "--chunk-size", CHUNK, "--workers", "1", *extra,
                   cwd=src.parent, env={"NEWSTAG_CRASH_AT": crash} if crash else None, timeout=timeout)


def outputs(out):
    rows = pd.read_json(out, lines=True, dtype={"article_id": str, "model_version": str})
    errors = out.with_name(out.name + ".errors.jsonl").read_text()
    summary = json.loads(out.with_name(out.name + ".summary.json").read_text())
    return rows, errors, {k: summary[k] for k in ("articles_read", "articles_tagged", "skipped", "sentences", "labels")}


@pytest.fixture(scope="module")
def reference(tmp_path_factory, trained):
    d = tmp_path_factory.mktemp("reference")
    src = make_folder(d / "in")
    out = d / "ref.jsonl"
    assert tag(src, out).returncode == 3
    return outputs(out)


def assert_same(out, reference):
    rows, errors, summary = outputs(out)
    pd.testing.assert_frame_equal(rows, reference[0])
    assert errors == reference[1]
    assert summary == reference[2]
    assert summary["articles_read"] == summary["articles_tagged"] + summary["skipped"]


@pytest.mark.slow
def test_kill_9_at_ten_points_then_resume_equals_uninterrupted(tmp_path, reference):
    src = make_folder(tmp_path / "in")
    out = tmp_path / "out.jsonl"
    points = ["manifest", "commit-0", "chunk-0", "chunk-2", "commit-4", "chunk-5", "chunk-8", "commit-10", "merge", "cleanup"]
    for n, point in enumerate(points):
        proc = tag(src, out, *(["--resume"] if n else []), crash=point)
        assert proc.returncode == -9, (point, proc.stderr)
        assert (tmp_path / "out.jsonl.parts").exists(), point
    proc = tag(src, out, "--resume")
    assert proc.returncode == 3, proc.stderr
    assert not (tmp_path / "out.jsonl.parts").exists() and not (tmp_path / "out.jsonl.parts.done").exists()
    assert_same(out, reference)


def test_resume_after_inputs_changed_refuses_and_names_them(tmp_path, trained):
    """The tracker's case: kill, append an article to one file, add a new file, resume: exit 2, not duplicates."""
    src = make_folder(tmp_path / "in")
    out = tmp_path / "out.jsonl"
    assert tag(src, out, crash="chunk-2").returncode == -9
    with open(src / "b.jsonl", "a") as fh:
        fh.write(json.dumps({"id": "late", "text": S[3]}) + "\n")
    (src / "e.jsonl").write_text(json.dumps({"id": "new", "text": S[4]}) + "\n")
    proc = tag(src, out, "--resume")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "b.jsonl changed (mtime_ns, sha256, size)" in proc.stderr and "e.jsonl was added" in proc.stderr
    assert not out.exists()


def test_resume_with_other_options_refuses_and_names_them(tmp_path, trained):
    src = make_folder(tmp_path / "in")
    out = tmp_path / "out.jsonl"
    assert tag(src, out, crash="chunk-1").returncode == -9
    proc = tag(src, out, "--resume", "--min-score", "0.9")
    assert proc.returncode == 2 and "min_score was None, now 0.9" in proc.stderr and "Traceback" not in proc.stderr
    tagger = Tagger(MODEL)
    for kwargs, key in [({"chunk_size": 11}, "chunk_size"), ({"max_chars": 5000}, "max_chars"),
                        ({"runtime": "onnx"}, "runtime"), ({"inputs": [str(src / "a.jsonl")]}, "inputs")]:
        job = Job(kwargs.pop("inputs", [str(src)]), str(out), tagger, resume=True, chunk_size=kwargs.pop("chunk_size", 10),
                  **kwargs)
        with pytest.raises(JobError, match=f"{key} was"):
            job.run()
    for other, key in [(Tagger(MODEL, segmenter="blingfire"), "segmenter"), (Tagger("models:/newstag-test/1"), "model_uri")]:
        with pytest.raises(JobError, match=f"{key} was"):
            Job([str(src)], str(out), other, resume=True, chunk_size=10).run()


def test_missing_or_corrupt_manifest_with_parts_refuses(tmp_path, trained):
    src = make_folder(tmp_path / "in")
    out = tmp_path / "out.jsonl"
    assert tag(src, out, crash="chunk-1").returncode == -9
    manifest = tmp_path / "out.jsonl.parts" / "manifest.json"
    manifest.write_text('{"inputs": [')
    proc = tag(src, out, "--resume")
    assert proc.returncode == 2 and "manifest.json is missing or corrupt" in proc.stderr and "Traceback" not in proc.stderr
    manifest.unlink()
    with pytest.raises(JobError, match="missing or corrupt"):
        Job([str(src)], str(out), Tagger(MODEL), resume=True, chunk_size=10).run()


def test_torn_or_damaged_chunk_is_redone(tmp_path, reference):
    """A chunk whose rows file does not match its recorded size (a disk that lied about fsync) is tagged again."""
    src = make_folder(tmp_path / "in")
    out = tmp_path / "out.jsonl"
    assert tag(src, out, crash="chunk-3").returncode == -9
    part = tmp_path / "out.jsonl.parts" / "chunk-000002.jsonl"
    part.write_bytes(part.read_bytes()[:-40])
    (tmp_path / "out.jsonl.parts" / "chunk-000001.stats.json").unlink()
    assert tag(src, out, "--resume").returncode == 3
    assert_same(out, reference)


def test_parts_and_manifest_count_only_once_fsynced(tmp_path, trained, monkeypatch):
    """Every file is fsynced before it is renamed into place, and its folder after."""
    src = make_folder(tmp_path / "in", files=2, per_file=15)
    log = []
    fsync, replace = os.fsync, os.replace

    def logged_fsync(fd):
        log.append(("fsync", os.readlink(f"/proc/self/fd/{fd}")))
        fsync(fd)

    def logged_replace(a, b):
        log.append(("replace", str(a), str(b)))
        replace(a, b)

    monkeypatch.setattr(os, "fsync", logged_fsync)
    monkeypatch.setattr(os, "replace", logged_replace)
    Job([str(src)], str(tmp_path / "out.parquet"), Tagger(MODEL), chunk_size=10).run()
    renames = [(i, e[1], e[2]) for i, e in enumerate(log) if e[0] == "replace"]
    targets = {os.path.basename(b) for _, _, b in renames}
    assert {"manifest.json", "chunk-000000.parquet", "chunk-000002.errors.jsonl", "chunk-000001.stats.json",
            "out.parquet", "out.parquet.errors.jsonl", "out.parquet.summary.json"} <= targets
    for i, tmp, target in renames:
        assert ("fsync", tmp) in log[:i], f"{target} renamed before its bytes were fsynced"
        assert ("fsync", os.path.dirname(target)) in log[i + 1:], f"{target}: folder not fsynced after the rename"


def test_a_finished_job_resumed_again_is_redone_identically(tmp_path, reference):
    src = make_folder(tmp_path / "in")
    out = tmp_path / "out.jsonl"
    assert tag(src, out, crash="cleanup").returncode == -9
    shutil.rmtree(tmp_path / "out.jsonl.parts")  # as if the kill came during the removal
    proc = tag(src, out, "--resume")
    assert proc.returncode == 3 and last_json(proc.stdout)["articles_read"] == 120
    assert_same(out, reference)


def test_workers_give_the_one_process_output(tmp_path, reference):
    src = make_folder(tmp_path / "in")
    out = tmp_path / "out.jsonl"
    proc = tag(src, out, "--workers", "2")
    assert proc.returncode == 3, proc.stderr
    assert "ignored" not in proc.stderr  # no MLflow warning about a model config key the baseline lacks
    assert_same(out, reference)
    assert not (tmp_path / "out.jsonl.parts").exists()


@pytest.mark.slow
def test_a_killed_worker_fails_the_job_and_resume_equals_uninterrupted(tmp_path, reference):
    src = make_folder(tmp_path / "in")
    out = tmp_path / "out.jsonl"
    proc = tag(src, out, "--workers", "2", crash="chunk-3")  # the worker that commits chunk 3 is killed -9
    assert proc.returncode == 1, proc.stderr
    assert "a worker process died" in proc.stderr and "Traceback" not in proc.stderr
    committed = sorted(p.name for p in (tmp_path / "out.jsonl.parts").glob("chunk-*.jsonl"))
    assert "chunk-000003.jsonl" in committed and not out.exists()
    proc = tag(src, out, "--resume", "--workers", "2")
    assert proc.returncode == 3, proc.stderr
    assert_same(out, reference)


@pytest.mark.slow
def test_workers_end_with_a_killed_main_process_and_resume_equals_uninterrupted(tmp_path, reference):
    """The main process is killed with -9 while its workers are alive (idle, before the merge): they must end on
    their own, or they would tag on as orphans and hold the job's output pipes open (this call would time out)."""
    src = make_folder(tmp_path / "in")
    out = tmp_path / "out.jsonl"
    proc = tag(src, out, "--workers", "2", crash="merge", timeout=60)
    assert proc.returncode == -9, proc.stderr
    proc = tag(src, out, "--resume", "--workers", "2")
    assert proc.returncode == 3, proc.stderr
    assert_same(out, reference)
