"""The real-news part of the corpus: paraphrased articles from public pages, one JSON object a line.

An article: `article_id`, `source_url`, `outlet`, `title`, `topic`, `region`, `date` (or null) and `sentences`,
each `{"text", "label", "speaker"}` where `speaker` is the source as written in that sentence (a substring of
`text`) for `attributed_quote` / `official_response`, or null when the sentence does not name it.
`python -m train.realnews FILE...` checks files while they are written and prints their counts.
"""
from __future__ import annotations

import json
import sys
from collections import Counter
from pathlib import Path

from train.provenance import load_exclusions, outlet_of, url_hash

LABELS = ("claim", "attributed_quote", "unverified", "official_response")
SPEAKER_LABELS = {"attributed_quote", "official_response"}
REQUIRED = ("article_id", "source_url", "outlet", "title", "topic", "region", "sentences")
MIN_SENTENCES, MAX_SENTENCES = 8, 20


def read_articles(path: Path) -> list[tuple[int, dict | None, str | None]]:
    """(line number, article or None, parse error or None) for each non-blank line."""
    rows = []
    for number, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            rows.append((number, None, f"not JSON: {exc.msg}"))
            continue
        rows.append((number, obj, None) if isinstance(obj, dict) else (number, None, "not a JSON object"))
    return rows


def speaker_span(text: str, speaker: str | None) -> list[int] | None:
    """Character span of the speaker in the sentence: its first occurrence, as annotators mark it."""
    if not speaker:
        return None
    start = text.find(speaker)
    return [start, start + len(speaker)] if start >= 0 else None


def article_problems(article: dict, excluded: set[str]) -> list[str]:
    """Everything wrong with one article, as sentences a person can act on."""
    problems = [f"missing field {k!r}" for k in REQUIRED if not article.get(k)]
    url = article.get("source_url") or ""
    if url and url_hash(url) in excluded:
        problems.append(f"source_url is on the evaluation exclusion list: {url}")
    if url and article.get("outlet") and article["outlet"] != outlet_of(url):
        problems.append(f"outlet {article['outlet']!r} is not the URL's host {outlet_of(url)!r}")
    sentences = article.get("sentences") or []
    if not MIN_SENTENCES <= len(sentences) <= MAX_SENTENCES:
        problems.append(f"{len(sentences)} sentences (want {MIN_SENTENCES}-{MAX_SENTENCES})")
    for i, s in enumerate(sentences):
        if not isinstance(s, dict) or not str(s.get("text", "")).strip():
            problems.append(f"sentence {i}: no text")
            continue
        if s.get("label") not in LABELS:
            problems.append(f"sentence {i}: label {s.get('label')!r} is not one of {', '.join(LABELS)}")
        speaker = s.get("speaker")
        if speaker and s.get("label") not in SPEAKER_LABELS:
            problems.append(f"sentence {i}: a speaker is marked on a {s.get('label')} sentence")
        if speaker and speaker_span(s["text"], speaker) is None:
            problems.append(f"sentence {i}: speaker {speaker!r} is not in the text")
    return problems


def main(paths: list[str]) -> int:
    excluded = load_exclusions()
    labels, outlets, n_articles, n_bad = Counter(), set(), 0, 0
    for path in paths:
        for number, article, error in read_articles(Path(path)):
            problems = [error] if error else article_problems(article, excluded)
            for p in problems:
                print(f"{path}:{number}: {p}")
            n_bad += bool(problems)
            if article:
                n_articles += 1
                outlets.add(article.get("outlet"))
                labels.update(s.get("label") for s in article.get("sentences", []) if isinstance(s, dict))
    total = sum(labels.values())
    print(f"{n_articles} articles ({n_bad} with problems), {total} sentences, {len(outlets)} outlets")
    for label in LABELS:
        print(f"  {label:18s} {labels[label]:5d}  {labels[label] / max(total, 1):.1%}")
    return 1 if n_bad else 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
