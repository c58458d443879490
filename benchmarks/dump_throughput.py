"""Batch tagging of generated dumps (10k and 100k articles): throughput, peak memory, and where the time goes.

Each dump is built from the corpus sentences (random articles of 4-12 sentences with a byline and a credit line),
then tagged by ``newstag tag`` in a fresh process under GNU time, so peak RSS is that of the whole job.  Memory
must not grow with the dump: the last column compares each peak with the smallest dump's.
Usage: python benchmarks/dump_throughput.py --model models:/newstag@champion [--sizes 10000 100000]
"""

from __future__ import annotations

import argparse
import json
import random
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import pandas as pd


def make_dump(path: Path, n: int, sentences: list[str], seed: int = 0) -> None:
    rng = random.Random(seed)
    with open(path, "w", encoding="utf-8") as fh:
        for i in range(n):
            body = " ".join(rng.sample(sentences, rng.randint(4, 12)))
            text = f"By Staff Reporter\n{body}\nPhoto: Newsroom/Archive"
            fh.write(json.dumps({"id": f"bench-{i:07d}", "title": f"Story {i}", "text": text}) + "\n")


def run(dump: Path, output: Path, model: str, runtime: str | None) -> tuple[dict, float]:
    command = ["/usr/bin/time", "-v", str(Path(sys.executable).parent / "newstag"), "tag", str(dump), "-o", str(output),
               "--model", model, "--no-progress"] + (["--runtime", runtime] if runtime else [])
    proc = subprocess.run(command, capture_output=True, text=True)
    if proc.returncode not in (0, 3):
        raise SystemExit(proc.stderr)
    peak_kb = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", proc.stderr).group(1))
    return json.loads(proc.stdout.strip().splitlines()[-1]), peak_kb / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="models:/newstag@champion")
    parser.add_argument("--runtime", help="transformer runtime (torch, onnx, onnx-int8)")
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--data", default="data/corpus/sentences.jsonl")
    args = parser.parse_args()
    sentences = pd.read_json(args.data, lines=True)["text"].tolist()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for n in args.sizes:
            dump = Path(tmp) / f"dump-{n}.jsonl"
            make_dump(dump, n, sentences)
            summary, peak = run(dump, Path(tmp) / f"out-{n}.parquet", args.model, args.runtime)
            rows.append((n, summary, peak))
            (Path(tmp) / f"out-{n}.parquet").unlink()
    base = rows[0][2]
    print(f"model {args.model}" + (f" ({args.runtime})" if args.runtime else "") + ", Parquet output, one process\n")
    print("| articles | sentences | seconds | articles/s | sentences/s | peak RSS MiB | vs smallest | read | segment | model | write |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for n, s, peak in rows:
        total = s["seconds"]
        share = {k: s[f"{k}_seconds"] / total for k in ("read", "segment", "model", "write")}
        print(f"| {n:,} | {s['sentences']:,} | {total:.1f} | {s['articles_per_second']:,.0f} | {s['sentences_per_second']:,.0f} "
              f"| {peak:,.0f} | {peak / base - 1:+.1%} | " + " | ".join(f"{v:.0%}" for v in share.values()) + " |")


if __name__ == "__main__":
    main()
