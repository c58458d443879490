"""Which sentence segmenter fits our data: boundary precision/recall/F1 and speed on the labelled articles.

Gold sentences come from the annotated corpus (data/corpus/raw): each paragraph is rebuilt as one line of text
with single spaces between its sentences, so the segmenter must find every boundary inside a paragraph.
A predicted sentence counts as correct only when both its start and end offsets match a gold sentence.
Usage: python benchmarks/segmenters.py [--repeats 3]
"""

from __future__ import annotations

import argparse
import glob
import json
import statistics
import time

from infer.segment import BACKENDS, easy_spans, raw_spans, sure_starts, syntok_only, syntok_spans


def gold_articles() -> list[tuple[str, set[tuple[int, int]]]]:
    out = []
    for path in sorted(glob.glob("data/corpus/raw/*.jsonl")):
        for line in open(path, encoding="utf-8"):
            article = json.loads(line)
            text, spans = "", set()
            for paragraph in article["paragraphs"]:
                for k, (sentence, *_) in enumerate(paragraph):
                    text += " " if k else ("\n" if text else "")
                    spans.add((len(text), len(text) + len(sentence)))
                    text += sentence
            out.append((text, spans))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    articles = gold_articles()
    n_gold = sum(len(g) for _, g in articles)
    rows = []
    for backend in BACKENDS:
        times, predicted = [], []
        for _ in range(args.repeats):
            start = time.perf_counter()
            predicted = [set(raw_spans(text, backend)) for text, _ in articles]
            times.append(time.perf_counter() - start)
        tp = sum(len(p & g) for p, (_, g) in zip(predicted, articles))
        n_pred = sum(len(p) for p in predicted)
        precision, recall = tp / n_pred, tp / n_gold
        rows.append((backend, precision, recall, 2 * precision * recall / (precision + recall), statistics.median(times)))
    fastest = min(r[4] for r in rows)
    print(f"{len(articles)} articles, {n_gold} gold sentences, median of {args.repeats} runs\n")
    print("| segmenter | precision | recall | F1 | seconds | sentences/s | time vs fastest |")
    print("|---|---|---|---|---|---|---|")
    for backend, p, r, f, t in sorted(rows, key=lambda row: -row[3]):
        print(f"| {backend} | {p:.4f} | {r:.4f} | {f:.4f} | {t:.2f} | {n_gold / t:,.0f} | {t / fastest:.1f}x |")
    fast_path_report([line for text, _ in articles for line in text.split("\n")], args.repeats)


def fast_path_report(lines: list[str], repeats: int) -> None:
    """How many lines the fast path answers whole, how many more it cuts into pieces, whether the sentences equal
    syntok's, and the time it saves."""
    answered = sum(easy_spans(line) is not None for line in lines)
    cut = sum(easy_spans(line) is None and bool(sure_starts(line)) for line in lines)
    differ = sum(list(syntok_spans(line)) != list(syntok_only(line)) for line in lines)
    alone = statistics.median(_seconds(lambda: [list(syntok_only(line)) for line in lines]) for _ in range(repeats))
    both = statistics.median(_seconds(lambda: [list(syntok_spans(line)) for line in lines]) for _ in range(repeats))
    print(f"\nsyntok fast path: answers {answered:,} of {len(lines):,} lines ({answered / len(lines):.0%}) whole and "
          f"cuts {cut:,} more into pieces; {differ} differ from syntok; syntok alone {alone:.2f} s, with the fast "
          f"path {both:.2f} s ({alone / both:.1f}x)")


def _seconds(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


if __name__ == "__main__":
    main()
