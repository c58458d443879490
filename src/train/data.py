"""The data layer every trainer shares: labelled sentences in, article-disjoint splits out.

Rows are JSON lines with ``text``, ``label`` and ``article_id`` (optional ``split``, ``prev``, ``next`` and any
descriptive fields).  Splits never put one article in two places: a sentence's neighbours share its source and
style, so a sentence-level split would leak and flatter every score.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from train.config import Config

SPLITS = ("train", "dev", "test")


class DataError(Exception):
    """Bad labelled data; the message names the file and line."""


@dataclass(frozen=True)
class Splits:
    train: pd.DataFrame
    dev: pd.DataFrame
    test: pd.DataFrame
    path: Path
    digest: str

    def items(self):
        return (("train", self.train), ("dev", self.dev), ("test", self.test))


def file_digest(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()[:16]


def _line_numbers(path: Path) -> list[int]:
    """1-based line number of each non-blank line: maps a dataset row back to the file for error messages."""
    with open(path, encoding="utf-8") as fh:
        return [i for i, line in enumerate(fh, 1) if line.strip()]


def _scan_for_bad_json(path: Path) -> str:
    with open(path, encoding="utf-8", errors="replace") as fh:
        for i, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as err:
                return f"{path}:{i}: not valid JSON ({err.msg})"
            if not isinstance(row, dict):
                return f"{path}:{i}: expected a JSON object"
    return f"{path}: could not be read as JSON lines"


def read_labelled(path: str | Path, labels: tuple[str, ...], require_article: bool = True) -> pd.DataFrame:
    """Load a labelled JSONL file with Hugging Face ``datasets`` and check every row against the label set."""
    import datasets

    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    datasets.disable_progress_bars()
    try:
        ds = datasets.load_dataset("json", data_files=str(path), split="train")
    except Exception:  # datasets wraps parser errors in several types; find the line ourselves
        raise DataError(_scan_for_bad_json(path)) from None
    frame = ds.to_pandas()
    lines = _line_numbers(path)
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
    parts = {name: frame[split == name].reset_index(drop=True) for name in SPLITS}
    if cfg.data.train_fraction < 1.0:
        train = parts["train"]
        ids = sorted(train["article_id"].unique())
        keep = np.random.default_rng(cfg.seed).permutation(len(ids))[: max(1, round(len(ids) * cfg.data.train_fraction))]
        parts["train"] = train[train["article_id"].isin({ids[i] for i in keep})].reset_index(drop=True)
    for name, part in parts.items():
        if part.empty:
            raise DataError(f"{path}: the {name} split is empty")
    return Splits(parts["train"], parts["dev"], parts["test"], path, file_digest(path))
