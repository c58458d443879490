"""Build the labelled corpus from the annotated articles (``newstag data build``).

Raw articles (``data/corpus/raw/*.jsonl``: paragraphs of ``[text, C|Q|U|O, rule?]``) are never edited by code;
``build`` derives ``sentences.jsonl`` with neighbours as context and a fixed split per article, stratified by
topic so every split sees every topic.  Checking a built file is ``train.validate``'s job.
"""

from __future__ import annotations

import json
import zlib
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np

from train import realnews
from train.data import DataError, file_digest
from train.provenance import CORPUS_SEED, outlet_group

CODES = {"C": "claim", "Q": "attributed_quote", "U": "unverified", "O": "official_response"}
SHARES = {"train": 0.70, "dev": 0.15, "test": 0.15}


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


def _moved_articles(out: Path, rows: list[dict], real_articles: list[dict]) -> str | None:
    """Why the rebuild may not replace `out`: the articles already in it whose split would change, and the added
    real articles that join their outlet to another's (`None` when nothing moves).  Splits are meant to be fixed,
    but outlets that carry related stories are joined, so one added article that tells a held-out story pulls that
    outlet into train (or a train outlet into dev or test) without any other sign."""
    if not out.exists():
        return None
    before: dict[str, str] = {}
    with out.open(encoding="utf-8") as lines:
        for number, line in enumerate(lines, 1):
            try:
                row = json.loads(line)
                before[row["article_id"]] = row["split"]
            except (json.JSONDecodeError, KeyError, TypeError):
                raise DataError(f"{out}:{number}: not a built corpus row, so the rebuild cannot tell which articles "
                                "it would move; choose another --out or remove the file") from None
    after = {r["article_id"]: r["split"] for r in rows}
    moved = sorted(a for a in before if a in after and after[a] != before[a])
    if not moved:
        return None
    added = {a["article_id"] for a in real_articles if a["article_id"] not in before}
    group = {a["article_id"]: outlet_group(a["outlet"]) for a in real_articles}
    causes = sorted((new, old, why) for x, y, why in realnews.related_stories(real_articles)
                    for new, old in ((x, y), (y, x)) if new in added and old in before and group[new] != group[old])
    lines = [f"{len(moved)} articles already in {out} would change split: "
             + ", ".join(f"{a} {before[a]} -> {after[a]}" for a in moved[:20]) + (" ..." if len(moved) > 20 else "")]
    lines += [f"  added article {new} joins its outlet to {old}'s ({why})" for new, old, why in causes]
    lines.append("Drop the added articles that tell a story the corpus holds in another split (log them in pages/), "
                 "or rebuild with --allow-split-changes to re-split on purpose.")
    return "\n".join(lines)


def build(raw: str | Path, out: str | Path, seed: int = CORPUS_SEED, real: str | Path | None = None,
          allow_split_changes: bool = False) -> dict:
    """sentences.jsonl from the synthetic articles (`raw`) and the real-news ones (`real`, split by outlet).  An
    existing `out` is replaced only when no article in it changes split, unless `allow_split_changes`."""
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
    moved = None if allow_split_changes else _moved_articles(out, rows, real_articles)
    if moved:
        raise DataError(moved)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    tmp.replace(out)
    return {"output": str(out), "articles": len(articles) + len(real_articles), "sentences": len(rows),
            "digest": file_digest(out), "splits": {f"{o}/{k}": v for (o, k), v in
                                                   sorted(Counter((r["origin"], r["split"]) for r in rows).items())}}
