"""What a logged model reads and writes: its ``meta.json``, its input columns and its output frame."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd


META = "meta.json"


def read_meta(model_dir: str | Path) -> dict:
    return json.loads((Path(model_dir) / META).read_text(encoding="utf-8"))


def write_meta(model_dir: str | Path, meta: dict) -> None:
    (Path(model_dir) / META).write_text(json.dumps(meta, indent=2), encoding="utf-8")


# What a logged model reads: column -> (MLflow type, required).  The signature and `model_inputs` come from here.
INPUT_COLUMNS = {"text": ("string", True), "article_id": ("string", False), "sentence_index": ("long", False),
                 "title": ("string", False)}


def as_frame(inputs) -> pd.DataFrame:
    """Texts, a Series or a DataFrame with `text` (+ optional `article_id`, `sentence_index`, `title`)."""
    if isinstance(inputs, pd.Series):
        inputs = inputs.to_frame("text")
    if not isinstance(inputs, pd.DataFrame):
        inputs = pd.DataFrame({"text": list(inputs)})
    if "text" not in inputs.columns:
        raise ValueError("newstag models take a DataFrame with a `text` column")
    return inputs


def model_inputs(frame: pd.DataFrame) -> pd.DataFrame:
    """What a logged model reads of labelled rows: the text and, where present, its place in its article."""
    columns = [c for c in INPUT_COLUMNS if c in frame.columns]
    inputs = frame[columns].copy()
    if "article_id" in inputs.columns:
        inputs["article_id"] = inputs["article_id"].map(lambda a: None if pd.isna(a) else str(a))
    return inputs


def predictions_frame(labels: tuple[str, ...], proba: np.ndarray) -> pd.DataFrame:
    """The pyfunc's output: ``label``, ``score`` and one ``prob_<label>`` column per label, in label order."""
    proba = np.asarray(proba, dtype=np.float64).reshape(-1, len(labels))
    frame = pd.DataFrame({"label": [labels[i] for i in proba.argmax(axis=1)], "score": proba.max(axis=1)})
    for i, label in enumerate(labels):
        frame[f"prob_{label}"] = proba[:, i]
    return frame
