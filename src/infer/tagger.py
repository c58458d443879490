"""Tag articles with a logged model, loaded by URI: segmentation, batching across articles, one row a sentence.

Only the MLflow model is needed (labels, weights and runtime travel inside it); nothing from ``train`` is imported.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass

import pandas as pd

from infer.segment import model_text, segment

NEEDS_REVIEW = "needs_review"
_ALIAS = re.compile(r"^models:/(?P<name>[^/@]+)@(?P<alias>[^/]+)$")
_VERSION = re.compile(r"^models:/(?P<name>[^/@]+)/(?P<version>\d+)$")


def model_version(uri: str) -> str | None:
    """The registry version behind ``models:/name@alias`` or ``models:/name/3``; None for run or logged-model URIs."""
    import mlflow

    if m := _VERSION.match(uri):
        return m["version"]
    if m := _ALIAS.match(uri):
        return str(mlflow.MlflowClient().get_model_version_by_alias(m["name"], m["alias"]).version)
    return None


def model_labels(model) -> tuple[str, ...]:
    """The label order a logged model declares in its metadata (models logged before it did: one probe call)."""
    labels = (model.metadata.metadata or {}).get("labels")
    if not labels:
        probe = model.predict(pd.DataFrame({"text": ["."]}))
        labels = [c[len("prob_"):] for c in probe.columns if c.startswith("prob_")]
    return tuple(labels)


def _article_batches(article_ids: list, size: int):
    """(start, end) row ranges of at least `size` rows (bar the last), never splitting an article."""
    start = 0
    for i in range(1, len(article_ids) + 1):
        if i == len(article_ids) or (i - start >= size and article_ids[i] != article_ids[i - 1]):
            yield start, i
            start = i


@dataclass(frozen=True)
class Article:
    id: str
    text: str
    title: str | None = None


class Tagger:
    def __init__(self, model_uri: str, runtime: str | None = None, segmenter: str = "syntok",
                 min_score: float | None = None, batch_size: int = 512):
        import mlflow

        self.model_uri = model_uri
        # suppress_warnings: MLflow would scan every installed package against the model's requirements (~0.4 s a start).
        self.model = mlflow.pyfunc.load_model(model_uri, model_config={"runtime": runtime} if runtime else None,
                                            suppress_warnings=True)
        self.version = model_version(model_uri)
        self.labels = model_labels(self.model)
        self.segmenter = segmenter
        # An explicit threshold wins; else the one the model was trained with (config eval.min_score), if any.
        logged = (self.model.metadata.metadata or {}).get("min_score")
        self.min_score = min_score if min_score is not None else logged
        self.batch_size = batch_size
        self.seconds = {"segment": 0.0, "model": 0.0}  # where tagging time goes, for summaries and benchmarks

    @property
    def columns(self) -> list[str]:
        return ["article_id", "sentence_index", "start", "end", "text", "label", "score",
                *(f"prob_{label}" for label in self.labels), "model_uri", "model_version"]

    def predict(self, rows: pd.DataFrame) -> pd.DataFrame:
        """Model outputs for `rows` (text, article_id, sentence_index, title), in order.

        Batches are cut only between articles, so each sentence is read with its whole article as context.
        """
        parts = [self.model.predict(rows.iloc[a:b].reset_index(drop=True))
                 for a, b in _article_batches(rows["article_id"].tolist(), self.batch_size)]
        if not parts:  # a chunk with no sentences still needs every column, with its type
            return pd.DataFrame({"label": pd.Series(dtype="str"), "score": pd.Series(dtype="float64"),
                                 **{f"prob_{label}": pd.Series(dtype="float64") for label in self.labels}})
        out = pd.concat(parts, ignore_index=True)
        if self.min_score is not None:
            out.loc[out["score"] < self.min_score, "label"] = NEEDS_REVIEW
        return out

    def tag(self, articles: list[Article]) -> pd.DataFrame:
        """One row per sentence of every article, in article then sentence order."""
        start = time.perf_counter()
        rows = []
        for article in articles:
            for index, span in enumerate(segment(article.text, article.title, self.segmenter)):
                rows.append((article.id, index, span.start, span.end, span.text))
        frame = pd.DataFrame(rows, columns=["article_id", "sentence_index", "start", "end", "text"])
        titles = {a.id: a.title or "" for a in articles}
        inputs = pd.DataFrame({"text": [model_text(t) for t in frame["text"]],
                               "article_id": frame["article_id"].astype(str), "sentence_index": frame["sentence_index"],
                               "title": [titles[a] for a in frame["article_id"]]})
        middle = time.perf_counter()
        predictions = self.predict(inputs)
        self.seconds["segment"] += middle - start
        self.seconds["model"] += time.perf_counter() - middle
        frame = pd.concat([frame, predictions.reset_index(drop=True)], axis=1)
        frame["model_uri"] = self.model_uri
        frame["model_version"] = self.version
        # Fixed types, so every chunk (even an empty one) has the same Parquet schema.
        types = {"article_id": "str", "sentence_index": "int64", "start": "int64", "end": "int64", "text": "str",
                 "label": "str", "score": "float64", "model_uri": "str", "model_version": "string"}
        return frame[self.columns].astype(types | {f"prob_{label}": "float64" for label in self.labels})
