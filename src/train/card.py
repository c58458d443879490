"""Numbers for data/DATACARD.md, recomputed by one command so the card never drifts from the corpus.

``newstag data card`` prints Markdown: counts by label, split, topic and style; a trivial keyword rule scored on
test beside the baseline (how much more than cue words the corpus demands); and, with ``--learning-curve``, dev
macro-F1 when training on shares of the real train articles.  The runs come from ``train.learning_curve``; this
module only renders them.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd

from train.config import LABELS
from train.metrics import Evaluator

# The cue words a lazy reader would use; precedence as in the guidelines.
KEYWORDS = (
    ("official_response", re.compile(r"\bcomment\b", re.I)),
    ("unverified", re.compile(r"\b(reportedly|allegedly|unclear|could not be (independently )?verified)\b", re.I)),
    ("attributed_quote", re.compile(r"\b(said|says|according to|told)\b", re.I)),
)


def keyword_rule(text: str) -> str:
    return next((label for label, pattern in KEYWORDS if pattern.search(text)), "claim")


def _one_hot(predictions: list[str]) -> np.ndarray:
    return np.array([[1.0 if p == label else 0.0 for label in LABELS] for p in predictions])


def _table(frame: pd.DataFrame) -> str:
    cells = [[str(c) for c in frame.columns]] + frame.astype(str).to_numpy().tolist()
    return "\n".join(["| " + " | ".join(cells[0]) + " |", "|" + "---|" * len(cells[0])]
                     + ["| " + " | ".join(row) + " |" for row in cells[1:]])


def _origin(corpus: pd.DataFrame) -> pd.Series:
    return corpus["origin"].fillna("synthetic") if "origin" in corpus.columns else pd.Series("synthetic", corpus.index)


def counts(corpus: pd.DataFrame) -> str:
    """Label x split per origin, real news first; then the real part's spread over outlets, topics, regions."""
    parts = []
    origin = _origin(corpus)
    for name in sorted(origin.unique(), key=lambda o: o != "real"):
        part = corpus[origin == name]
        by_split = pd.crosstab(part["label"], part["split"]).reindex(index=list(LABELS), columns=["train", "dev", "test"],
                                                                    fill_value=0)
        by_split["total"] = by_split.sum(axis=1)
        by_split["share"] = (by_split["total"] / by_split["total"].sum()).map(lambda v: f"{v:.1%}")
        articles = part.groupby("split")["article_id"].nunique().reindex(["train", "dev", "test"], fill_value=0)
        per_article = part.groupby("article_id").size()
        parts += [f"**{name}**: {len(part):,} sentences in {part['article_id'].nunique()} articles; sentences per article: "
                  f"median {per_article.median():.0f}, min {per_article.min()}, max {per_article.max()}; articles per split: "
                  + ", ".join(f"{k} {v}" for k, v in articles.items()), _table(by_split.reset_index())]
    real = corpus[origin == "real"]
    if not real.empty:
        arts = real.groupby("article_id").agg(outlet=("outlet", "first"), region=("region", "first"),
                                              topic=("topic", "first"),
                                              unverified=("label", lambda s: (s == "unverified").any()))
        us = arts["region"].str.lower().isin({"us", "usa", "united states"}).mean()
        parts.append(f"Real news: {arts['outlet'].nunique()} outlets, {arts['topic'].nunique()} topics, "
                     f"{1 - us:.0%} of articles from outside the US, {1 - arts['unverified'].mean():.0%} of articles "
                     "without an `unverified` sentence.")
    return "\n\n".join(parts)


def keyword_vs_baseline(corpus: pd.DataFrame, baseline_test: dict[str, float] | None) -> str:
    test = corpus[(corpus["split"] == "test") & (_origin(corpus) == "real")]
    if test.empty:
        test = corpus[corpus["split"] == "test"]
    rule = Evaluator(LABELS).scores(test["label"].tolist(), _one_hot([keyword_rule(t) for t in test["text"]]), "test")
    rows = [{"model": "keyword rule", **{k.split("/")[1]: f"{v:.3f}" for k, v in rule.items() if _headline(k)}}]
    if baseline_test:
        rows.append({"model": "baseline (TF-IDF + LR)", **{k.split("/")[1]: f"{v:.3f}" for k, v in baseline_test.items() if _headline(k)}})
    return _table(pd.DataFrame(rows))


def _headline(key: str) -> bool:
    name = key.split("/", 1)[1]
    return name in ("macro_f1", "accuracy") or (name.startswith("f1_") and not name.endswith(("_lo", "_hi")))


def card(corpus_path: str, config: str, runs: dict[float, dict]) -> str:
    """Counts, the keyword rule against the baseline on real test, and (given several runs) the learning curve.

    `runs` maps a share of the real train articles to its training result (`learning_curve.train_fractions`);
    the full run (1.0) gives the baseline's test scores.
    """
    corpus = pd.read_json(corpus_path, lines=True)
    full = runs[1.0]
    parts = ["## Counts", counts(corpus), "## Keyword rule vs baseline (real test)",
             keyword_vs_baseline(corpus, {k: v for k, v in full.items() if k.startswith("test/")})]
    if len(runs) > 1:
        n_real = corpus[(corpus["split"] == "train") & (_origin(corpus) == "real")]["article_id"].nunique()
        rows = [{"real train articles": max(1, round(n_real * fraction)), "config": Path(config).name,
                 "real dev macro-F1": f"{result['dev/macro_f1']:.3f}", "run": result["run_id"]}
                for fraction, result in sorted(runs.items())]
        parts += ["## Learning curve (real dev, by real training articles)", _table(pd.DataFrame(rows))]
    return "\n\n".join(parts) + "\n"
