"""Hostile dumps: each kind of bad input fails at most its own record, and the job goes on.

One folder holds every case (a file or a few lines each, between good records); ``newstag tag`` runs on it once
in a subprocess, and each test checks its case in that run's output, errors file and summary.
"""

import gzip
import json
import random

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import TINY, last_json, run_cli

S = pd.read_json(TINY, lines=True)["text"].tolist()
MODEL = "models:/newstag-test@champion"
NOPUNCT = "word " * 30_000  # 150,000 characters, one "sentence"
LONG_FIELD = " ".join(S[i % len(S)] for i in range(2_200))  # ~150k characters: over csv's default field limit
RTL = "قال الوزير إن الخطة ستفشل. אמר השר שהתוכנית תיכשל. The café\u0301 owner said prices rose."
CONTROL = "The minister said\u0000 the plan\u0007 would fail.\u001b Police\u000c said two people died."


def line(**row) -> str:
    return json.dumps(row, ensure_ascii=False)


def build(d):
    """Every hostile case, each named by file so tests can find it."""
    (d / "surrogate.jsonl").write_text("\n".join([
        line(id="sur-ok1", text=S[0]),
        '{"id": "sur-text", "text": "The minister \\ud800 said."}',
        '{"id": "sur-title", "title": "\\udfff", "text": "Police said two people died."}',
        '{"id": "sur\\ud800", "text": "Police said two people died."}',
        line(id="sur-ok2", text=S[1])]) + "\n")
    (d / "latin1.csv").write_bytes(b"id,text\r\ncsv-ok1," + S[2].encode() + b"\r\ncsv-bad,caf\xe9 owners said prices rose.\r\n"
                                   b"csv-ok2," + S[3].encode() + b"\r\n")
    pd.DataFrame([{"id": "long-field", "text": LONG_FIELD}, {"id": "after-long", "text": S[4]}]).to_csv(d / "long.csv", index=False)
    (d / "nested.jsonl").write_text("[" * 200_000 + "]" * 200_000 + "\n"
                                    + '{"id": "deep", "text": ' + '{"a": ' * 100_000 + "1" + "}" * 100_000 + "}\n"
                                    + line(id="after-nested", text=S[5]) + "\n")
    (d / "page.html").write_text("<html><head><title>Budget</title><script>" + "var x = 1;\n" * 150_000 + "</script></head>"
                                 f"<body><p>{S[6]}</p><p>{S[7]}</p></body></html>")
    (d / "bom.jsonl").write_bytes(b"\xef\xbb\xbf" + (line(id="bom1", text=S[8]) + "\n" + line(id="bom2", text=S[9]) + "\n").encode())
    (d / "bom.csv").write_bytes(b"\xef\xbb\xbfid,text\n" + f"bom-csv,{S[10]}\n".encode())
    (d / "control.jsonl").write_text(line(id="control", text=CONTROL) + "\n")
    (d / "nul.csv").write_bytes(b"id,text\nnul-csv,The mayor\x00 said the budget was cut.\n")
    (d / "nul.html").write_bytes(b"<html><body><p>The mayor\x00 said the budget was cut.</p></body></html>")
    (d / "crlf.jsonl").write_bytes(f"{line(id='crlf1', text=S[11])}\r\n{line(id='crlf2', text=S[12])}\r\n".encode())
    (d / "crlf.txt").write_bytes(f"{S[13]}\r\n{S[14]}\r\n".encode())
    blob = gzip.compress("".join(line(id=f"gz{i:02d}", text=S[i % len(S)]) + "\n" for i in range(40)).encode())
    (d / "truncated.jsonl.gz").write_bytes(blob[: len(blob) // 2])
    (d / "junk.jsonl").write_bytes(random.Random(9).randbytes(20_000))
    (d / "shapes.jsonl").write_text("\n".join([
        line(id="text-object", text={"body": S[0]}), line(id="text-list", text=[S[0]]), line(id={"x": 1}, text=S[0]),
        line(id=1.5, text=S[0]), line(id=True, text=S[0]), '{"id": ' + "9" * 5000 + ', "text": "x"}',
        '{"id": NaN, "text": "x"}', "[1, 2]", '"just a string"']) + "\n")
    (d / "ids.jsonl").write_text(line(id=7, text=S[15]) + "\n" + line(id="7", text=S[16]) + "\n")
    (d / "blank.jsonl").write_text(line(id="whitespace", text=" \t\r\n\u3000\u00a0 ") + "\n")
    (d / "nopunct.jsonl").write_text(line(id="nopunct", text=NOPUNCT) + "\n")
    (d / "scripts.jsonl").write_text(line(id="rtl", text=RTL) + "\n")
    pq.write_table(pa.table({"id": [None, "pq-no-text", "pq-ok", "pq-null-title"], "title": [None, None, "T", None],
                             "text": [S[17], None, S[18], S[19]]}), d / "nulls.parquet")
    (d / "latin1.txt").write_bytes(b"The caf\xe9 owner said prices rose.")
    (d / "empty.jsonl").write_text("")
    (d / "huge-line.jsonl").write_bytes(b"\x00" * 4_000_000 + b"\n" + (line(id="after-huge", text=S[20]) + "\n").encode())
    (d / "deep.html").write_text("<html><body>" + "<div>" * 20_000 + S[21] + "</div>" * 20_000 + "</body></html>")


@pytest.fixture(scope="module")
def run(tmp_path_factory, trained):
    d = tmp_path_factory.mktemp("hostile")
    (d / "in").mkdir()
    build(d / "in")
    out = d / "out.jsonl"
    proc = run_cli("tag", d / "in", "-o", out, "--model", MODEL, "--chunk-size", "7")
    errors = [json.loads(l) for l in (d / "out.jsonl.errors.jsonl").read_text(encoding="utf-8").splitlines()]
    rows = pd.read_json(out, lines=True, dtype={"article_id": str, "model_version": str})
    return {"proc": proc, "errors": errors, "rows": rows, "dir": d / "in"}


def errors_of(run, name):
    return [e for e in run["errors"] if e["source"].endswith("/" + name)]


def tagged(run) -> set:
    return set(run["rows"]["article_id"])


def test_the_job_finishes_with_exit_3_and_no_traceback(run):
    assert run["proc"].returncode == 3, run["proc"].stderr
    assert "Traceback" not in run["proc"].stderr


def test_summary_accounts_for_every_record(run):
    s = last_json(run["proc"].stdout)
    assert s["articles_read"] == s["articles_tagged"] + s["skipped"]
    assert s["skipped"] == len(run["errors"])
    assert s["sentences"] == len(run["rows"])


def test_lone_surrogate_fails_only_its_record(run):
    reasons = {e["line"]: e["reason"] for e in errors_of(run, "surrogate.jsonl")}
    assert set(reasons) == {2, 3, 4}
    assert "lone surrogate U+D800" in reasons[2] and "title" in reasons[3] and "id holds" in reasons[4]
    assert {"sur-ok1", "sur-ok2"} <= tagged(run)


def test_csv_row_with_a_non_utf8_byte_fails_only_that_row(run):
    [error] = errors_of(run, "latin1.csv")
    assert error["line"] == 3 and error["reason"].startswith("not UTF-8 (byte 0xE9") and error["id"] == "csv-bad"
    assert {"csv-ok1", "csv-ok2"} <= tagged(run)


def test_csv_field_over_131072_characters_is_read(run):
    assert not errors_of(run, "long.csv")
    assert {"long-field", "after-long"} <= tagged(run)
    assert (run["rows"]["article_id"] == "long-field").sum() > 1000


def test_deeply_nested_json_fails_only_its_line(run):
    reasons = {e["line"]: e["reason"] for e in errors_of(run, "nested.jsonl")}
    assert reasons == {1: "invalid JSON (nested too deeply)", 2: "invalid JSON (nested too deeply)"}
    assert "after-nested" in tagged(run)


def test_large_html_page_keeps_its_article_text(run):
    rows = run["rows"][run["rows"]["article_id"] == "page.html"]
    assert list(rows["text"]) == [S[6], S[7]]


def test_byte_order_marks_are_not_part_of_the_first_record(run):
    assert not errors_of(run, "bom.jsonl") and not errors_of(run, "bom.csv")
    assert {"bom1", "bom2", "bom-csv"} <= tagged(run)


def test_nul_and_control_characters_are_tagged_with_exact_offsets(run):
    assert not errors_of(run, "control.jsonl") and not errors_of(run, "nul.csv") and not errors_of(run, "nul.html")
    assert {"control", "nul-csv", "nul.html"} <= tagged(run)
    for _, row in run["rows"][run["rows"]["article_id"] == "control"].iterrows():
        assert CONTROL[row["start"]:row["end"]] == row["text"]


def test_crlf_line_ends(run):
    assert {"crlf1", "crlf2", "crlf.txt"} <= tagged(run)
    crlf = run["rows"][run["rows"]["article_id"].isin(["crlf1", "crlf2", "crlf.txt"])]
    assert not any("\r" in t for t in crlf["text"]) and set(crlf["text"]) == set(S[11:15])


def test_truncated_gzip_keeps_what_was_read_and_reports_the_rest(run):
    [error] = errors_of(run, "truncated.jsonl.gz")
    read = {a for a in tagged(run) if a.startswith("gz")}
    assert 0 < len(read) < 40
    assert error["reason"].startswith(f"unreadable after line {len(read)}:") and error["line"] == len(read) + 1


def test_binary_junk_named_jsonl_is_errors_only(run):
    junk = errors_of(run, "junk.jsonl")
    assert junk and all(e["reason"].startswith(("not UTF-8", "invalid JSON")) and e["line"] for e in junk)
    assert len({e["line"] for e in junk}) == len(junk)


def test_text_or_id_of_the_wrong_shape(run):
    reasons = [e["reason"] for e in errors_of(run, "shapes.jsonl")]
    assert reasons == ["text is dict, not a string", "text is list, not a string", "id is dict, not a string or integer",
                       "id is float, not a string or integer", "id is bool, not a string or integer",
                       reasons[5], "id is float, not a string or integer", "not a JSON object (a list)",
                       "not a JSON object (a str)"]
    assert reasons[5].startswith("invalid JSON (Exceeds the limit")


def test_integer_and_string_ids_that_collide(run):
    [error] = errors_of(run, "ids.jsonl")
    assert error["line"] == 2 and error["id"] == "7" and error["reason"].startswith("duplicate id (first at ")
    assert error["reason"].endswith("ids.jsonl:1)")
    assert set(run["rows"][run["rows"]["article_id"] == "7"]["text"]) <= {S[15]}


def test_whitespace_only_text(run):
    assert [e["reason"] for e in errors_of(run, "blank.jsonl")] == ["empty text"]


def test_150000_character_sentence_without_punctuation(run):
    assert not errors_of(run, "nopunct.jsonl")
    rows = run["rows"][run["rows"]["article_id"] == "nopunct"]
    assert len(rows) == 1 and len(rows.iloc[0]["text"]) == len(NOPUNCT.strip())


def test_right_to_left_and_combining_characters(run):
    rows = run["rows"][run["rows"]["article_id"] == "rtl"]
    assert len(rows) == 3
    for _, row in rows.iterrows():
        assert RTL[row["start"]:row["end"]] == row["text"]


def test_nulls_in_parquet(run):
    assert [(e["line"], e["id"], e["reason"]) for e in errors_of(run, "nulls.parquet")] == [
        (1, None, "missing id"), (2, "pq-no-text", "missing text")]
    assert {"pq-ok", "pq-null-title"} <= tagged(run)


def test_text_file_that_is_not_utf8(run):
    [error] = errors_of(run, "latin1.txt")
    assert error["reason"].startswith("not UTF-8") and error["id"] == "latin1.txt"


def test_empty_file_is_no_record(run):
    assert not errors_of(run, "empty.jsonl")


def test_a_line_too_long_to_hold_is_skipped_without_reading_it_whole(run):
    [error] = errors_of(run, "huge-line.jsonl")
    assert error["line"] == 1 and error["reason"].startswith("line has 4,000,001 bytes, over the limit of 3,448,576")
    assert "after-huge" in tagged(run)


def test_deeply_nested_html(run):
    assert list(run["rows"][run["rows"]["article_id"] == "deep.html"]["text"]) == [S[21]]
