"""Tag articles with a logged model, loaded by URI: segmentation, batching across articles, one row a sentence.

Only the MLflow model is needed (labels, weights and runtime travel inside it); nothing from ``train`` is imported.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass

import pandas as pd
import pyarrow as pa

from infer import rows
from infer.errors import JobError
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
    """The label order a logged model declares in its metadata (``prob_<label>`` columns come in this order)."""
    labels = (model.metadata.metadata or {}).get("labels")
    if not labels:
        raise JobError("the model declares no labels in its metadata: it was not logged by `newstag train`, "
                       "or by a version older than this one; retrain it")
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


@dataclass(frozen=True)
class Spec:
    """What a worker process (Spark task or local worker) needs to rebuild the job's tagger from a local model copy."""

    model_dir: str
    model_uri: str
    version: str | None
    runtime: str | None
    segmenter: str
    min_score: float | None
    batch_size: int
    threads: int | None = None

    def build(self) -> "Tagger":
        tagger = Tagger(self.model_dir, runtime=self.runtime, segmenter=self.segmenter, min_score=self.min_score,
                        batch_size=self.batch_size, threads=self.threads)
        tagger.model_uri, tagger.version = self.model_uri, self.version  # rows name the model as the user did
        return tagger


class Tagger:
    def __init__(self, model_uri: str, runtime: str | None = None, segmenter: str = "syntok",
                 min_score: float | None = None, batch_size: int = 4096, threads: int | None = None):
        import mlflow

        self.model_uri = model_uri
        # Only what is set goes to the model: a model logged before `threads` existed still loads.
        config = {k: v for k, v in {"runtime": runtime, "threads": threads}.items() if v is not None}
        # suppress_warnings: MLflow would scan every installed package against the model's requirements (~0.4 s a start).
        self.model = mlflow.pyfunc.load_model(model_uri, model_config=config or None, suppress_warnings=True)
        self.version = model_version(model_uri)
        self.labels = model_labels(self.model)
        self.schema = rows.schema(self.labels)
        self.segmenter = segmenter
        # An explicit threshold wins; else the one the model was trained with (config eval.min_score), if any.
        logged = (self.model.metadata.metadata or {}).get("min_score")
        self.min_score = min_score if min_score is not None else logged
        self.batch_size = batch_size
        self.seconds = {"segment": 0.0, "model": 0.0}  # where tagging time goes, for summaries and benchmarks

    @property
    def runtime(self) -> str | None:
        """The runtime the model computes with on this machine (what ``auto`` resolved to); None for a model with
        one runtime (the baseline) and for ensembles logged before 2026-12-05, whose loader did not name one."""
        return getattr(getattr(self.model.unwrap_python_model(), "classifier", None), "runtime", None)

    @property
    def settable(self) -> dict:
        """What the model lets ``load_model(model_config=...)`` set: its runtime (and intra-op threads, since
        2026-12) for a transformer, nothing for the baseline, which computes on one thread."""
        return (self.model.metadata.flavors.get("python_function") or {}).get("config") or {}

    def auto_workers(self) -> int:
        """``--workers auto``: one process a core for a one-thread model, else one (its runtime uses every core)."""
        from infer.pool import cores

        return 1 if self.settable else cores()

    def predict(self, inputs: pd.DataFrame) -> pd.DataFrame:
        """Model outputs for `inputs` (text, article_id, sentence_index, title; at least one row), in order.

        Batches are cut only between articles, so each sentence is read with its whole article as context.
        """
        parts = [self.model.predict(inputs.iloc[a:b].reset_index(drop=True))
                 for a, b in _article_batches(inputs["article_id"].tolist(), self.batch_size)]
        out = pd.concat(parts, ignore_index=True)
        if self.min_score is not None:
            out.loc[out["score"] < self.min_score, "label"] = NEEDS_REVIEW
        return out

    def tag(self, articles: list[Article]) -> pa.Table:
        """One row per sentence of every article, in article then sentence order, typed by :mod:`infer.rows`."""
        start = time.perf_counter()
        sentences = [(article.id, index, span.start, span.end, span.text) for article in articles
                     for index, span in enumerate(segment(article.text, article.title, self.segmenter))]
        middle = time.perf_counter()
        self.seconds["segment"] += middle - start
        if not sentences:
            return self.schema.empty_table()
        titles = {a.id: a.title or "" for a in articles}
        predictions = self.predict(pd.DataFrame({
            "text": [model_text(s[4]) for s in sentences], "article_id": [s[0] for s in sentences],
            "sentence_index": [s[1] for s in sentences], "title": [titles[s[0]] for s in sentences]}))
        self.seconds["model"] += time.perf_counter() - middle
        return rows.build(self.schema, sentences, predictions, self.model_uri, self.version)
