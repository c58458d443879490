"""The data layer every trainer shares: labelled sentences in, article-disjoint splits out.

Rows are JSON lines with ``text``, ``label`` and ``article_id`` (optional ``split``, ``origin``,
``sentence_index``, ``title`` and any descriptive fields).  Splits never put one article in two places: a
sentence's neighbours share its source and style, so a sentence-level split would leak and flatter every score.

``origin`` says where a row comes from (``real`` news or ``synthetic`` text).  ``dev``/``test`` hold the rows of
``data.eval_origin`` only, since that is what users tag; other origins' dev/test rows are scored apart
(``synthetic_test/…``).  ``data.train_sources`` weights each origin's train rows in the loss (0 leaves it out).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from train.config import Config

SPLITS = ("train", "dev", "test")


class DataError(Exception):
    """Bad labelled data; the message names the file and line."""


@dataclass(frozen=True)
class Splits:
    train: pd.DataFrame  # with a `weight` column: the loss weight of its origin
    dev: pd.DataFrame
    test: pd.DataFrame
    path: Path
    digest: str
    extra: dict[str, pd.DataFrame] = field(default_factory=dict)  # e.g. synthetic_dev, synthetic_test

    def items(self):
        return (("train", self.train), ("dev", self.dev), ("test", self.test), *self.extra.items())

    def evaluations(self):
        """Every scored set: dev and test first (the headline), then the other origins' sets."""
        return (("dev", self.dev), ("test", self.test), *self.extra.items())


def file_digest(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()[:16]


def _records(path: Path) -> tuple[list[dict], list[int]]:
    """Every non-blank line as a dict, with its 1-based line number; the first line a reader must refuse raises.

    Plain JSON, not a columnar reader: pyarrow infers types from the first block ("2021-10-05" becomes a
    timestamp) and then fails on a later "2021-10", so a valid file would not load.
    """
    rows, numbers = [], []
    with open(path, "rb") as fh:
        for i, raw in enumerate(fh, 1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as err:
                raise DataError(f"{path}:{i}: not UTF-8 ({err.reason} at byte {err.start})") from None
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as err:
                raise DataError(f"{path}:{i}: not valid JSON ({err.msg})") from None
            if not isinstance(row, dict):
                raise DataError(f"{path}:{i}: expected a JSON object")
            for key in ("text", "label"):
                if row.get(key) is not None and not isinstance(row[key], str):
                    raise DataError(f"{path}:{i}: `{key}` must be a string, got {type(row[key]).__name__}")
            rows.append(row)
            numbers.append(i)
    return rows, numbers


def read_labelled(path: str | Path, labels: tuple[str, ...], require_article: bool = True) -> pd.DataFrame:
    """Load a labelled JSONL file and check every row against the label set; a bad line is named."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    records, lines = _records(path)
    frame = pd.DataFrame.from_records(records)
    needed = ["text", "label"] + (["article_id"] if require_article else [])
    for column in needed:
        if column not in frame.columns:
            raise DataError(f"{path}: rows have no `{column}` field")
    for row, (text, label) in enumerate(zip(frame["text"], frame["label"])):
        if not isinstance(text, str) or not text.strip():
            raise DataError(f"{path}:{lines[row]}: `text` is missing or empty")
        if label not in labels:
            raise DataError(f"{path}:{lines[row]}: unknown label {label!r}; expected one of {', '.join(labels)}")
    if require_article:
        frame["article_id"] = frame["article_id"].astype(str)
    if "title" in frame.columns:
        frame["title"] = frame["title"].fillna("").astype(str)
    return frame


def assign_splits(articles: list[str], seed: int, dev: float, test: float) -> dict[str, str]:
    """Deterministic article → split map: sorted ids shuffled by the seed, then cut by the fractions."""
    ids = sorted(set(articles))
    order = np.random.default_rng(seed).permutation(len(ids))
    n_dev, n_test = max(1, round(len(ids) * dev)), max(1, round(len(ids) * test))
    names = ["dev"] * n_dev + ["test"] * n_test + ["train"] * (len(ids) - n_dev - n_test)
    return {ids[j]: names[k] for k, j in enumerate(order)}


def load_splits(cfg: Config, base: Path | None = None) -> Splits:
    path = Path(cfg.data.path)
    if base is not None and not path.is_absolute():
        path = base / path
    frame = read_labelled(path, cfg.labels)
    if cfg.data.use_split_field and "split" in frame.columns and frame["split"].notna().all():
        bad = sorted(set(frame["split"]) - set(SPLITS))
        if bad:
            raise DataError(f"{path}: unknown split values {bad}; expected train, dev, test")
        per_article = frame.groupby("article_id")["split"].nunique()
        if (per_article > 1).any():
            raise DataError(f"{path}: article {per_article[per_article > 1].index[0]} appears in two splits")
        split = frame["split"]
    else:
        mapping = assign_splits(frame["article_id"].tolist(), cfg.seed, cfg.data.dev_fraction, cfg.data.test_fraction)
        split = frame["article_id"].map(mapping)
    return _by_origin(frame, split, cfg, path)


def _subsample_articles(frame: pd.DataFrame, fraction: float, seed: int) -> pd.DataFrame:
    ids = sorted(frame["article_id"].unique())
    keep = np.random.default_rng(seed).permutation(len(ids))[: max(1, round(len(ids) * fraction))]
    return frame[frame["article_id"].isin({ids[i] for i in keep})]


def _drop_titles(train: pd.DataFrame, share: float, seed: int) -> pd.DataFrame:
    """Blank the title of a seeded share of train articles: evaluation files do not always carry one."""
    if share <= 0 or "title" not in train.columns:
        return train
    ids = sorted(train["article_id"].unique())
    rng = np.random.default_rng([seed, 7])
    dropped = {a for a, u in zip(ids, rng.random(len(ids))) if u < share}
    train = train.copy()
    train.loc[train["article_id"].isin(dropped), "title"] = ""
    return train


def _by_origin(frame: pd.DataFrame, split: pd.Series, cfg: Config, path: Path) -> Splits:
    origin = frame["origin"].fillna(cfg.data.eval_origin) if "origin" in frame.columns else \
        pd.Series(cfg.data.eval_origin, index=frame.index)
    main = origin == cfg.data.eval_origin
    weights = origin.map(lambda o: float(cfg.data.train_sources.get(o, 0.0)))
    train = frame[(split == "train") & (weights > 0)].assign(weight=weights)
    if cfg.data.train_fraction < 1.0:
        is_main = main.loc[train.index]
        train = pd.concat([_subsample_articles(train[is_main], cfg.data.train_fraction, cfg.seed), train[~is_main]])
        train = train.sort_index()
    train = _drop_titles(train.reset_index(drop=True), cfg.context.title_dropout, cfg.seed)
    dev, test = frame[(split == "dev") & main], frame[(split == "test") & main]
    for name, part in (("train", train), ("dev", dev), ("test", test)):
        if part.empty:
            raise DataError(f"{path}: the {name} split is empty (eval origin {cfg.data.eval_origin!r}, "
                            f"train sources {dict(cfg.data.train_sources)})")
    extra = {f"{o}_{name}": frame[(split == name) & (origin == o)].reset_index(drop=True)
             for o in sorted(set(origin) - {cfg.data.eval_origin}) for name in ("dev", "test")}
    return Splits(train, dev.reset_index(drop=True), test.reset_index(drop=True), path, file_digest(path),
                  {k: v for k, v in extra.items() if not v.empty})
