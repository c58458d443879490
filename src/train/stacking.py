"""The second stage (``model.stack_window``): a multinomial regression over
:func:`newstag_model.probability.stack_features`, so a sentence is scored with its neighbours' first-stage labels
("The company denied it." after an allegation, the inside pieces of a quotation after the sentence that names its
speaker).

It must learn from scores the first stage gives sentences it never saw, as at tagging time.  The baseline gets
them on train, out of fold (``baseline.fit_stack``: five cheap refits).  The transformer cannot (k fine-tunings),
so it learns on dev (:func:`fit_on_dev`), cross-fitted by article folds: the dev scores the run reports come from
stages that never saw the article.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.linear_model import LogisticRegression

from newstag_model.probability import stack_features

ABSENT = -30.0  # the score of a label that a fitted model never saw


def article_folds(article, folds: int, seed: int) -> np.ndarray:
    """Each row's fold, drawn per article, so an article's sentences never straddle the fit and the held-out part."""
    article = np.asarray(article)
    return np.random.default_rng(seed).integers(0, folds, article.max(initial=-1) + 1)[article]


def fit(features: np.ndarray, y, labels: list[str], seed: int, weight=None) -> dict[str, np.ndarray]:
    """The stage's arrays as the classifiers read them (``stack.coef``, ``stack.intercept``, label order)."""
    second = LogisticRegression(max_iter=3000, random_state=seed).fit(features, y, sample_weight=weight)
    coef, intercept = label_rows(second, labels)
    return {"stack.coef": coef, "stack.intercept": intercept}


def fit_on_dev(frame: pd.DataFrame, log_proba: np.ndarray, gold: list[str], labels: list[str], window: int,
               folds: int, seed: int) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """The stage fitted on all of dev, and dev's cross-fitted second-stage scores: each article's from a stage fitted
    on the other folds.  No stage ({}, the first stage's scores) where dev has a single label."""
    features, y = stack_features(frame, log_proba, window), np.asarray(gold)
    if len(set(y)) < 2:
        return {}, log_proba
    fold, held_out = article_folds(frame["article"], folds, seed), np.zeros_like(log_proba)
    for k in range(folds):
        rest = fold != k
        if (fold == k).any() and len(set(y[rest])) > 1:
            arrays = fit(features[rest], y[rest], labels, seed)
            held_out[~rest] = features[~rest] @ arrays["stack.coef"].T + arrays["stack.intercept"]
        else:  # a fold that leaves one label to fit on (a tiny dev set): the first stage's own scores
            held_out[~rest] = log_proba[~rest]
    return fit(features, y, labels, seed), held_out


def label_rows(linear, labels: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """A fitted linear model's coefficients and intercepts as one row a label, in label order: a binary model's
    single row scores its second class against 0, and a label the model never saw (a fold of a tiny set) scores
    ``ABSENT``."""
    coef, intercept, seen = linear.coef_, linear.intercept_, list(linear.classes_)
    if coef.shape[0] == 1 and len(seen) == 2:
        coef, intercept = np.vstack([np.zeros_like(coef), coef]), np.concatenate([[0.0], intercept])
    rows = [(coef[seen.index(label)], intercept[seen.index(label)]) if label in seen else
            (np.zeros(coef.shape[1]), ABSENT) for label in labels]
    return np.array([r[0] for r in rows]), np.array([r[1] for r in rows])
