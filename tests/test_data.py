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


def test_train_fraction_subsamples_articles():
    full = load_splits(cfg_for(TINY))
    half = load_splits(cfg_for(TINY, "data.train_fraction=0.5"))
    assert half.train["article_id"].nunique() == round(full.train["article_id"].nunique() * 0.5)
    assert half.dev.equals(full.dev)
