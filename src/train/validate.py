"""Validate a labelled sentence file (``newstag data validate``; CI runs it on the shipped corpus).

Schema and labels line by line, then what only the whole file shows: an article in two splits, exact and near
duplicates across splits (leakage), the real-news provenance checks of ``train.realnews`` and the label balance
of the synthetic part.
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from pathlib import Path

from train import realnews
from train.config import LABELS
from train.data import SPLITS, DataError
from train.dedup import near_duplicates, normalise
from train.provenance import load_exclusions

MAX_CHARS = 1000
STOCK_WORDS = 8  # shorter near-duplicates across splits are stock lines, reported as warnings


def validate(path: str | Path, min_share: float = 0.12, exclusions: str | Path | None = None) -> dict:
    path = Path(path)
    errors: list[str] = []
    warnings: list[str] = []
    rows = []
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        try:
            row = json.loads(line)
        except json.JSONDecodeError as err:
            errors.append(f"{path}:{number}: invalid JSON ({err.msg})")
            continue
        problems = [f"missing `{k}`" for k in ("text", "label", "article_id", "split") if k not in row]
        text = row.get("text")
        if not isinstance(text, str) or not text.strip():
            problems.append("empty text")
        elif len(text) > MAX_CHARS:
            problems.append(f"text longer than {MAX_CHARS} characters")
        if row.get("label") not in LABELS:
            problems.append(f"unknown label {row.get('label')!r}")
        if row.get("split") not in SPLITS:
            problems.append(f"unknown split {row.get('split')!r}")
        if problems:
            errors.append(f"{path}:{number}: " + "; ".join(problems))
        else:
            rows.append((number, row))
    errors.extend(realnews.corpus_problems(rows, load_exclusions(exclusions), path))
    split_of: dict[str, set] = defaultdict(set)
    for _, row in rows:
        split_of[row["article_id"]].add(row["split"])
    for aid, names in sorted(split_of.items()):
        if len(names) > 1:
            errors.append(f"article {aid} is in several splits: {sorted(names)}")
    first: dict[str, tuple[int, dict]] = {}
    for number, row in rows:
        key = normalise(row["text"])
        if key not in first:
            first[key] = (number, row)
            continue
        earlier = first[key][1]
        message = f"{path}:{number}: exact duplicate of line {first[key][0]}"
        # A stock line ("It gave no further details.") in both origins of one split, or a line a page repeats,
        # teaches nothing wrong; the same line in two splits leaks.
        if earlier["split"] != row["split"] or (earlier.get("origin") == row.get("origin")
                                                and earlier["article_id"] != row["article_id"]):
            errors.append(message)
        else:
            warnings.append(message + f" (same split {row['split']})")
    for i, j, jac in near_duplicates([r["text"] for _, r in rows]):
        (ni, ri), (nj, rj) = rows[i], rows[j]
        message = f"{path}:{nj}: near duplicate of line {ni} (Jaccard {jac})"
        if ri["split"] != rj["split"] and len(rj["text"].split()) >= STOCK_WORDS:
            errors.append(message + f" across splits {ri['split']}/{rj['split']}")
        elif ri["split"] != rj["split"]:  # "He gave no further details." recurs in real copy: not a leak
            warnings.append(message + f" across splits {ri['split']}/{rj['split']} (a short stock line)")
        elif normalise(ri["text"]) != normalise(rj["text"]):
            warnings.append(message + f" within {ri['split']}")
    labels = Counter(r["label"] for _, r in rows)
    total = sum(labels.values()) or 1
    shares = {label: round(labels[label] / total, 4) for label in LABELS}
    # The synthetic part was written to a label balance; real news has the shares it has (few hedges).
    designed = Counter(r["label"] for _, r in rows if r.get("origin", "synthetic") == "synthetic")
    for label in LABELS:
        share = designed[label] / (sum(designed.values()) or 1)
        if designed and share < min_share:
            errors.append(f"label {label} is {share:.1%} of the synthetic corpus, under the minimum {min_share:.0%}")
    return {
        "ok": not errors, "path": str(path), "sentences": len(rows), "articles": len(split_of),
        "errors": len(errors), "warnings": len(warnings), "label_counts": dict(labels), "label_shares": shares,
        "split_counts": dict(Counter(r["split"] for _, r in rows)),
        "origin_counts": dict(Counter(r.get("origin") for _, r in rows)),
        "real_outlets": len({r["outlet"] for _, r in rows if r.get("origin") == "real" and r.get("outlet")}),
        "messages": [f"error: {m}" for m in errors] + [f"warning: {m}" for m in warnings],
    }
