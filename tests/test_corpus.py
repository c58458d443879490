import json

import pytest
from conftest import ROOT

from train.corpus import build, near_duplicates, validate

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
    assert first["splits"] == {"train": 56, "dev": 12, "test": 12}
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


@pytest.mark.skipif(not SHIPPED.exists(), reason="corpus not built")
def test_shipped_corpus_validates():
    report = validate(SHIPPED)
    assert report["ok"], "\n".join(report["messages"][:20])
    assert report["sentences"] >= 8000 and report["articles"] >= 400
    assert min(report["label_shares"].values()) >= 0.12
