"""`newstag tag` end to end through the console script, on real files."""

import gzip
import json

import numpy as np
import pandas as pd
from conftest import last_json, run_cli

ARTICLES = [
    {"id": "a1", "title": "Flood hits town", "text": "Flood hits town\nBy Jo Smith\nThe river burst its banks on Sunday. "
     "Police said two people died.\nThe council did not respond to a request for comment.\nSource link"},
    {"id": "a2", "text": "The striker is reportedly close to a deal. “I am happy here,” he said. He scored 23 goals."},
    {"id": "a3", "title": "Quiet day", "text": "Nothing happened in Springfield on Monday."},
]


def write_jsonl(path, rows, opener=open):
    with opener(path, "wt", encoding="utf-8") as fh:
        for row in rows:
            fh.write(json.dumps(row) + "\n")


# Sentences the tiny model (32 training sentences) labels as a reader would, each close to one it was trained on;
# the two plain claims of these articles it reads as official responses, so they are left out.
LABELLED = {
    "Police said two people died.": "attributed_quote",
    "The council did not respond to a request for comment.": "official_response",
    "The striker is reportedly close to a deal.": "unverified",
    "“I am happy here,” he said.": "attributed_quote",
    "He scored 23 goals.": "claim",
}
LABELS = ["claim", "attributed_quote", "unverified", "official_response"]


def check_rows(rows: pd.DataFrame, source: dict):
    """Offsets point at the text, the label is the most probable one, and the sentences of LABELLED have theirs."""
    for _, row in rows.iterrows():
        assert source[row["article_id"]][row["start"] : row["end"]] == row["text"]
    probs = rows[[f"prob_{label}" for label in LABELS]].to_numpy()
    assert np.allclose(probs.sum(axis=1), 1.0) and np.array_equal(rows["score"].to_numpy(), probs.max(axis=1))
    assert rows["label"].tolist() == [LABELS[i] for i in probs.argmax(axis=1)]
    assert {t: label for t, label in zip(rows["text"], rows["label"]) if t in LABELLED} == LABELLED


def test_tag_jsonl_gz_to_jsonl(tmp_path, trained):
    src = tmp_path / "dump.jsonl.gz"
    write_jsonl(src, ARTICLES, gzip.open)
    out = tmp_path / "tags.jsonl"
    proc = run_cli("tag", src, "-o", out, "--model", "models:/newstag-test@champion", check=True)
    summary = last_json(proc.stdout)
    assert summary["articles_tagged"] == 3 and summary["skipped"] == 0
    rows = pd.read_json(out, lines=True, dtype={"model_version": str})
    assert summary["sentences"] == len(rows) == 7
    check_rows(rows, {a["id"]: a["text"] for a in ARTICLES})
    assert list(rows.columns) == ["article_id", "sentence_index", "start", "end", "text", "label", "score",
                                  "prob_claim", "prob_attributed_quote", "prob_unverified", "prob_official_response",
                                  "model_uri", "model_version"]
    assert set(rows["model_version"]) == {"1"} and set(rows["model_uri"]) == {"models:/newstag-test@champion"}
    assert json.loads((tmp_path / "tags.jsonl.summary.json").read_text())["sentences"] == 7


def test_tag_csv_txt_folder_to_parquet(tmp_path, trained):
    folder = tmp_path / "in"
    folder.mkdir()
    pd.DataFrame(ARTICLES[:2]).to_csv(folder / "a.csv", index=False)
    (folder / "b.txt").write_text(ARTICLES[2]["text"])
    (folder / "c.html").write_text("<html><head><title>Quiet</title></head><body><p>The mayor said nothing.</p>"
                                   "<script>var x=1;</script><p>Schools reopened on Monday.</p></body></html>")
    out = tmp_path / "tags.parquet"
    proc = run_cli("tag", folder, "-o", out, "--model", "models:/newstag-test@champion", check=True)
    assert last_json(proc.stdout)["articles_tagged"] == 4
    rows = pd.read_parquet(out)
    assert set(rows["article_id"]) == {"a1", "a2", "b.txt", "c.html"}
    assert rows.loc[rows["article_id"] == "c.html", "text"].tolist() == ["The mayor said nothing.", "Schools reopened on Monday."]
    articles = {a["id"]: a["text"] for a in ARTICLES[:2]} | {"b.txt": ARTICLES[2]["text"]}
    check_rows(rows[rows["article_id"] != "c.html"], articles)


def test_tag_batches_equal_one_at_a_time(tmp_path, trained):
    src = tmp_path / "dump.jsonl"
    write_jsonl(src, ARTICLES)
    big, small = tmp_path / "big.jsonl", tmp_path / "small.jsonl"
    run_cli("tag", src, "-o", big, "--model", "models:/newstag-test@champion", check=True)
    run_cli("tag", src, "-o", small, "--model", "models:/newstag-test@champion", "--batch-size", "1",
            "--chunk-size", "1", check=True)
    pd.testing.assert_frame_equal(pd.read_json(big, lines=True), pd.read_json(small, lines=True))


def test_bad_records_are_listed_and_exit_code_says_so(tmp_path, trained):
    src = tmp_path / "dump.jsonl"
    src.write_text(json.dumps(ARTICLES[0]) + "\n{broken\n" + json.dumps({"id": "x", "text": ""}) + "\n")
    out = tmp_path / "tags.jsonl"
    proc = run_cli("tag", src, "-o", out, "--model", "models:/newstag-test@champion")
    assert proc.returncode == 3, proc.stderr
    errors = [json.loads(l) for l in (tmp_path / "tags.jsonl.errors.jsonl").read_text().splitlines()]
    assert [(e["line"], e["reason"].split(" (")[0]) for e in errors] == [(2, "invalid JSON"), (3, "empty text")]
    s = last_json(proc.stdout)
    assert s["articles_read"] == s["articles_tagged"] + s["skipped"] == 3


def test_unknown_model_is_a_clean_error(tmp_path):
    src = tmp_path / "dump.jsonl"
    write_jsonl(src, ARTICLES)
    proc = run_cli("tag", src, "-o", tmp_path / "o.jsonl", "--model", "models:/no-such-model@champion")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr and "no-such-model" in proc.stderr


def test_an_output_path_that_cannot_be_written_is_a_clean_error(tmp_path, trained):
    src = tmp_path / "dump.jsonl"
    write_jsonl(src, ARTICLES)
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    proc = run_cli("tag", src, "-o", blocker / "tags.jsonl", "--model", "models:/newstag-test@champion")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    assert f"cannot write the output {blocker / 'tags.jsonl'}" in proc.stderr


def test_bad_numbers_are_usage_errors(tmp_path):
    src = tmp_path / "dump.jsonl"
    write_jsonl(src, ARTICLES)
    for flag, value in [("--chunk-size", "0"), ("--batch-size", "-3"), ("--max-chars", "many"), ("--workers", "0")]:
        proc = run_cli("tag", src, "-o", tmp_path / "o.jsonl", flag, value)
        assert proc.returncode == 2 and flag in proc.stderr and "Traceback" not in proc.stderr, (flag, proc.stderr)


def test_workers_default_to_one_a_core_for_the_baseline(tmp_path, trained):
    """The baseline computes on one thread, so `--workers auto` (the default) runs one process a core; the rows are
    the one-process job's."""
    from infer.pool import cores

    src = tmp_path / "dump.jsonl"
    write_jsonl(src, ARTICLES)
    outs = []
    for workers, expected in (([], cores()), (["--workers", "1"], 1)):
        out = tmp_path / f"o{expected}.jsonl"
        proc = run_cli("tag", src, "-o", out, "--model", "models:/newstag-test@champion", "--chunk-size", "1", *workers,
                       check=True)
        assert last_json(proc.stdout)["workers"] == expected
        outs.append(pd.read_json(out, lines=True))
    pd.testing.assert_frame_equal(outs[0], outs[1])


def test_workers_with_the_spark_engine_is_a_usage_error(tmp_path):
    src = tmp_path / "dump.jsonl"
    write_jsonl(src, ARTICLES)
    proc = run_cli("tag", src, "-o", tmp_path / "o.jsonl", "--engine", "spark", "--workers", "2")
    assert proc.returncode == 2 and "--spark-master" in proc.stderr and "Traceback" not in proc.stderr, proc.stderr
    assert not (tmp_path / "o.jsonl").exists()
