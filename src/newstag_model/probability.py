"""From scores to probabilities: softmax, the second stage that reads the neighbours' first-stage labels, and one
decision a quotation."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd


def log_softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))


def softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def stack_features(frame: pd.DataFrame, log_proba: np.ndarray, window: int) -> np.ndarray:
    """The baseline's second stage input (``stack_window``), one row per sentence of a :func:`with_context` frame:
    its first-stage log-probabilities; those of each sentence up to `window` before and after it in its article
    (zeros, and a flag 0, where there is none); whether it is first, second, last or alone; whether it starts inside
    a quotation and continues an earlier sentence's; the article's mean first-stage probabilities.  The neighbours'
    labels tell what a lone sentence cannot: "The company denied it." after an allegation, or the inside pieces of a
    quotation after the sentence that names its speaker."""
    n, labels = log_proba.shape
    article, position = frame["article"].to_numpy(), frame["position"].to_numpy()
    order = np.lexsort((position, article))  # reading order: a neighbour is the next row of the same article
    columns = [log_proba]
    for offset in [d for d in range(-window, window + 1) if d]:
        there = np.arange(n) + offset
        ok = (there >= 0) & (there < n)
        ok[ok] &= article[order[there[ok]]] == article[order[ok]]
        values, present = np.zeros((n, labels)), np.zeros((n, 1))
        values[order[ok]], present[order[ok]] = log_proba[order[there[ok]]], 1.0
        columns += [values, present]
    articles = article.max(initial=-1) + 1
    size = np.bincount(article, minlength=articles)[article]
    columns.append(np.column_stack([position == 0, position == 1, position == size - 1, size == 1,
                                    frame["quoted"].str.len().to_numpy() > 0,
                                    frame["span"].to_numpy() != np.arange(n)]).astype(np.float64))
    mean = np.zeros((articles, labels))
    np.add.at(mean, article, np.exp(log_proba))
    columns.append(mean[article] / size[:, None])
    return np.hstack(columns)


def read_stack(path: Path, meta: dict) -> tuple[int, tuple[np.ndarray, np.ndarray] | None]:
    """A model's second stage (meta ``stack_window``; its arrays ``stack.coef`` and ``stack.intercept`` in the npz
    file at `path`) as (window, (coef, intercept)), or (0, None) for a model without one."""
    window = int(meta.get("stack_window", 0))
    if not window:
        return 0, None
    with np.load(path, allow_pickle=False) as npz:
        return window, (npz["stack.coef"], npz["stack.intercept"])


def second_stage(frame: pd.DataFrame, log_proba: np.ndarray, window: int, stack) -> np.ndarray:
    """The second stage's scores, in label order, from the first stage's log-probabilities of a whole frame."""
    coef, intercept = stack
    return stack_features(frame, log_proba, window) @ coef.T + intercept


def pool_quote_spans(proba: np.ndarray, span) -> np.ndarray:
    """One decision for each quotation that runs over several sentences (guideline rule 4: its inside pieces take
    its speaker's label, and on the real corpus 97 % of such quotations carry one label): each of its sentences
    gets the normalised geometric mean of their probabilities, so the sentence that names the speaker lends its
    evidence to the ones that do not.  `span` comes from :func:`with_context`; other rows keep their own."""
    span = np.asarray(span, dtype=np.int64)
    joined = np.flatnonzero(span != np.arange(len(span)))
    if not len(joined):
        return proba
    members = np.union1d(joined, span[joined])
    heads, inverse = np.unique(span[members], return_inverse=True)
    logp = np.zeros((len(heads), proba.shape[1]))
    np.add.at(logp, inverse, np.log(np.clip(proba[members], 1e-12, None)))
    pooled = proba.copy()
    pooled[members] = softmax(logp / np.bincount(inverse)[:, None])[inverse]
    return pooled
