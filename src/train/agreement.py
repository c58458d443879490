"""How far two annotators agree: Cohen's kappa per label and the overlap of the speaker spans they marked.

The first labels are taken as they were before adjudication (``first`` in the adjudication file), so kappa
measures the annotators, not the adjudicated corpus.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

from train.config import LABELS
from train.data import DataError
from train.realnews import SPEAKER_LABELS, speaker_span


def _rows(path: str | Path) -> list[dict]:
    if not Path(path).is_file():
        raise DataError(f"{path}: no such file")
    return [json.loads(line) for line in Path(path).read_text(encoding="utf-8").splitlines() if line.strip()]


def _span(text: str, speaker: str | None) -> tuple[int, int] | None:
    span = speaker_span(text, speaker)
    return tuple(span) if span else None


def span_agreement(pairs: list[tuple[dict, dict]]) -> dict:
    """On sentences both annotators gave a speaker label: same span, overlapping span, or both none."""
    both = [(a, b) for a, b in pairs if a["label"] in SPEAKER_LABELS and b["label"] in SPEAKER_LABELS and "speaker" in b]
    if not both:
        return {}
    exact = overlap = 0
    for a, b in both:
        x = tuple(a["speaker_span"]) if a.get("speaker_span") else None
        y = _span(a["text"], b.get("speaker"))
        exact += x == y
        overlap += x == y or (x is not None and y is not None and x[0] < y[1] and y[0] < x[1])
    return {"span_n": len(both), "span_exact": round(exact / len(both), 4), "span_overlap": round(overlap / len(both), 4)}


def agreement(corpus: str | Path, second: str | Path, adjudication: str | Path) -> dict:
    """Cohen's kappa between the first labels (as they were before adjudication) and a blind second pass."""
    from sklearn.metrics import cohen_kappa_score

    current = {r["id"]: r for r in _rows(corpus)}
    before = {r["id"]: r["first"] for r in _rows(adjudication)}
    pairs = [({**current[r["id"]], "label": before.get(r["id"], current[r["id"]]["label"])}, r) for r in _rows(second)]
    a, b = [p[0]["label"] for p in pairs], [p[1]["label"] for p in pairs]
    out = {"n": len(pairs), "observed_agreement": round(sum(x == y for x, y in zip(a, b)) / len(pairs), 4),
           "kappa": round(float(cohen_kappa_score(a, b)), 4)}
    for label in LABELS:
        out[f"kappa_{label}"] = round(float(cohen_kappa_score([x == label for x in a], [y == label for y in b])), 4)
    out["disagreements"] = dict(Counter(f"{x} -> {y}" for x, y in zip(a, b) if x != y))
    out.update(span_agreement(pairs))
    return out
