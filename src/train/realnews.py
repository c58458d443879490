"""The real-news part of the corpus: paraphrased articles from public pages, one JSON object a line.

An article: `article_id`, `source_url`, `outlet`, `title`, `topic`, `region`, `date` (or null) and `sentences`,
each `{"text", "label", "speaker"}` where `speaker` is the source as written in that sentence (a substring of
`text`) for `attributed_quote` / `official_response`, or null when the sentence does not name it.
`python -m train.realnews FILE...` checks files while they are written and prints their counts.
"""
from __future__ import annotations

import json
import re
import sys
from collections import Counter, defaultdict
from pathlib import Path
from urllib.parse import urlsplit

from train.config import LABELS
from train.provenance import load_exclusions, outlet_group, outlet_of, outlet_split, url_hash, url_key

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
    """Character span of the speaker in the sentence: its first occurrence as whole words ("he" is not in "the")."""
    if not speaker:
        return None
    match = re.search(rf"(?<!\w){re.escape(speaker)}(?!\w)", text) or re.search(re.escape(speaker), text)
    return [match.start(), match.end()] if match else None


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


def _linked_groups(articles: list[dict]) -> dict[str, str]:
    """Outlet -> the (alphabetically first) outlet of its component, joining outlets that carry related stories."""
    parent: dict[str, str] = {}

    def find(x: str) -> str:
        parent.setdefault(x, x)
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    outlet = {a["article_id"]: outlet_group(a["outlet"]) for a in articles}
    for group in outlet.values():
        find(group)
    for x, y, _ in related_stories(articles):
        a, b = find(outlet[x]), find(outlet[y])
        parent[max(a, b)] = min(a, b)
    return {o: find(o) for o in set(outlet.values())}


def related_stories(articles: list[dict]) -> list[tuple[str, str, str]]:
    """(article, article, why) for raw articles related closely enough that their outlets share a split."""
    return same_story([(a["article_id"], a["source_url"], a["title"], [s["text"] for s in a["sentences"]])
                       for a in articles], threshold=RELATED)


def assign_outlet_splits(articles: list[dict], seed: int) -> dict[str, str]:
    """Article -> split with no outlet in two splits, so dev and test measure newsrooms never trained on.

    Outlets that carry related stories move together, so no saga is learnt in train and scored in test.
    """
    linked = _linked_groups(articles)
    return {a["article_id"]: outlet_split(linked[outlet_group(a["outlet"])], seed) for a in articles}


def sentence_rows(article: dict, split: str) -> list[dict]:
    """One labelled row per sentence, with provenance, the title and the speaker's character span."""
    sentences = article["sentences"]
    rows = []
    for i, s in enumerate(sentences):
        text = s["text"].strip()
        speaker = s.get("speaker") or None
        rows.append({
            "id": f"{article['article_id']}-{i:03d}", "article_id": article["article_id"], "sentence_index": i,
            "text": text, "label": s["label"], "split": split, "origin": "real",
            "topic": article["topic"].strip().lower(), "region": article["region"], "title": article["title"].strip(),
            "outlet": article["outlet"], "source_url": article["source_url"], "date": article.get("date"),
            "speaker": speaker, "speaker_span": speaker_span(text, speaker),
            "prev": sentences[i - 1]["text"].strip() if i else "",
            "next": sentences[i + 1]["text"].strip() if i + 1 < len(sentences) else "",
        })
    return rows


_KEY_TOKEN = re.compile(r"(?<![.!?]\s)(?<!^)\b(?:[A-Z][\w'’-]{2,}|\d[\d,.]*\d|\d{2,})\b")


def story_keys(title: str, texts: list[str]) -> set[str]:
    """Names and numbers of a story: what two paraphrases of one story share whatever their wording."""
    return {m.group(0).lower().rstrip(".,") for t in [title, *texts] for m in _KEY_TOKEN.finditer(t)}


SAME_STORY, RELATED = 0.35, 0.25  # shares of names and numbers two articles have in common


def same_story(articles: list[tuple[str, str, str, list[str]]], threshold: float = SAME_STORY) -> list[tuple[str, str, str]]:
    """(id, id, why) for article pairs that tell one story: one page URL, or most of their names and numbers.

    `articles` holds (article_id, source_url, title, sentence texts).
    """
    pairs = []
    by_url: dict[str, str] = {}
    keys = []
    for aid, url, title, texts in articles:
        # The page's identity keeps its query: `news.php?id=1` and `news.php?id=2` are two pages.
        key = url_key(url) + (f"?{urlsplit(url).query}" if urlsplit(url).query else "") if url else ""
        if key and key in by_url:
            pairs.append((by_url[key], aid, f"same page {key}"))
        by_url.setdefault(key, aid)
        keys.append((aid, story_keys(title, texts)))
    index: dict[str, list[int]] = defaultdict(list)
    for n, (_, k) in enumerate(keys):
        for token in k:
            index[token].append(n)
    seen = set()
    for members in index.values():
        if len(members) > 50:  # common words ("The", years) say nothing about a story
            continue
        for x, i in enumerate(members):
            for j in members[x + 1:]:
                if (i, j) in seen:
                    continue
                seen.add((i, j))
                a, b = keys[i][1], keys[j][1]
                if min(len(a), len(b)) >= 6:
                    jac = len(a & b) / len(a | b)
                    if jac >= threshold:
                        pairs.append((keys[i][0], keys[j][0], f"{jac:.0%} of names and numbers shared"))
    return pairs


ORIGINS = ("real", "synthetic")


def corpus_problems(rows: list[tuple[int, dict]], excluded: set[str], path: str | Path) -> list[str]:
    """Provenance checks on built sentence rows (line number, row): origin, source fields, the exclusion list,
    the speaker span, one story per article and outlet-disjoint splits."""
    problems = []
    articles: dict[str, dict] = {}
    for number, row in rows:
        origin = row.get("origin")
        if origin not in ORIGINS:
            problems.append(f"{path}:{number}: origin {origin!r} is not one of {', '.join(ORIGINS)}")
            continue
        if origin != "real":
            continue
        missing = [k for k in ("source_url", "outlet", "title") if not row.get(k)]
        if missing:
            problems.append(f"{path}:{number}: a real sentence needs {', '.join(missing)}")
            continue
        span, speaker = row.get("speaker_span"), row.get("speaker")
        if speaker and (not span or row["text"][span[0]:span[1]] != speaker):
            problems.append(f"{path}:{number}: speaker_span {span} does not mark {speaker!r} in the text")
        a = articles.setdefault(row["article_id"], {"line": number, "urls": set(), "outlet": row["outlet"],
                                                    "split": set(), "title": row["title"], "texts": []})
        a["urls"].add(row["source_url"])
        a["split"].add(row.get("split"))
        a["texts"].append(row["text"])
    for aid, a in articles.items():
        if len(a["urls"]) > 1:
            problems.append(f"{path}:{a['line']}: article {aid} has several source_urls")
        for url in a["urls"]:
            if url_hash(url) in excluded:
                problems.append(f"{path}:{a['line']}: article {aid} comes from a page on the evaluation exclusion list ({url})")
    stories = [(aid, min(a["urls"]), a["title"], a["texts"]) for aid, a in articles.items()]
    for x, y, why in same_story(stories):
        problems.append(f"{path}:{articles[y]['line']}: article {y} tells the same story as {x} ({why})")
    for x, y, why in same_story(stories, threshold=RELATED):
        if articles[x]["split"] != articles[y]["split"]:
            problems.append(f"{path}:{articles[y]['line']}: article {y} is related to {x} ({why}) but in another split")
    splits_of: dict[str, set] = defaultdict(set)
    for a in articles.values():
        splits_of[outlet_group(a["outlet"])] |= a["split"]
    for group, names in sorted(splits_of.items()):
        if len(names) > 1:
            problems.append(f"outlet {group} is in several splits: {sorted(names)}")
    return problems


def load_dir(raw_dir: Path) -> list[dict]:
    """Every article of `raw_dir/*.jsonl`; a malformed line or article stops the build with file:line."""
    from train.data import DataError

    excluded = load_exclusions()
    articles, seen = [], {}
    for path in sorted(Path(raw_dir).glob("*.jsonl")):
        for number, article, error in read_articles(path):
            problems = [error] if error else article_problems(article, excluded)
            if problems:
                raise DataError(f"{path}:{number}: " + "; ".join(problems))
            if article["article_id"] in seen:
                raise DataError(f"{path}:{number}: article id {article['article_id']!r} already used at {seen[article['article_id']]}")
            seen[article["article_id"]] = f"{path}:{number}"
            articles.append(article)
    return articles


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
