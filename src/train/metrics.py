"""Every score the project reports is computed here, under stable names (``dev/macro_f1``, ``test/f1_claim``),
so runs of any model kind line up column for column in the MLflow UI."""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.metrics import accuracy_score, confusion_matrix, f1_score, precision_recall_fscore_support

PRIMARY = "dev/macro_f1"


def predicted(proba: np.ndarray, labels: tuple[str, ...]) -> list[str]:
    return [labels[i] for i in np.asarray(proba).argmax(axis=1)]


def expected_calibration_error(y_true: list[str], proba: np.ndarray, labels: tuple[str, ...], bins: int = 15) -> float:
    """Top-label ECE: the gap between confidence and accuracy, averaged over equal-width confidence bins."""
    proba = np.asarray(proba)
    conf = proba.max(axis=1)
    correct = np.array([labels[i] == t for i, t in zip(proba.argmax(axis=1), y_true)], dtype=float)
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.digitize(conf, edges[1:-1]), 0, bins - 1)
    ece = 0.0
    for b in range(bins):
        mask = which == b
        if mask.any():
            ece += mask.mean() * abs(conf[mask].mean() - correct[mask].mean())
    return float(ece)


def scores(y_true: list[str], proba: np.ndarray, labels: tuple[str, ...], prefix: str) -> dict[str, float]:
    y_pred = predicted(proba, labels)
    p, r, f, support = precision_recall_fscore_support(y_true, y_pred, labels=list(labels), zero_division=0)
    out = {
        f"{prefix}/accuracy": float(accuracy_score(y_true, y_pred)),
        f"{prefix}/macro_f1": float(f.mean()),
        f"{prefix}/ece": expected_calibration_error(y_true, proba, labels),
        f"{prefix}/n": float(len(y_true)),
    }
    for i, label in enumerate(labels):
        out[f"{prefix}/precision_{label}"] = float(p[i])
        out[f"{prefix}/recall_{label}"] = float(r[i])
        out[f"{prefix}/f1_{label}"] = float(f[i])
        out[f"{prefix}/support_{label}"] = float(support[i])
    return out


def bootstrap_intervals(
    y_true: list[str], y_pred: list[str], labels: tuple[str, ...], prefix: str, n: int, seed: int
) -> dict[str, float]:
    """Percentile 95 % intervals for macro-F1 and per-class F1 from ``n`` resamples of the sentences."""
    if n <= 0:
        return {}
    index = {label: i for i, label in enumerate(labels)}
    t = np.array([index[y] for y in y_true])
    p = np.array([index[y] for y in y_pred])
    rng = np.random.default_rng(seed)
    draws = np.empty((n, len(labels) + 1))
    for k in range(n):
        s = rng.integers(0, len(t), len(t))
        f = f1_score(t[s], p[s], labels=list(range(len(labels))), average=None, zero_division=0)
        draws[k] = [f.mean(), *f]
    lo, hi = np.percentile(draws, [2.5, 97.5], axis=0)
    names = ["macro_f1"] + [f"f1_{label}" for label in labels]
    out = {}
    for name, a, b in zip(names, lo, hi):
        out[f"{prefix}/{name}_lo"] = float(a)
        out[f"{prefix}/{name}_hi"] = float(b)
    return out


def confusion(y_true: list[str], y_pred: list[str], labels: tuple[str, ...]) -> np.ndarray:
    return confusion_matrix(y_true, y_pred, labels=list(labels))


def errors_table(frame: pd.DataFrame, proba: np.ndarray, labels: tuple[str, ...], split: str) -> pd.DataFrame:
    """Misclassified sentences with gold, predicted and every probability: what a reviewer reads first."""
    y_pred = predicted(proba, labels)
    table = pd.DataFrame(
        {
            "split": split,
            "article_id": frame["article_id"].astype(str).to_numpy() if "article_id" in frame else "",
            "text": frame["text"].to_numpy(),
            "gold": frame["label"].to_numpy(),
            "predicted": y_pred,
            "score": np.asarray(proba).max(axis=1),
        }
    )
    for i, label in enumerate(labels):
        table[f"prob_{label}"] = np.asarray(proba)[:, i]
    return table[table["gold"] != table["predicted"]].reset_index(drop=True)


def coverage_curve(y_true: list[str], proba: np.ndarray, labels: tuple[str, ...]) -> pd.DataFrame:
    """Accuracy on the sentences kept, for each score threshold: the trade-off behind ``--min-score``."""
    proba = np.asarray(proba)
    conf = proba.max(axis=1)
    correct = np.array([labels[i] == t for i, t in zip(proba.argmax(axis=1), y_true)])
    rows = []
    for threshold in np.round(np.arange(0.0, 1.0, 0.05), 2):
        kept = conf >= threshold
        rows.append(
            {
                "threshold": float(threshold),
                "coverage": float(kept.mean()),
                "accuracy": float(correct[kept].mean()) if kept.any() else float("nan"),
            }
        )
    return pd.DataFrame(rows)
