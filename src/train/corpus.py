"""Build the labelled corpus from the annotated articles, and validate any labelled sentence file.

Raw articles (``data/corpus/raw/*.jsonl``: paragraphs of ``[text, C|Q|U|O, rule?]``) are never edited by code;
``build`` derives ``sentences.jsonl`` with neighbours as context and a fixed split per article, stratified by
topic so every split sees every topic.  ``validate`` is what CI runs on the shipped corpus.
"""

from __future__ import annotations

import json
import re
import zlib
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np

from train.config import LABELS
from train import realnews
from train.data import DataError, file_digest
from train.provenance import load_exclusions

CODES = {"C": "claim", "Q": "attributed_quote", "U": "unverified", "O": "official_response"}
SHARES = {"train": 0.70, "dev": 0.15, "test": 0.15}
MAX_CHARS = 1000
NEAR = 0.8
STOCK_WORDS = 8  # shorter near-duplicates across splits are stock lines, reported as warnings


def _raw_articles(raw_dir: Path):
    files = sorted(raw_dir.glob("*.jsonl"))
    if not files:
        raise DataError(f"{raw_dir}: no *.jsonl files")
    seen: dict[str, str] = {}
    for path in files:
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if not line.strip():
                continue
            where = f"{path}:{number}"
            try:
                article = json.loads(line)
                aid, paragraphs = article["article_id"], article["paragraphs"]
            except (json.JSONDecodeError, KeyError, TypeError) as err:
                raise DataError(f"{where}: not an article record ({err})") from None
            if aid in seen:
                raise DataError(f"{where}: article id {aid!r} already used at {seen[aid]}")
            seen[aid] = where
            for p, paragraph in enumerate(paragraphs):
                for s, item in enumerate(paragraph):
                    if not (isinstance(item, list) and 2 <= len(item) <= 3 and isinstance(item[0], str) and item[1] in CODES):
                        raise DataError(f"{where}: article {aid}, paragraph {p + 1}, sentence {s + 1}: expected [text, C|Q|U|O, rule?], got {item!r}")
            yield path, article


def _assign(articles: list[dict], seed: int) -> dict[str, str]:
    """70/15/15 by article within each topic, shuffled by the seed: fixed, and no topic missing from a split."""
    by_topic: dict[str, list[str]] = defaultdict(list)
    for article in articles:
        by_topic[article.get("topic", "").strip().lower()].append(article["article_id"])
    out: dict[str, str] = {}
    for topic in sorted(by_topic):
        ids = sorted(by_topic[topic])
        order = np.random.default_rng([seed, zlib.crc32(topic.encode())]).permutation(len(ids))
        n_dev = round(len(ids) * SHARES["dev"])
        n_test = round(len(ids) * SHARES["test"])
        for rank, j in enumerate(order):
            out[ids[j]] = "dev" if rank < n_dev else "test" if rank < n_dev + n_test else "train"
    return out


def build(raw: str | Path, out: str | Path, seed: int = 13, real: str | Path | None = None) -> dict:
    """sentences.jsonl from the synthetic articles (`raw`) and the real-news ones (`real`, split by outlet)."""
    raw, out = Path(raw), Path(out)
    articles = [(path, a) for path, a in _raw_articles(raw)]
    splits = _assign([a for _, a in articles], seed)
    rows = []
    for path, article in articles:
        sentences = [(p, item) for p, paragraph in enumerate(article["paragraphs"]) for item in paragraph]
        for i, (p, item) in enumerate(sentences):
            rows.append({
                "id": f"{article['article_id']}-{i:03d}", "article_id": article["article_id"], "sentence_index": i,
                "paragraph": p, "text": item[0].strip(), "label": CODES[item[1]], "rule": item[2] if len(item) > 2 else None,
                "split": splits[article["article_id"]], "topic": article.get("topic", "").strip().lower(),
                "style": article.get("style", "").strip().lower(), "region": article.get("region", ""),
                "batch": path.stem.rsplit("-", 1)[0], "origin": "synthetic", "title": article.get("title", "").strip(),
                "prev": sentences[i - 1][1][0] if i else "", "next": sentences[i + 1][1][0] if i + 1 < len(sentences) else "",
            })
    real_articles = realnews.load_dir(Path(real)) if real and Path(real).is_dir() else []
    real_splits = realnews.assign_outlet_splits(real_articles, seed)
    for article in real_articles:
        rows.extend(realnews.sentence_rows(article, real_splits[article["article_id"]]))
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    tmp.replace(out)
    return {"output": str(out), "articles": len(articles) + len(real_articles), "sentences": len(rows),
            "digest": file_digest(out), "splits": {f"{o}/{k}": v for (o, k), v in
                                                   sorted(Counter((r["origin"], r["split"]) for r in rows).items())}}


def _norm(text: str) -> str:
    return re.sub(r"\s+", " ", text.lower()).strip()


def _shingles(text: str, k: int = 5) -> set[str]:
    t = _norm(text)
    return {t[i : i + k] for i in range(max(1, len(t) - k + 1))}


def near_duplicates(texts: list[str], threshold: float = NEAR, seed: int = 0) -> list[tuple[int, int, float]]:
    """Pairs with character 5-gram Jaccard >= threshold: MinHash (16 bands x 4 rows) proposes, exact Jaccard decides."""
    sets = [_shingles(t) for t in texts]
    prime, n_hash = (1 << 61) - 1, 64
    rng = np.random.default_rng(seed)
    a = rng.integers(1, prime, n_hash, dtype=np.uint64).astype(object)
    b = rng.integers(0, prime, n_hash, dtype=np.uint64).astype(object)
    buckets: dict[tuple, list[int]] = defaultdict(list)
    for idx, shingles in enumerate(sets):
        x = np.array([zlib.crc32(s.encode()) for s in shingles], dtype=object)
        signature = [int(((ai * x + bi) % prime).min()) for ai, bi in zip(a, b)]
        for band in range(16):
            buckets[(band, *signature[band * 4 : band * 4 + 4])].append(idx)
    candidates = {(i, j) for members in buckets.values() if len(members) > 1
                  for k, i in enumerate(members) for j in members[k + 1 :]}
    pairs = []
    for i, j in sorted(candidates):
        jaccard = len(sets[i] & sets[j]) / len(sets[i] | sets[j])
        if jaccard >= threshold:
            pairs.append((i, j, round(jaccard, 3)))
    return pairs


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
        if row.get("split") not in SHARES:
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
        key = _norm(row["text"])
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
        elif _norm(ri["text"]) != _norm(rj["text"]):
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
