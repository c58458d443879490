"""Batch tagging of generated dumps: throughput, peak memory, and where the time goes.

Each dump is built from the corpus sentences (random articles of ``--sentences MIN MAX`` sentences with a byline
and a credit line), then tagged by ``newstag tag`` in a fresh process under GNU time, so peak RSS is that of the
whole job, duplicate-id detection included.  Memory must not grow with the dump: a column compares each peak with
the smallest dump's.  Each size runs ``--repeats`` times; the table shows medians.
Usage: python benchmarks/dump_throughput.py --model models:/newstag@champion [--sizes 10000 100000]
       python benchmarks/dump_throughput.py --train-baseline --sizes 10000 100000 1000000 --sentences 1 3
       (--train-baseline trains configs/baseline.yaml into a temporary MLflow store and tags with it)
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import pandas as pd

BIN = Path(sys.executable).parent


def make_dump(path: Path, n: int, sentences: list[str], lengths: tuple[int, int], seed: int = 0) -> None:
    rng = random.Random(seed)
    with open(path, "w", encoding="utf-8") as fh:
        for i in range(n):
            body = " ".join(rng.sample(sentences, rng.randint(*lengths)))
            text = f"By Staff Reporter\n{body}\nPhoto: Newsroom/Archive"
            fh.write(json.dumps({"id": f"bench-{i:07d}", "title": f"Story {i}", "text": text}) + "\n")


def run(dump: Path, output: Path, model: str, runtime: str | None, *options: str) -> dict:
    """The job's summary, plus ``peak_mib`` (the largest single process: with --workers, the main one or a worker)
    and ``wall_seconds`` (the whole process: start-up and model load included)."""
    command = ["/usr/bin/time", "-v", str(BIN / "newstag"), "tag", str(dump), "-o", str(output),
               "--model", model, "--no-progress", *options] + (["--runtime", runtime] if runtime else [])
    proc = subprocess.run(command, capture_output=True, text=True)
    if proc.returncode not in (0, 3):
        raise SystemExit(proc.stderr)
    peak_kb = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", proc.stderr).group(1))
    wall = re.search(r"Elapsed \(wall clock\) time.*: (?:(\d+):)?(\d+):([\d.]+)", proc.stderr).groups(default="0")
    return {**json.loads(proc.stdout.strip().splitlines()[-1]), "peak_mib": peak_kb / 1024,
            "wall_seconds": int(wall[0]) * 3600 + int(wall[1]) * 60 + float(wall[2])}


def train_baseline(store: Path) -> str:
    """configs/baseline.yaml trained into a throwaway sqlite store; returns its model URI."""
    os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{store / 'mlflow.db'}"
    proc = subprocess.run([str(BIN / "newstag"), "train", "-c", "configs/baseline.yaml", "--set", "eval.bootstrap=0"],
                          capture_output=True, text=True, cwd=Path(__file__).resolve().parents[1])
    if proc.returncode:
        raise SystemExit(proc.stderr)
    return json.loads(proc.stdout.strip().splitlines()[-1])["model_uri"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="models:/newstag@champion")
    parser.add_argument("--train-baseline", action="store_true", help="train the baseline into a temporary store first")
    parser.add_argument("--runtime", help="transformer runtime, as `newstag tag --runtime` takes it (default: the model's)")
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--sentences", type=int, nargs=2, default=[4, 12], metavar=("MIN", "MAX"))
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--data", default="data/corpus/sentences.jsonl")
    args = parser.parse_args()
    sentences = pd.read_json(args.data, lines=True)["text"].tolist()
    with tempfile.TemporaryDirectory() as tmp:
        model = train_baseline(Path(tmp)) if args.train_baseline else args.model
        print(f"model {model}" + (f" ({args.runtime})" if args.runtime else "") + f", {args.sentences[0]}-"
              f"{args.sentences[1]} sentences an article, Parquet output, one process, median of {args.repeats}\n")
        print("| articles | sentences | seconds | articles/s | sentences/s | peak RSS MiB | vs smallest | read | segment "
              "| model | write |")
        print("|---|---|---|---|---|---|---|---|---|---|---|", flush=True)
        base = None
        for n in args.sizes:  # a row as soon as its size is done: a long run interrupted keeps what it measured
            dump = Path(tmp) / f"dump-{n}.jsonl"
            make_dump(dump, n, sentences, tuple(args.sentences))
            runs = [run(dump, Path(tmp) / f"out-{n}.parquet", model, args.runtime) for _ in range(args.repeats)]
            s = {k: statistics.median(r[k] for r in runs) for k in ("sentences", "seconds", "read_seconds",
                                                                   "segment_seconds", "model_seconds", "write_seconds")}
            peak = statistics.median(r["peak_mib"] for r in runs)
            base = base or peak
            share = [s[f"{k}_seconds"] / s["seconds"] for k in ("read", "segment", "model", "write")]
            print(f"| {n:,} | {s['sentences']:,} | {s['seconds']:.1f} | {n / s['seconds']:,.0f} "
                  f"| {s['sentences'] / s['seconds']:,.0f} | {peak:,.0f} | {peak / base - 1:+.1%} | "
                  + " | ".join(f"{v:.0%}" for v in share) + " |", flush=True)
            (Path(tmp) / f"out-{n}.parquet").unlink()
            dump.unlink()

if __name__ == "__main__":
    main()
