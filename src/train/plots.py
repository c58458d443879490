"""Figures logged to every run; each takes plain arrays so any model kind yields the same pictures."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

SHORT = {"claim": "claim", "attributed_quote": "quote", "unverified": "unverified", "official_response": "official"}


def _short(labels):
    return [SHORT.get(label, label) for label in labels]


def confusion_figure(matrix: np.ndarray, labels: tuple[str, ...], title: str):
    """Counts and row-normalised rates side by side."""
    return confusion_grid([matrix], labels, [title])


def confusion_grid(matrices: list[np.ndarray], labels: tuple[str, ...], titles: list[str]):
    """One row per model: counts, then rates normalised by gold label."""
    fig, axes = plt.subplots(len(matrices), 2, figsize=(11, 4.6 * len(matrices)), squeeze=False)
    for row, matrix, title in zip(axes, matrices, titles):
        rates = matrix / np.clip(matrix.sum(axis=1, keepdims=True), 1, None)
        for ax, data, fmt, name in ((row[0], matrix, "d", "counts"), (row[1], rates, ".2f", "normalised by gold")):
            ax.imshow(data, cmap="Blues")
            ax.set_xticks(range(len(labels)), _short(labels), rotation=30, ha="right")
            ax.set_yticks(range(len(labels)), _short(labels))
            ax.set_xlabel("predicted")
            ax.set_ylabel("gold")
            ax.set_title(f"{title} ({name})")
            top = data.max() or 1
            for i in range(len(labels)):
                for j in range(len(labels)):
                    ax.text(j, i, format(data[i, j], fmt), ha="center", va="center",
                            color="white" if data[i, j] > top / 2 else "black")
    fig.tight_layout()
    return fig


def per_class_figure(metrics: dict[str, float], labels: tuple[str, ...], split: str):
    """Precision, recall and F1 per class, with the bootstrap interval on F1 where it was computed."""
    fig, ax = plt.subplots(figsize=(8, 4))
    x = np.arange(len(labels))
    for k, name in enumerate(("precision", "recall", "f1")):
        values = [metrics[f"{split}/{name}_{label}"] for label in labels]
        err = None
        if name == "f1" and f"{split}/f1_{labels[0]}_lo" in metrics:
            err = np.array([[v - metrics[f"{split}/f1_{label}_lo"], metrics[f"{split}/f1_{label}_hi"] - v]
                            for v, label in zip(values, labels)]).T
        ax.bar(x + (k - 1) * 0.27, values, 0.27, label=name, yerr=err, capsize=3)
    ax.set_xticks(x, _short(labels))
    ax.set_ylim(0, 1)
    ax.set_title(f"{split}: per-class scores (macro-F1 {metrics[f'{split}/macro_f1']:.3f})")
    ax.legend(loc="lower right")
    fig.tight_layout()
    return fig


def reliability_figure(bins: pd.DataFrame, title: str):
    """Accuracy per confidence bin (``metrics.calibration_bins``, the bins ECE is computed on) with its count."""
    mids, acc, count, width = bins["mid"], bins["accuracy"], bins["count"], 1 / len(bins)
    fig, ax = plt.subplots(figsize=(5, 5))
    ax.plot([0, 1], [0, 1], "--", color="grey", label="perfect calibration")
    ax.bar(mids, acc, width=width, edgecolor="black", alpha=0.7, label="accuracy in bin")
    for m, a, c in zip(mids, acc, count):
        if c:
            ax.text(m, min((a if a == a else 0) + 0.02, 0.97), str(c), ha="center", fontsize=7)
    ax.set_xlabel("confidence (top probability)")
    ax.set_ylabel("accuracy")
    ax.set_title(title)
    ax.legend(loc="upper left")
    fig.tight_layout()
    return fig


def coverage_figure(curve: pd.DataFrame, title: str):
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(curve["coverage"], curve["accuracy"], marker="o")
    for _, row in curve.iloc[::4].iterrows():
        ax.annotate(f"{row['threshold']:.2f}", (row["coverage"], row["accuracy"]), fontsize=7)
    ax.set_xlabel("coverage (share of sentences labelled)")
    ax.set_ylabel("accuracy on labelled sentences")
    ax.set_title(title)
    fig.tight_layout()
    return fig


def close(fig) -> None:
    plt.close(fig)
