"""TF-IDF (word and character n-grams) + logistic regression: seconds to train, the bar every model must clear.

The pipeline selects columns of a DataFrame through a ColumnTransformer.  A pipeline fitted on a Series would,
inside MLflow's pyfunc, iterate over a DataFrame's column names and silently return one row.  Article context
(``prev``, ``next``, ``title`` from :func:`newstag_model.context.with_context`) gets its own vectorizers, scaled by
``context_weight``, so "said" before the target never reads as "said" in it.  The words outside quotation marks
(``voice``) get a block of their own too: "allegedly" in the article's voice makes a sentence ``unverified``,
inside a quotation it does not (guideline rule 3).
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.calibration import CalibratedClassifierCV
from sklearn.compose import ColumnTransformer
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline

from newstag_model.baseline import BaselineClassifier
from newstag_model.context import with_context
from newstag_model.load import load
from newstag_model.probability import log_softmax, pool_quote_spans, softmax, stack_features
from newstag_model.schema import write_meta
from train import metrics, stacking
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
    # Sparse whatever the density: scikit-learn's default turns a dense enough matrix (a small fold) into an array.
    features = ColumnTransformer(columns, transformer_weights=weights or None, sparse_threshold=1.0)
    linear = NBLogisticRegression if params.nb_scaling else LogisticRegression
    model = linear(C=params.C, class_weight=params.class_weight, max_iter=params.max_iter, random_state=seed)
    if params.calibrate:
        model = CalibratedClassifierCV(model, method="sigmoid", cv=3)
    return Pipeline([("features", features), ("clf", model)])


class NBLogisticRegression(ClassifierMixin, BaseEstimator):
    """One logistic regression a label on the features scaled by that label's log-count ratio: NB-LR (Wang &
    Manning, 2012), which lets the n-grams that tell a label apart weigh more before the regression sees them.

    Its ``coef_`` folds the ratios in (one row a label, as a multinomial model's), so the saved model and every
    scorer treat it as any linear model of the unscaled features; its probabilities are the softmax of the labels'
    scores (fit a temperature on dev: the scores of separate regressions are not calibrated against each other).
    """

    def __init__(self, C: float = 4.0, class_weight=None, max_iter: int = 2000, random_state=None):
        self.C, self.class_weight, self.max_iter, self.random_state = C, class_weight, max_iter, random_state

    def fit(self, X, y, sample_weight=None):
        y = np.asarray(y)
        weight = np.ones(len(y)) if sample_weight is None else np.asarray(sample_weight, dtype=np.float64)
        present = (X != 0).astype(np.float64).T.tocsr()  # features x rows: weighted document counts by matmul
        self.classes_ = np.unique(y)
        coef, intercept = [], []
        for label in self.classes_:
            mine = y == label
            # Add-one smoothed shares of the label's and the other labels' documents that contain each feature.
            pos, neg = present @ (weight * mine) + 1.0, present @ (weight * ~mine) + 1.0
            ratio = np.log(pos / pos.sum()) - np.log(neg / neg.sum())
            binary = LogisticRegression(C=self.C, class_weight=self.class_weight, max_iter=self.max_iter,
                                        random_state=self.random_state)
            binary.fit(X.multiply(ratio).tocsr(), mine.astype(int), sample_weight=sample_weight)
            coef.append(binary.coef_[0] * ratio)
            intercept.append(binary.intercept_[0])
        self.coef_, self.intercept_ = np.vstack(coef), np.array(intercept)
        return self

    def decision_function(self, X) -> np.ndarray:
        return np.asarray(X @ self.coef_.T) + self.intercept_

    def predict_proba(self, X) -> np.ndarray:
        return softmax(self.decision_function(X))

    def predict(self, X) -> np.ndarray:
        return self.classes_[self.decision_function(X).argmax(axis=1)]


def fit(cfg: Config, splits: Splits, model_dir: Path, log_step=None) -> BaselineClassifier:
    context = {**cfg.context.for_model(), "voice": cfg.model.voice_weight > 0}
    inputs = with_context(splits.train, **context)
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
    stack = fit_stack(cfg, context, inputs, splits) if cfg.model.stack_window else {}
    meta = {"kind": "baseline", "labels": list(cfg.labels), **save(pipeline, model_dir, stack), "context": context,
            "config": cfg.model_dump(mode="json")}
    if stack:
        meta["stack_window"] = cfg.model.stack_window
    write_meta(model_dir, meta)
    clf = load(model_dir)
    if cfg.model.temperature_scaling or cfg.model.tune_offsets:
        # One pass of the model over dev for both fits: the temperature, then the offsets on the tempered scores.
        dev, gold = with_context(splits.dev, **context), splits.dev["label"].tolist()
        scores, fitted = clf.scores(dev), {}
        if cfg.model.temperature_scaling:
            fitted = metrics.temperature_on_dev(scores, gold, cfg.labels)
            meta["temperature"] = clf.temperature = fitted["calibration/temperature"]
        if cfg.model.tune_offsets:
            offsets = metrics.macro_f1_offsets(log_softmax(scores / clf.temperature), gold, cfg.labels,
                                               lambda proba: pool_quote_spans(proba, dev["span"]))
            meta["offsets"] = offsets.tolist()
            clf.offsets = offsets
            fitted.update({f"calibration/offset_{label}": float(v) for label, v in zip(cfg.labels, offsets)})
        if log_step is not None:
            log_step(fitted)
    write_meta(model_dir, meta)
    return clf


def fit_stack(cfg: Config, context: dict, inputs, splits: Splits) -> dict[str, np.ndarray]:
    """The second stage (``stack_window``): a multinomial regression on
    :func:`newstag_model.probability.stack_features` of the first stage's out-of-fold train scores (``stack_folds``
    folds of articles, so that each score comes from a model that never saw the sentence, as at tagging time), every
    train sentence weighted as in the first stage.  Returns its arrays in label order, for ``baseline.npz``."""
    labels, y = list(cfg.labels), splits.train["label"].to_numpy()
    weight = splits.train["weight"].to_numpy()
    fold = stacking.article_folds(inputs["article"], cfg.model.stack_folds, cfg.seed)
    scores = np.zeros((len(inputs), len(labels)))
    for k in range(cfg.model.stack_folds):
        held_out, rest = fold == k, fold != k
        if held_out.any():
            pipeline = build(cfg.model, cfg.seed, context).fit(inputs[rest], y[rest], clf__sample_weight=weight[rest])
            coef, intercept = stacking.label_rows(pipeline[-1], labels)
            scores[held_out] = pipeline[:-1].transform(inputs[held_out]) @ coef.T + intercept
    features = stack_features(inputs, log_softmax(scores), cfg.model.stack_window)
    return stacking.fit(features, y, labels, cfg.seed, weight)


def save(pipeline: Pipeline, model_dir: Path, extra: dict[str, np.ndarray] | None = None) -> dict:
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
    np.savez(model_dir / "baseline.npz", **arrays, **(extra or {}))
    return {"spec": "baseline.json", "weights": "baseline.npz"}
