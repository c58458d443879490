import json

import pytest
from conftest import ROOT, TINY

from train.config import LABELS, load_config
from train.data import DataError, assign_splits, load_splits, read_labelled


def cfg_for(path, *overrides):
    return load_config(ROOT / "configs/baseline.yaml", [f"data.path={path}", *overrides])


def test_splits_are_by_article_and_fixed_by_seed():
    a = load_splits(cfg_for(TINY))
    b = load_splits(cfg_for(TINY))
    ids = {name: set(part["article_id"]) for name, part in a.items()}
    assert not ids["train"] & ids["dev"] and not ids["train"] & ids["test"] and not ids["dev"] & ids["test"]
    assert all(a_part.equals(b_part) for (_, a_part), (_, b_part) in zip(a.items(), b.items()))
    other = load_splits(cfg_for(TINY, "seed=99"))
    assert {n: set(p["article_id"]) for n, p in other.items()} != ids


def test_split_field_wins_when_present(tmp_path):
    rows = [json.loads(l) for l in TINY.read_text().splitlines()]
    for r in rows:
        r["split"] = {"t01": "dev", "t02": "test"}.get(r["article_id"], "train")
    p = tmp_path / "s.jsonl"
    p.write_text("".join(json.dumps(r) + "\n" for r in rows))
    s = load_splits(cfg_for(p))
    assert set(s.dev["article_id"]) == {"t01"} and set(s.test["article_id"]) == {"t02"}


def test_assign_splits_fractions():
    mapping = assign_splits([f"a{i}" for i in range(100)], seed=1, dev=0.15, test=0.15)
    counts = {n: list(mapping.values()).count(n) for n in ("train", "dev", "test")}
    assert counts == {"train": 70, "dev": 15, "test": 15}


def test_unknown_label_names_the_line(tmp_path):
    p = tmp_path / "bad.jsonl"
    p.write_text('{"text": "a", "label": "claim", "article_id": "x"}\n\n{"text": "b", "label": "opinion", "article_id": "x"}\n')
    with pytest.raises(DataError, match=r"bad.jsonl:3: unknown label 'opinion'"):
        read_labelled(p, LABELS)


def test_bad_json_names_the_line(tmp_path):
    p = tmp_path / "bad.jsonl"
    p.write_text('{"text": "a", "label": "claim", "article_id": "x"}\n{"text": \n')
    with pytest.raises(DataError, match=r"bad.jsonl:2: not valid JSON"):
        read_labelled(p, LABELS)


def test_descriptive_fields_load_as_written_however_many_rows(tmp_path):
    """Real corpus rows carry dates as written ("2021-10-05", "2021-10"): a columnar reader that guessed
    timestamps from the first block failed on a later partial date (over 10 MiB into the file)."""
    p = tmp_path / "dates.jsonl"
    row = {"text": "The council said the road would reopen on Monday. " * 3, "label": "attributed_quote"}
    with open(p, "w", encoding="utf-8") as fh:
        for i in range(70_000):
            fh.write(json.dumps({**row, "article_id": f"a{i // 10}", "date": "2021-10-05"}) + "\n")
        fh.write(json.dumps({**row, "article_id": "last", "date": "2021-10"}) + "\n")
    frame = read_labelled(p, LABELS)
    assert p.stat().st_size > 11 << 20 and len(frame) == 70_001
    assert frame["date"].iloc[0] == "2021-10-05" and frame["date"].iloc[-1] == "2021-10"


def test_train_fraction_subsamples_articles():
    full = load_splits(cfg_for(TINY))
    half = load_splits(cfg_for(TINY, "data.train_fraction=0.5"))
    assert half.train["article_id"].nunique() == round(full.train["article_id"].nunique() * 0.5)
    assert half.dev.equals(full.dev)


def origin_file(tmp_path):
    """The tiny set twice: once as real news, once as synthetic text, each article with a fixed split."""
    rows = []
    for origin in ("real", "synthetic"):
        for r in (json.loads(l) for l in TINY.read_text().splitlines()):
            split = {"t01": "dev", "t02": "test"}.get(r["article_id"], "train")
            rows.append({**r, "article_id": f"{origin[0]}-{r['article_id']}", "split": split, "origin": origin,
                         "title": f"Title of {r['article_id']}"})
    p = tmp_path / "mixed.jsonl"
    p.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return p


def test_dev_and_test_hold_the_eval_origin_and_others_are_scored_apart(tmp_path):
    s = load_splits(cfg_for(origin_file(tmp_path)))
    assert set(s.dev["origin"]) == {"real"} and set(s.test["origin"]) == {"real"}
    assert set(s.extra) == {"synthetic_dev", "synthetic_test"}
    assert set(s.extra["synthetic_dev"]["article_id"]) == {"s-t01"}
    assert set(s.train["origin"]) == {"real", "synthetic"} and s.train["weight"].eq(1.0).all()


def test_train_sources_weight_or_drop_an_origin(tmp_path):
    path = origin_file(tmp_path)
    half = load_splits(cfg_for(path, "data.train_sources.synthetic=0.25"))
    assert half.train.groupby("origin")["weight"].unique().map(list).to_dict() == {"real": [1.0], "synthetic": [0.25]}
    real_only = load_splits(cfg_for(path, "data.train_sources.synthetic=0"))
    assert set(real_only.train["origin"]) == {"real"}
    assert len(real_only.train) == len(half.train) // 2


def test_train_fraction_subsamples_only_the_eval_origin(tmp_path):
    path = origin_file(tmp_path)
    full = load_splits(cfg_for(path))
    part = load_splits(cfg_for(path, "data.train_fraction=0.5"))
    count = lambda s, o: s.train[s.train["origin"] == o]["article_id"].nunique()
    assert count(part, "synthetic") == count(full, "synthetic")
    assert count(part, "real") == round(count(full, "real") * 0.5)


def test_title_dropout_blanks_train_titles_only(tmp_path):
    path = origin_file(tmp_path)
    s = load_splits(cfg_for(path, "context.title_dropout=1.0"))
    assert s.train["title"].eq("").all() and s.dev["title"].ne("").all()
    some = load_splits(cfg_for(path, "context.title_dropout=0.5"))
    blank = some.train.groupby("article_id")["title"].first().eq("")
    assert 0 < blank.sum() < len(blank)  # per article, seeded
    again = load_splits(cfg_for(path, "context.title_dropout=0.5"))
    assert again.train["title"].tolist() == some.train["title"].tolist()


def test_bad_train_sources_are_refused():
    with pytest.raises(Exception, match="train_sources"):
        cfg_for(TINY, "data.train_sources={real: 0, synthetic: 0}")
