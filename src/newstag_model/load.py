"""One loader a model kind, and the ensemble, whose members load through it."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from newstag_model.baseline import BaselineClassifier
from newstag_model.context import with_context
from newstag_model.probability import pool_quote_spans, softmax
from newstag_model.schema import as_frame, read_meta
from newstag_model.transformer import TransformerClassifier


class EnsembleClassifier:
    """Several models read as one: the weighted geometric mean of their per-sentence probabilities (meta
    ``weights``, fitted on dev), scaled by a temperature fitted there too, then one decision a quotation.

    Members are model directories under ``members/``, each loaded by its own kind with the runtime asked for (a
    baseline ignores it) and read with its own context; the ensemble's context only says whether to pool."""

    def __init__(self, model_dir: Path, meta: dict, runtime: str | None = None, threads: int | None = None):
        self.labels = tuple(meta["labels"])
        self.context = meta.get("context") or {}
        self.members = [load(model_dir / member["dir"], runtime, threads) for member in meta["members"]]
        self.runtime = next((m.runtime for m in self.members if getattr(m, "runtime", None)), None)  # its encoder's
        self.weights = np.asarray(meta["weights"], dtype=np.float64)
        self.temperature = float(meta.get("temperature", 1.0))

    def member_log_proba(self, inputs) -> np.ndarray:
        """(members, rows, labels): each member's per-sentence log-probabilities, each read with its own context."""
        frame = as_frame(inputs)
        return np.stack([np.log(np.clip(m.sentence_proba(with_context(frame, **m.context)), 1e-12, None))
                         for m in self.members])

    def combine(self, log_proba: np.ndarray, weights=None, temperature: float | None = None) -> np.ndarray:
        """Normalised weighted geometric mean of the members' probabilities (``member_log_proba``)."""
        weights = self.weights if weights is None else np.asarray(weights, dtype=np.float64)
        temperature = self.temperature if temperature is None else temperature
        return softmax(np.tensordot(weights, log_proba, axes=1) / temperature)

    def predict_proba(self, inputs) -> np.ndarray:
        frame = with_context(inputs, quote_spans=bool(self.context.get("quote_spans")))
        return pool_quote_spans(self.combine(self.member_log_proba(inputs)), frame["span"])


# The registry of model kinds is train/kinds.py; this package may not import it (it travels alone with each model,
# see the package docstring), so it keeps this one dispatch table, which tests hold equal to the registry's loaders.
LOADERS = {"baseline": BaselineClassifier, "transformer": TransformerClassifier, "ensemble": EnsembleClassifier}


def load(model_dir: str | Path, runtime: str | None = None, threads: int | None = None):
    """The classifier of a model directory, by the kind its ``meta.json`` names."""
    model_dir = Path(model_dir)
    meta = read_meta(model_dir)
    if meta["kind"] not in LOADERS:
        raise ValueError(f"{model_dir}: unknown model kind {meta['kind']!r}")
    return LOADERS[meta["kind"]](model_dir, meta, runtime, threads)
