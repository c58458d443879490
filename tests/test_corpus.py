import json

import pytest
from conftest import ROOT, run_cli

from train.corpus import build
from train.dedup import near_duplicates
from train.validate import validate

SHIPPED = ROOT / "data" / "corpus" / "sentences.jsonl"


def test_near_duplicates_found_and_distinct_sentences_not():
    texts = [
        "The company did not respond to a request for comment about the closure of its plant in Ohio.",
        "The company did not respond to requests for comment about the closure of its plant in Ohio.",
        "Police said three people were arrested near the stadium.",
        "A completely different sentence about rainfall in the valley.",
    ]
    pairs = near_duplicates(texts)
    assert [(i, j) for i, j, _ in pairs] == [(0, 1)]


def raw_article(aid, topic, sentences):
    return {"article_id": aid, "title": "t", "topic": topic, "style": "wire", "region": "x",
            "paragraphs": [[[text, code] for text, code in sentences]]}


def test_build_is_deterministic_and_keeps_articles_whole(tmp_path):
    raw = tmp_path / "raw"
    raw.mkdir()
    lines = [json.dumps(raw_article(f"a{i:02d}", ["crime", "sport"][i % 2],
                                    [(f"Sentence {i} number one about topic {i}.", "C"), (f"He said {i} things.", "Q")]))
             for i in range(40)]
    (raw / "b-01.jsonl").write_text("\n".join(lines) + "\n")
    first = build(raw, tmp_path / "s.jsonl")
    second = build(raw, tmp_path / "s2.jsonl")
    assert first["digest"] == second["digest"]
    rows = [json.loads(l) for l in (tmp_path / "s.jsonl").read_text().splitlines()]
    per_article = {}
    for r in rows:
        per_article.setdefault(r["article_id"], set()).add(r["split"])
    assert all(len(s) == 1 for s in per_article.values())
    assert first["splits"] == {"synthetic/train": 56, "synthetic/dev": 12, "synthetic/test": 12}
    assert rows[1]["prev"] == rows[0]["text"] and rows[0]["next"] == rows[1]["text"]


def test_validate_catches_leakage_duplicates_and_bad_labels(tmp_path):
    rows = [
        {"text": "The same sentence appears twice here.", "label": "claim", "article_id": "a", "split": "train"},
        {"text": "The same sentence appears twice here.", "label": "claim", "article_id": "b", "split": "test"},
        {"text": "Another one.", "label": "opinion", "article_id": "a", "split": "dev"},
    ]
    p = tmp_path / "c.jsonl"
    p.write_text("".join(json.dumps(r) + "\n" for r in rows))
    report = validate(p, min_share=0.0)
    text = "\n".join(report["messages"])
    assert not report["ok"]
    assert "c.jsonl:2: exact duplicate of line 1" in text
    assert "unknown label 'opinion'" in text
    assert "article a is in several splits" not in text  # line 3 is refused before the leakage check
    rows[2]["label"] = "claim"
    p.write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert "error: article a is in several splits: ['dev', 'train']" in validate(p, min_share=0.0)["messages"]


@pytest.mark.skipif(not SHIPPED.exists(), reason="corpus not built")
def test_shipped_corpus_validates():
    report = validate(SHIPPED)
    assert report["ok"], "\n".join(report["messages"][:20])
    assert report["origin_counts"]["synthetic"] >= 8000 and report["origin_counts"]["real"] >= 6000
    assert report["real_outlets"] >= 150


def real_article(aid, url, outlet=None, texts=None, labels=None):
    name = "".join(chr(ord("a") + int(c)) if c.isdigit() else c for c in aid).title()  # r07 -> Rah: one name a story
    texts = texts or [f"Sentence {i} of the story tells what {name}ville did." for i in range(8)]
    labels = labels or ["claim"] * len(texts)
    return {"article_id": aid, "source_url": url, "outlet": outlet or url.split("/")[2].removeprefix("www."),
            "title": f"Title {aid}", "topic": "crime", "region": "UK", "date": None,
            "sentences": [{"text": t, "label": y, "speaker": None} for t, y in zip(texts, labels)]}


def built_rows(tmp_path, articles):
    raw, real = tmp_path / "raw", tmp_path / "real"
    raw.mkdir(exist_ok=True)
    real.mkdir(exist_ok=True)
    (raw / "b-01.jsonl").write_text(json.dumps(raw_article("s1", "crime", [("A synthetic line.", "C")])) + "\n")
    (real / "w.jsonl").write_text("".join(json.dumps(a) + "\n" for a in articles))
    out = tmp_path / "s.jsonl"
    build(raw, out, real=real)
    return out, [json.loads(l) for l in out.read_text().splitlines()]


def test_build_splits_real_news_by_outlet_with_provenance(tmp_path):
    articles = [real_article(f"r{i:02d}", f"https://www.outlet{i % 12}.com/news/{i}") for i in range(36)]
    quote = real_article("q", "https://news.example.org/q", texts=[f"“We will appeal,” he said in case {i}." for i in range(8)],
                         labels=["attributed_quote"] * 8)
    quote["sentences"][0]["speaker"] = "he"
    out, rows = built_rows(tmp_path, [*articles, quote])
    real = [r for r in rows if r["origin"] == "real"]
    splits_by_outlet = {}
    for r in real:
        splits_by_outlet.setdefault(r["outlet"], set()).add(r["split"])
    assert all(len(s) == 1 for s in splits_by_outlet.values())
    assert {s for v in splits_by_outlet.values() for s in v} == {"train", "dev", "test"}
    q0 = next(r for r in real if r["id"] == "q-000")
    assert q0["speaker_span"] == [18, 20] and q0["text"][18:20] == "he"  # the word, not the "he" in "the"
    assert all(r["source_url"] and r["title"] for r in real)
    assert validate(out, min_share=0.0)["ok"]


@pytest.mark.parametrize("breakage, message", [
    (lambda rows: rows[1].update(origin="scraped"), "origin 'scraped' is not one of real, synthetic"),
    (lambda rows: rows[1].update(source_url=""), "a real sentence needs source_url"),
    (lambda rows: rows[1].update(speaker="Nobody", speaker_span=[0, 3]), "does not mark 'Nobody'"),
    (lambda rows: [r.update(split={"r00": "train", "r12": "test"}[r["article_id"]]) for r in rows
                   if r["article_id"] in ("r00", "r12")], "outlet outlet0.com is in several splits"),
    (lambda rows: [r.update(source_url="https://www.outlet1.com/news/1") for r in rows if r["article_id"] == "r13"],
     "tells the same story as r01 (same page outlet1.com/news/1)"),
])
def test_validate_refuses_each_provenance_breakage(tmp_path, breakage, message):
    articles = [real_article(f"r{i:02d}", f"https://www.outlet{i % 12}.com/news/{i}") for i in range(24)]
    out, rows = built_rows(tmp_path, articles)
    breakage(rows)
    out.write_text("".join(json.dumps(r) + "\n" for r in rows))
    report = validate(out, min_share=0.0)
    assert not report["ok"] and any(message in m for m in report["messages"]), report["messages"]


def test_validate_refuses_pages_on_the_exclusion_list(tmp_path):
    from train.provenance import url_hash

    articles = [real_article(f"r{i:02d}", f"https://www.outlet{i}.com/news/{i}") for i in range(3)]
    out, _ = built_rows(tmp_path, articles)
    exclusions = tmp_path / "exclusions.txt"
    exclusions.write_text("# header\n" + url_hash("http://outlet1.com/news/1/amp/?utm=x") + "\n")
    report = validate(out, min_share=0.0, exclusions=exclusions)
    assert not report["ok"]
    assert any("r01 comes from a page on the evaluation exclusion list" in m for m in report["messages"])
    assert validate(out, min_share=0.0, exclusions=tmp_path / "none.txt")["ok"]


def test_provenance_split_answers_the_built_corpus_first_then_the_outlet_hash(tmp_path):
    """A train-only wave uses only pages whose outlet prints `train`: an outlet the corpus already holds keeps the
    split it has there (joined outlets may differ from their hash); a new outlet gets its hash's split."""
    import subprocess
    import sys

    from train.provenance import outlet_split

    out, rows = built_rows(tmp_path, [real_article(f"r{i:02d}", f"https://www.outlet{i}.com/news/{i}") for i in range(4)])
    moved = next(s for s in ("train", "dev", "test") if s != outlet_split("outlet0.com", 13))
    for r in rows:
        if r.get("outlet") == "outlet0.com":
            r["split"] = moved
    out.write_text("".join(json.dumps(r) + "\n" for r in rows))
    fresh = next(f"new{i}.co.uk" for i in range(100) if outlet_split(f"new{i}.co.uk", 13) == "test")
    urls = ["https://edition.outlet0.com/x", "https://www.outlet1.com/y", f"https://news.{fresh}/z"]
    done = subprocess.run([sys.executable, "-m", "train.provenance", "--split", "--corpus", str(out), *urls],
                          capture_output=True, text=True, check=True)
    answers = [line.split("\t")[:3] for line in done.stdout.splitlines()]
    assert answers == [["ok", moved, "edition.outlet0.com"], ["ok", outlet_split("outlet1.com", 13), "outlet1.com"],
                       ["ok", "test", f"news.{fresh}"]]


def test_a_rebuild_that_would_move_an_article_to_another_split_is_refused(tmp_path):
    """An added article that retells a held-out story joins its outlet to the held-out one, which silently moved
    earlier articles between train and dev: the rebuild names the move and its cause, keeps the old file, and
    re-splits only when asked to.  An unrelated addition builds as before."""
    from train.provenance import outlet_split

    train = next(f"t{i}.com" for i in range(500) if outlet_split(f"t{i}.com", 13) == "train")
    held = next(f"h{i}.com" for i in range(500) if outlet_split(f"h{i}.com", 13) == "dev")
    story = ["Police in Leeds arrested Tomas Varga, 34, on Friday after the Kirkgate fire.",
             "The blaze at Kirkgate Market destroyed 40 stalls, West Yorkshire Fire Service said.",
             "Varga was charged with arson and appears at Leeds Magistrates on Monday."] * 3
    articles = [real_article("d", f"https://{held}/d", texts=story[:8]), real_article("t", f"https://{train}/t")]
    out, rows = built_rows(tmp_path, articles)
    assert {r["article_id"]: r["split"] for r in rows if r["origin"] == "real"} == {"d": "dev", "t": "train"}
    real = tmp_path / "real" / "w.jsonl"
    unrelated = real_article("u", f"https://{train}/u")
    real.write_text("".join(json.dumps(a) + "\n" for a in [*articles, unrelated]))
    run_cli("data", "build", "--raw", tmp_path / "raw", "--real", tmp_path / "real", "--out", out, check=True)
    before = out.read_bytes()

    retold = [t.replace("arrested", "detained").replace("destroyed", "wrecked") for t in story[:8]]
    real.write_text("".join(json.dumps(a) + "\n" for a in [*articles, unrelated,
                                                           real_article("n", f"https://{train}/n", texts=retold)]))
    done = run_cli("data", "build", "--raw", tmp_path / "raw", "--real", tmp_path / "real", "--out", out)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert "2 articles already in" in done.stderr and "t train -> dev" in done.stderr and "u train -> dev" in done.stderr
    assert "added article n joins its outlet to d's" in done.stderr
    assert out.read_bytes() == before

    run_cli("data", "build", "--raw", tmp_path / "raw", "--real", tmp_path / "real", "--out", out,
            "--allow-split-changes", check=True)
    splits = {json.loads(l)["article_id"]: json.loads(l)["split"] for l in out.read_text().splitlines()}
    assert splits["n"] == splits["t"] == splits["u"] == splits["d"] == "dev"

    out.write_text("not a corpus\n")
    done = run_cli("data", "build", "--raw", tmp_path / "raw", "--real", tmp_path / "real", "--out", out)
    assert done.returncode == 2 and f"{out}:1: not a built corpus row" in done.stderr and "Traceback" not in done.stderr
    assert out.read_text() == "not a corpus\n"


def test_two_paraphrases_of_one_story_are_one_story(tmp_path):
    texts = ["Police in Leeds arrested Tomas Varga, 34, on Friday after the Kirkgate fire.",
             "The blaze at Kirkgate Market destroyed 40 stalls, West Yorkshire Fire Service said.",
             "Varga was charged with arson and appears at Leeds Magistrates on Monday."] * 3
    other = [t.replace("arrested", "detained").replace("destroyed", "wrecked") for t in texts]
    articles = [real_article("a", "https://one.co.uk/a", texts=texts[:8]),
                real_article("b", "https://two.com/b", texts=other[:8])]
    out, _ = built_rows(tmp_path, articles)
    assert any("article b tells the same story as a" in m for m in validate(out, min_share=0.0)["messages"])


def test_validate_refuses_a_paraphrase_across_splits_and_only_warns_on_stock_lines(tmp_path):
    rows = [
        {"text": "The company did not respond to a request for comment about the closure of its plant.",
         "label": "official_response", "article_id": "a", "split": "train"},
        {"text": "The company did not respond to requests for comment about the closure of its plant.",
         "label": "official_response", "article_id": "b", "split": "test"},
        {"text": "He gave no further details.", "label": "claim", "article_id": "a", "split": "train"},
        {"text": "He gave no further detail.", "label": "claim", "article_id": "b", "split": "test"},
    ]
    p = tmp_path / "c.jsonl"
    p.write_text("".join(json.dumps({**r, "origin": "synthetic"}) + "\n" for r in rows))
    messages = validate(p, min_share=0.0)["messages"]
    assert [m for m in messages if m.startswith("error:")] == [
        next(m for m in messages if "c.jsonl:2: near duplicate of line 1" in m)]
    assert "across splits train/test" in messages[0]
    assert any(m.startswith("warning:") and "c.jsonl:4: near duplicate of line 3" in m and "short stock line" in m
               for m in messages)


def test_copycheck_flags_copies_of_the_page_and_passes_paraphrases(tmp_path):
    """The page comparison a writer runs on their own file: a 15-word run and a quote one word off the page are
    flagged (file, line, article, sentence), a close paraphrase and a shorter shared run are not, an article whose
    excerpt was not saved is reported and the rest still checked; the exit status says whether anything was."""
    import subprocess
    import sys

    page = ("Firefighters were called to the warehouse on Mill Lane shortly after midnight on Tuesday and fought the "
            "blaze for more than six hours before it was brought under control, the county fire service said. "
            "\u201cWe are devastated by what has happened,\u201d the owner said. Nobody was injured.")
    sentences = [
        "Crews were sent to the Mill Lane warehouse soon after midnight on Tuesday, the county fire service said.",
        "Firefighters fought the blaze for more than six hours before it was brought under control, the county fire service said.",
        "\u201cWe are devastated by what happened,\u201d the owner said.",
        "No one was hurt.",
    ]
    (tmp_path / "pages").mkdir()
    (tmp_path / "pages" / "zz-001.txt").write_text(page, encoding="utf-8")
    raw = tmp_path / "zz.jsonl"
    raw.write_text("".join(json.dumps(a) + "\n" for a in [
        {"article_id": "zz-001", "title": "Night blaze destroys Mill Lane warehouse", "sentences": [{"text": t} for t in sentences]},
        {"article_id": "zz-002", "title": "No page saved", "sentences": [{"text": "A sentence."}]}]))
    run = subprocess.run([sys.executable, "-m", "train.copycheck", str(raw), "--excerpts", str(tmp_path / "pages")],
                         capture_output=True, text=True)
    assert run.returncode == 1
    assert run.stdout.splitlines() == [
        f"{raw}:1: zz-001 sentence 1: 19 words in a row as on the page: {sentences[1]}",
        f"{raw}:1: zz-001 sentence 2: the page's words but for one: {sentences[2]}",
        f"{raw}:2: zz-002: no saved excerpt {tmp_path / 'pages' / 'zz-002.txt'}",
        "3 flagged"]
    (tmp_path / "pages" / "zz-002.txt").write_text("An unrelated page.", encoding="utf-8")
    reworded = [sentences[0], "Crews spent over six hours on the fire before it was under control, officers added.",
                "\u201cWhat has happened has devastated us,\u201d the owner said.", sentences[3]]
    raw.write_text(json.dumps({"article_id": "zz-001", "title": "Warehouse fire",
                               "sentences": [{"text": t} for t in reworded]}) + "\n")
    run = subprocess.run([sys.executable, "-m", "train.copycheck", str(raw), "--excerpts", str(tmp_path / "pages")],
                         capture_output=True, text=True)
    assert (run.returncode, run.stdout) == (0, "0 flagged\n")
