"""Is a paraphrase too close to its page?  Each title and sentence against the page excerpt it was written from.

Writers save the excerpt of every page they use (``EXCERPTS/<article_id>.txt``, kept out of the repository: it is
the page's own text) and run ``python -m train.copycheck raw/NAME.jsonl --excerpts EXCERPTS`` as they go.  Two
findings, both ignoring case and punctuation: a run of ``RUN`` or more words shared with the page, and a sentence
that is some stretch of the page but for one word added, dropped or changed (short quotes and captions, which
rewording from memory missed most often).  Kept free of heavy imports, like ``train.provenance``.
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

RUN = 15  # words: the brief's limit since the eighth wave
_WORD = re.compile(r"[a-z0-9]+(?:'[a-z0-9]+)*")


def words(text: str) -> list[str]:
    return _WORD.findall(text.lower().replace("\u2019", "'"))


def longest_run(sentence: list[str], page: list[str]) -> int:
    """The longest run of consecutive words the two share."""
    best, previous = 0, [0] * (len(page) + 1)
    for word in sentence:
        current = [0] * (len(page) + 1)
        for j, other in enumerate(page, 1):
            if word == other:
                current[j] = previous[j - 1] + 1
                best = max(best, current[j])
        previous = current
    return best


def _one_edit(a: list[str], b: list[str]) -> bool:
    """Whether a and b differ by at most one word added, dropped or changed."""
    if len(a) > len(b):
        a, b = b, a
    if len(b) - len(a) > 1:
        return False
    if len(a) == len(b):
        return sum(x != y for x, y in zip(a, b)) <= 1
    i = next((k for k, (x, y) in enumerate(zip(a, b)) if x != y), len(a))
    return a[i:] == b[i + 1:]


def near_copy(sentence: list[str], page: list[str]) -> bool:
    """Whether the sentence (four words or more) is a stretch of the page but for one word."""
    n = len(sentence)
    return n >= 4 and any(_one_edit(sentence, page[k:k + m]) for m in (n - 1, n, n + 1)
                          for k in range(max(0, len(page) - m) + 1))


def findings(article: dict, page_text: str) -> list[tuple[str, str, str]]:
    """(where, why, text) for the title ("title") and each sentence (its index) too close to the page."""
    page = words(page_text)
    items = [("title", article.get("title", ""))] + [(str(i), s.get("text", ""))
                                                      for i, s in enumerate(article.get("sentences", []))]
    out = []
    for where, text in items:
        tokens = words(text)
        run = longest_run(tokens, page)
        if run >= RUN:
            out.append((where, f"{run} words in a row as on the page", text))
        elif near_copy(tokens, page):
            out.append((where, "the page's words but for one", text))
    return out


def check(path: Path, excerpts: Path) -> int:
    """Prints a line per finding (``file:line: article sentence N: why: text``); returns how many."""
    count = 0
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            article = json.loads(line)
            article_id = article["article_id"]
        except (ValueError, KeyError, TypeError) as err:
            print(f"{path}:{number}: not an article ({type(err).__name__}: {err})")
            count += 1
            continue
        page = excerpts / f"{article_id}.txt"
        if not page.is_file():
            print(f"{path}:{number}: {article_id}: no saved excerpt {page}")
            count += 1
            continue
        for where, why, text in findings(article, page.read_text(encoding="utf-8")):
            label = "title" if where == "title" else f"sentence {where}"
            print(f"{path}:{number}: {article_id} {label}: {why}: {text}")
            count += 1
    return count


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m train.copycheck", description=__doc__.split("\n\n")[0])
    parser.add_argument("files", nargs="+", type=Path, help="writers' article files (raw/NAME.jsonl)")
    parser.add_argument("--excerpts", type=Path, required=True, help="folder of <article_id>.txt page excerpts")
    args = parser.parse_args(argv)
    total = 0
    for path in args.files:
        if not path.is_file():
            print(f"{path}: no such file")
            total += 1
            continue
        total += check(path, args.excerpts)
    print(f"{total} flagged")
    return 1 if total else 0


if __name__ == "__main__":
    raise SystemExit(main())
