"""TF-IDF (word and character n-grams) + logistic regression: seconds to train, the bar every model must clear.

The pipeline selects columns of a DataFrame through a ColumnTransformer.  A pipeline fitted on a Series would,
inside MLflow's pyfunc, iterate over a DataFrame's column names and silently return one row.  Article context
(``prev``, ``next``, ``title`` from :func:`classifier.with_context`) gets its own vectorizers, scaled by
``context_weight``, so "said" before the target never reads as "said" in it.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import skops.io as sio
from sklearn.calibration import CalibratedClassifierCV
from sklearn.compose import ColumnTransformer
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline

from train import classifier
from train.config import Config
from train.data import Splits
from train.kinds import BaselineModel


def build(params: BaselineModel, seed: int, context: dict | None = None) -> Pipeline:
    context = context or {"window": 0, "title": False}
    common = dict(sublinear_tf=params.sublinear_tf, min_df=params.min_df, max_features=params.max_features)
    columns = [
        ("word", TfidfVectorizer(ngram_range=params.word_ngrams, lowercase=True, **common), "text"),
        ("char", TfidfVectorizer(analyzer="char_wb", ngram_range=params.char_ngrams, **common), "text"),
    ]
    around = (["prev", "next"] if context["window"] else []) + (["title"] if context["title"] else [])
    columns += [(name, TfidfVectorizer(ngram_range=params.word_ngrams, lowercase=True, **common), name) for name in around]
    features = ColumnTransformer(columns, transformer_weights={name: params.context_weight for name in around} or None)
    model = LogisticRegression(C=params.C, class_weight=params.class_weight, max_iter=params.max_iter, random_state=seed)
    if params.calibrate:
        model = CalibratedClassifierCV(model, method="sigmoid", cv=3)
    return Pipeline([("features", features), ("clf", model)])


def fit(cfg: Config, splits: Splits, model_dir: Path, log_step=None) -> classifier.BaselineClassifier:
    context = cfg.context.for_model()
    inputs = classifier.with_context(splits.train, **context)
    if context["title"] and not inputs["title"].str.len().any():
        # A title block with no titles has no vocabulary; the model is logged as title-blind instead.
        warnings.warn(f"context.title: no train sentence of {splits.path} has a title; training without titles",
                      stacklevel=1)
        context["title"] = False
    pipeline = build(cfg.model, cfg.seed, context).fit(inputs, splits.train["label"],
                                                           clf__sample_weight=splits.train["weight"].to_numpy())
    model_dir.mkdir(parents=True, exist_ok=True)
    save(pipeline, model_dir)
    classifier.write_meta(model_dir, {"kind": "baseline", "labels": list(cfg.labels), "weights": "pipeline.skops",
                                      "vocabularies": VOCABULARIES, "context": context,
                                      "config": cfg.model_dump(mode="json")})
    return classifier.load(model_dir)


VOCABULARIES = "vocabularies.json"


def save(pipeline: Pipeline, model_dir: Path) -> None:
    """The pipeline through skops, less its vocabularies, which go to one JSON file as each block's terms in column
    order.  skops writes a dict as a schema node per entry: with them, a model of 930k terms was a 762 MB schema
    that took 20 s to load; without them it loads in about a second."""
    vectorizers = [(name, v) for name, v, _ in pipeline[0].transformers_ if hasattr(v, "vocabulary_")]
    vocabularies = {name: sorted(v.vocabulary_, key=v.vocabulary_.get) for name, v in vectorizers}
    kept = [v.__dict__.pop("vocabulary_") for _, v in vectorizers]
    try:
        sio.dump(pipeline, model_dir / "pipeline.skops")
    finally:
        for (_, v), vocabulary in zip(vectorizers, kept):
            v.vocabulary_ = vocabulary
    (model_dir / VOCABULARIES).write_text(json.dumps(vocabularies), encoding="utf-8")
