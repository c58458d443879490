"""TF-IDF (word and character n-grams) + logistic regression: seconds to train, the bar every model must clear.

The pipeline selects columns of a DataFrame through a ColumnTransformer.  A pipeline fitted on a Series would,
inside MLflow's pyfunc, iterate over a DataFrame's column names and silently return one row.  Article context
(``prev``, ``next``, ``title`` from :func:`classifier.with_context`) gets its own vectorizers, scaled by
``context_weight``, so "said" before the target never reads as "said" in it.  The words outside quotation marks
(``voice``) get a block of their own too: "allegedly" in the article's voice makes a sentence ``unverified``,
inside a quotation it does not (guideline rule 3).
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
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
    context = context or {"window": 0, "title": False, "quotes": False}
    common = dict(sublinear_tf=params.sublinear_tf, min_df=params.min_df, max_features=params.max_features)
    columns = [
        ("word", TfidfVectorizer(ngram_range=params.word_ngrams, lowercase=True, **common), "text"),
        ("char", TfidfVectorizer(analyzer="char_wb", ngram_range=params.char_ngrams, **common), "text"),
    ]
    around = (["prev", "next"] if context["window"] else []) + (["title"] if context["title"] else [])
    columns += [(name, TfidfVectorizer(ngram_range=params.word_ngrams, lowercase=True, **common), name) for name in around]
    if context.get("quotes"):
        columns.append(("quoted", TfidfVectorizer(token_pattern=r"\S+", lowercase=False), "quoted"))
    weights = {name: params.context_weight for name in around}
    if context.get("voice"):
        columns.append(("voice", TfidfVectorizer(ngram_range=params.word_ngrams, lowercase=True, **common), "voice"))
        weights["voice"] = params.voice_weight
    features = ColumnTransformer(columns, transformer_weights=weights or None)
    model = LogisticRegression(C=params.C, class_weight=params.class_weight, max_iter=params.max_iter, random_state=seed)
    if params.calibrate:
        model = CalibratedClassifierCV(model, method="sigmoid", cv=3)
    return Pipeline([("features", features), ("clf", model)])


def fit(cfg: Config, splits: Splits, model_dir: Path, log_step=None) -> classifier.BaselineClassifier:
    context = {**cfg.context.for_model(), "voice": cfg.model.voice_weight > 0}
    inputs = classifier.with_context(splits.train, **context)
    for key, setting, column, what in (("title", "context.title", "title", "has a title"),
                                       ("quotes", "context.quotes", "quoted", "starts inside a quotation"),
                                       ("voice", "model.voice_weight", "voice", "has words outside quotation marks")):
        if context[key] and not inputs[column].str.len().any():
            # A block with no text has no vocabulary; the model is logged without it instead.
            warnings.warn(f"{setting}: no train sentence of {splits.path} {what}; training without it", stacklevel=1)
            context[key] = False
    pipeline = build(cfg.model, cfg.seed, context).fit(inputs, splits.train["label"],
                                                           clf__sample_weight=splits.train["weight"].to_numpy())
    model_dir.mkdir(parents=True, exist_ok=True)
    classifier.write_meta(model_dir, {"kind": "baseline", "labels": list(cfg.labels), **save(pipeline, model_dir),
                                      "context": context, "config": cfg.model_dump(mode="json")})
    return classifier.load(model_dir)


def save(pipeline: Pipeline, model_dir: Path) -> dict:
    """The fitted pipeline as plain files: ``baseline.json`` (each TF-IDF block's parameters, column, weight and
    terms in column order; the classifier's classes and calibration) and ``baseline.npz`` (idf, coefficients,
    intercepts, sigmoid calibrators).  Returns their names for meta.json.  Nothing to unpickle, and no skops: its
    schema held the 930k-term vocabularies as a 762 MB JSON tree (20 s to load), and importing skops alone takes
    4 s, as it enumerates every scikit-learn estimator."""
    features, model = pipeline[0], pipeline[-1]
    blocks, arrays = [], {}
    for name, vectorizer, column in features.transformers_:
        if name == "remainder":
            continue
        params = {**vectorizer.get_params(), "dtype": np.dtype(vectorizer.dtype).name}
        terms = sorted(vectorizer.vocabulary_, key=vectorizer.vocabulary_.get)
        blocks.append({"name": name, "column": column, "weight": (features.transformer_weights or {}).get(name),
                       "params": params, "terms": terms})
        arrays[f"idf.{name}"] = vectorizer.idf_
    calibrated = isinstance(model, CalibratedClassifierCV)
    members = model.calibrated_classifiers_ if calibrated else [model]
    for k, member in enumerate(members):
        linear = member.estimator if calibrated else member
        arrays[f"coef.{k}"], arrays[f"intercept.{k}"] = linear.coef_, linear.intercept_
        if calibrated:
            arrays[f"sigmoid_a.{k}"] = np.array([c.a_ for c in member.calibrators])
            arrays[f"sigmoid_b.{k}"] = np.array([c.b_ for c in member.calibrators])
    spec = {"blocks": blocks, "classes": model.classes_.tolist(), "members": len(members),
            "calibration": "sigmoid" if calibrated else None}
    (model_dir / "baseline.json").write_text(json.dumps(spec), encoding="utf-8")
    np.savez(model_dir / "baseline.npz", **arrays)
    return {"spec": "baseline.json", "weights": "baseline.npz"}
