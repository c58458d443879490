"""Every score the project reports is computed here, under stable names (``dev/macro_f1``, ``test/f1_claim``),
so runs of any model kind line up column for column in the MLflow UI."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from dataclasses import dataclass

from scipy.optimize import minimize_scalar
from sklearn.metrics import accuracy_score, confusion_matrix, f1_score, precision_recall_fscore_support

from newstag_model.probability import softmax

PRIMARY = "dev/macro_f1"  # early stopping and the best checkpoint rank by it; so should `promote --best-by`
PRIMARY_SPLIT, PRIMARY_NAME = PRIMARY.split("/", 1)  # the HF Trainer adds its own prefix (eval_macro_f1)
ECE_BINS = 15


def predicted(proba: np.ndarray, labels: tuple[str, ...]) -> list[str]:
    return [labels[i] for i in np.asarray(proba).argmax(axis=1)]


def calibration_bins(y_true: list[str], proba: np.ndarray, labels: tuple[str, ...]) -> pd.DataFrame:
    """Top-label confidence and accuracy in ECE_BINS equal-width bins: what ECE averages and the diagram draws."""
    proba = np.asarray(proba)
    conf = proba.max(axis=1)
    correct = np.array([labels[i] == t for i, t in zip(proba.argmax(axis=1), y_true)], dtype=float)
    edges = np.linspace(0.0, 1.0, ECE_BINS + 1)
    which = np.clip(np.digitize(conf, edges[1:-1]), 0, ECE_BINS - 1)
    rows = []
    for b in range(ECE_BINS):
        mask = which == b
        rows.append({"mid": (edges[b] + edges[b + 1]) / 2, "count": int(mask.sum()),
                     "confidence": float(conf[mask].mean()) if mask.any() else float("nan"),
                     "accuracy": float(correct[mask].mean()) if mask.any() else float("nan")})
    return pd.DataFrame(rows)


def expected_calibration_error(y_true: list[str], proba: np.ndarray, labels: tuple[str, ...]) -> float:
    """Top-label ECE: the gap between confidence and accuracy, weighted by each bin's share of the sentences."""
    bins = calibration_bins(y_true, proba, labels)
    used = bins[bins["count"] > 0]
    return float((used["count"] / used["count"].sum() * (used["confidence"] - used["accuracy"]).abs()).sum())


def fit_temperature(logits: np.ndarray, y: np.ndarray) -> float:
    """The temperature that minimises dev negative log-likelihood (Guo et al., 2017)."""

    def nll(log_t: float) -> float:
        z = logits / math.exp(log_t)
        z = z - z.max(axis=1, keepdims=True)
        return float(-(z[np.arange(len(y)), y] - np.log(np.exp(z).sum(axis=1))).mean())

    return float(math.exp(minimize_scalar(nll, bounds=(-3, 3), method="bounded").x))


def temperature_on_dev(logits: np.ndarray, gold: list[str], labels: tuple[str, ...]) -> dict[str, float]:
    """The dev temperature and dev ECE before and after it, under the metric names every model kind logs.

    The temperature is fitted for dev likelihood but kept only if it also lowers dev ECE, the calibration users
    read: one-epoch transformers fit T < 1, which sharpened every probability and raised dev ECE each time.
    """
    logits = np.asarray(logits, dtype=np.float64)
    fitted = fit_temperature(logits, np.array([labels.index(y) for y in gold]))
    before = expected_calibration_error(gold, softmax(logits), labels)
    after = expected_calibration_error(gold, softmax(logits / fitted), labels)
    kept = after < before
    return {"calibration/temperature": fitted if kept else 1.0, "calibration/temperature_fitted": fitted,
            "calibration/dev_ece_before": before, "calibration/dev_ece_after": after if kept else before}


def macro_f1_offsets(log_proba: np.ndarray, gold: list[str], labels: tuple[str, ...], pool=None,
                     grid: np.ndarray = np.round(np.arange(-1.5, 1.51, 0.1), 2), rounds: int = 3) -> np.ndarray:
    """Per-label offsets on the log-probabilities that maximise dev macro-F1: a model trained for likelihood with
    balanced class weights does not put its decision boundaries where macro-F1 wants them.  Coordinate ascent over
    `grid`, one label at a time, keeping the best value (ties: the one nearest 0).  `pool` maps probabilities to
    the ones scored (quotation pooling), as the model's own decisions are made."""
    y = np.array([labels.index(g) for g in gold])
    pool = pool or (lambda proba: proba)

    def score(offsets: np.ndarray) -> float:
        predicted = pool(softmax(log_proba + offsets)).argmax(axis=1)
        return f1_score(y, predicted, labels=range(len(labels)), average="macro", zero_division=0)

    offsets = np.zeros(len(labels))
    best = score(offsets)
    for _ in range(rounds):
        moved = False
        for j in range(len(labels)):
            for value in sorted(grid, key=abs):
                trial = offsets.copy()
                trial[j] = value
                if (gained := score(trial)) > best + 1e-12:
                    offsets, best, moved = trial, gained, True
        if not moved:
            break
    return offsets


def point_scores(y_true: list[str], proba: np.ndarray, labels: tuple[str, ...], prefix: str) -> dict[str, float]:
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


@dataclass(frozen=True)
class Report:
    split: str
    labels: tuple[str, ...]
    frame: pd.DataFrame  # the scored rows, with `label`
    proba: np.ndarray
    metrics: dict[str, float]


@dataclass(frozen=True)
class Evaluator:
    """The one scorer of predicted probabilities (as sentence-transformers' evaluators): the trainers, the HF
    Trainer's ``compute_metrics``, ``newstag evaluate``, ``compare`` and the data card all call it, so a number
    means the same wherever it is printed.  ``bootstrap`` resamples give 95 % intervals where asked for."""

    labels: tuple[str, ...]
    bootstrap: int = 0
    seed: int = 0

    def scores(self, y_true: list[str], proba: np.ndarray, split: str, intervals: bool = True) -> dict[str, float]:
        values = point_scores(y_true, proba, self.labels, split)
        if intervals:
            values.update(bootstrap_intervals(y_true, predicted(proba, self.labels), self.labels, split,
                                              self.bootstrap, self.seed))
        return values

    def report(self, frame: pd.DataFrame, proba: np.ndarray, split: str, intervals: bool = True) -> Report:
        proba = np.asarray(proba, dtype=np.float64)
        return Report(split, self.labels, frame, proba, self.scores(frame["label"].tolist(), proba, split, intervals))

    def primary(self, y_true: list[str], proba: np.ndarray) -> dict[str, float]:
        """The PRIMARY metric under its bare name (``macro_f1``): what the HF Trainer selects checkpoints by."""
        return {PRIMARY_NAME: self.scores(y_true, proba, PRIMARY_SPLIT, intervals=False)[PRIMARY]}


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
