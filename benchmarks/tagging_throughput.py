"""Tagging throughput of both model kinds in one run: what a user gets from ``newstag tag``, whole process.

Transformer: ``newstag tag`` on a dump of real-news dev/test articles, a fresh process per runtime (imports and
model load included), against the naive reference measured in the same run: ``transformers.pipeline`` called once
per sentence, its model already loaded, on exactly the inputs (sentence, and context if the model reads it) that
``newstag tag`` read; for a model that reads articles in chunks (``context.chunk_tokens``), which no per-sentence
call can give, each sentence with its title and `window` neighbours as the pair a one-sentence model reads, scored
from the mean of every token.  Labels and probabilities are compared with the torch fp32 runtime's; batch invariance is the
largest probability change when each article of the dump is tagged in a model call of its own (``--batch-size 1``).
Baseline: ``newstag tag`` on generated dumps (benchmarks/dump_throughput.py): sentences/s and segmentation share.
Usage: python benchmarks/tagging_throughput.py --transformer URI [URI ...] [--baseline URI] [--articles 400]
       [--sizes 10000 100000] [--repeats 3] [--runtimes [RUNTIME ...]] [--no-workers]
       (``--runtimes --no-workers``: the default runtime, torch and the naive loop only)
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
from dump_throughput import make_dump
from dump_throughput import run as tag_dump

from infer.pool import cores
from infer.segment import model_text
from newstag_model.context import with_context
from newstag_model.encoding import encoder_inputs
from newstag_model.load import load as load_classifier
from newstag_model.runtime import RUNTIMES, resolve_runtime
from newstag_model.schema import read_meta


def real_dump(path: Path, data: str, n: int) -> None:
    """The first `n` real-news dev (then test) articles, sentences joined as one paragraph, with titles."""
    frame = pd.read_json(data, lines=True)
    frame = frame[(frame["origin"] == "real") & frame["split"].isin(["dev", "test"])]
    frame = frame.sort_values(["split", "article_id", "sentence_index"])
    with open(path, "w", encoding="utf-8") as fh:
        for k, (aid, rows) in enumerate(frame.groupby(["split", "article_id"], sort=True)):
            if k == n:
                break
            fh.write(json.dumps({"id": aid[1], "title": rows["title"].iloc[0], "text": " ".join(rows["text"])}) + "\n")


def tag(dump: Path, model: str, out: Path, *options: str) -> tuple[float, pd.DataFrame, dict]:
    """Wall time of a whole ``newstag tag`` process, its output rows and its summary (the last stdout line)."""
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "newstag", "tag", str(dump), "-o", str(out), "--model", model,
                           "--no-progress", *options], capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if proc.returncode not in (0, 3):
        raise SystemExit(proc.stderr)
    return seconds, pd.read_parquet(out), json.loads(proc.stdout.strip().splitlines()[-1])


def naive_pipeline(model_dir: str, rows: pd.DataFrame, titles: dict[str, str]):
    """``transformers.pipeline`` over our weights, and the inputs it gets: one call per sentence."""
    import torch
    from transformers import PretrainedConfig, PreTrainedModel, pipeline
    from transformers.modeling_outputs import SequenceClassifierOutput
    from transformers.utils import logging as hf_logging

    # pipeline() logs, as an error, that the adapter is not a registered architecture, with every one that is
    hf_logging.set_verbosity(hf_logging.CRITICAL)
    clf = load_classifier(model_dir, runtime="torch")

    class Adapter(PreTrainedModel):
        config_class = PretrainedConfig

        def __init__(self):
            labels = clf.labels
            super().__init__(PretrainedConfig(id2label=dict(enumerate(labels)),
                                              label2id={label: i for i, label in enumerate(labels)}))
            self.inner = clf.model

        def forward(self, input_ids=None, attention_mask=None, **_):
            logits = self.inner(input_ids, attention_mask)["logits"]
            if logits.dim() == 3:  # a chunked model's logits are each token's: the input's mean
                mask = attention_mask[..., None].to(logits.dtype)
                logits = (logits * mask).sum(1) / mask.sum(1)
            return SequenceClassifierOutput(logits=logits)

    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(Path(model_dir) / "encoder")
    pipe = pipeline("text-classification", model=Adapter().eval(), tokenizer=tokenizer, device=-1, top_k=None,
                    truncation="longest_first", max_length=clf.max_length)
    inputs = pd.DataFrame({"text": rows["text"].map(model_text), "article_id": rows["article_id"],
                           "sentence_index": rows["sentence_index"], "title": rows["article_id"].map(titles)})
    texts, pairs = encoder_inputs(with_context(inputs, **{**clf.context, "chunk_tokens": 0}), tokenizer.sep_token,
                                  bool(clf.context.get("window") or clf.context.get("title")))
    calls = [{"text": t, "text_pair": p} for t, p in zip(texts, pairs)] if pairs else texts
    return pipe, calls, clf.labels, torch.get_num_threads()


def where_it_went(times: list[tuple[float, pd.DataFrame, dict]]) -> str:
    """Start-up (imports, model load) is the whole process less the job's own seconds; the job splits into reading,
    segmentation, model calls and writing, and what is left (batching, output rows)."""
    job = ("read", "segment", "model", "write")
    parts = {"start-up and model load": [t - s["seconds"] for t, _, s in times],
             **{key: [s[f"{key}_seconds"] for _, _, s in times] for key in job},
             "the rest": [s["seconds"] - sum(s[f"{key}_seconds"] for key in job) for _, _, s in times]}
    whole = statistics.median(t for t, *_ in times)
    return ", ".join(f"{name} {statistics.median(v):.1f} s ({statistics.median(v) / whole:.0%})"
                     for name, v in parts.items())


def median_time(fn, repeats: int):
    times, result = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


def transformer_table(uri: str, dump: Path, tmp: Path, repeats: int, others: list[str] | None = None,
                      workers: bool = True) -> None:
    """`others`: the runtimes measured besides the default (None: all; torch, the reference, always)."""
    import mlflow

    model_dir = os.path.join(mlflow.artifacts.download_artifacts(uri), "artifacts", "model")
    meta = read_meta(model_dir)
    runs = {}
    default = resolve_runtime(meta["runtime"], model_dir)  # what `auto` picks on this machine
    # None: the model's default runtime, as a user runs it; then every other runtime (torch is the reference).
    for runtime in [None, *(r for r in RUNTIMES if r != default and (others is None or r in {"torch", *others}))]:
        times = [tag(dump, uri, tmp / "out.parquet", *(["--runtime", runtime] if runtime else [])) for _ in range(repeats)]
        runs[runtime] = (statistics.median(t for t, *_ in times), times[-1][1])
        if runtime is None:
            split = where_it_went(times)
    if workers and cores() > 1:  # the default runtime in one worker process a core, one intra-op thread each
        times = [tag(dump, uri, tmp / "out.parquet", "--workers", str(cores())) for _ in range(repeats)]
        runs[f"workers {cores()}"] = (statistics.median(t for t, *_ in times), times[-1][1])
    reference = runs["torch" if "torch" in runs else None][1]
    probs = [c for c in reference.columns if c.startswith("prob_")]
    titles = {json.loads(line)["id"]: json.loads(line)["title"] for line in open(dump, encoding="utf-8")}
    pipe, calls, labels, threads = naive_pipeline(model_dir, reference, titles)
    naive_t, naive_out = median_time(lambda: [pipe(c) for c in calls], repeats)
    naive_out = [out[0] if out and isinstance(out[0], list) else out for out in naive_out]  # some versions nest
    naive_labels = np.array([max(out, key=lambda d: d["score"])["label"] for out in naive_out])
    _, alone, _ = tag(dump, uri, tmp / "out.parquet", "--batch-size", "1")  # each article in a model call of its own

    n = len(reference)
    print(f"\n{uri}: default runtime {meta['runtime']} ({default} here), context {meta.get('context')}; "
          f"{n:,} sentences of {len(titles)} real-news articles; naive loop with {threads} torch threads; "
          f"median of {repeats}\n")
    print("| path | seconds | sentences/s | vs naive | max prob diff vs torch | labels = torch |")
    print("|---|---|---|---|---|---|")
    agree = (naive_labels == reference["label"].to_numpy()).mean()
    print(f"| naive `pipeline` loop, model loaded (reference) | {naive_t:.1f} | {n / naive_t:,.0f} | 1.0x | n/a | {agree:.2%} |")
    for runtime, (seconds, rows) in runs.items():
        name = (f"**`newstag tag` (default: {default})**" if runtime is None else
                f"`newstag tag --{runtime}`" if runtime.startswith("workers") else
                f"`newstag tag --runtime {runtime}`")
        diff = np.abs(rows[probs].to_numpy() - reference[probs].to_numpy()).max()
        same = (rows["label"] == reference["label"]).mean()
        print(f"| {name}, whole process | {seconds:.1f} | {n / seconds:,.0f} | {naive_t / seconds:.1f}x "
              f"| {diff:.1e} | {same:.2%} |")
    print(f"\nWhere the default's whole process went (median of {repeats}): {split}")
    moved = np.abs(alone[probs].to_numpy() - runs[None][1][probs].to_numpy()).max()
    print(f"\nBatch invariance (default runtime): largest probability change when each article is tagged in a model "
          f"call of its own (--batch-size 1): {moved:.1e}")


def baseline_table(uri: str, sizes: list[int], data: str, tmp: Path, repeats: int) -> None:
    sentences = pd.read_json(data, lines=True)["text"].tolist()
    print(f"\n{uri}: generated dumps of 4-12 sentences an article, Parquet output, median of {repeats}; job = reading "
          f"to merged output, whole = the process (start-up and model load included); segment and model are worker "
          f"seconds (with N workers, up to N a second) over job seconds\n")
    print("| articles | workers | sentences | job s | whole s | sentences/s (whole) | vs 1 worker | peak RSS MiB "
          "| segment | model |")
    print("|---|---|---|---|---|---|---|---|---|---|", flush=True)
    for n in sizes:
        dump = tmp / f"dump-{n}.jsonl"
        make_dump(dump, n, sentences, (4, 12))
        one = None
        for workers in sorted({1, cores()}):
            runs = [tag_dump(dump, tmp / f"out-{n}.parquet", uri, None, "--workers", str(workers))
                    for _ in range(repeats)]
            s = {k: statistics.median(r[k] for r in runs) for k in ("sentences", "seconds", "wall_seconds", "peak_mib",
                                                                   "segment_seconds", "model_seconds")}
            one = one or s["wall_seconds"]
            print(f"| {n:,} | {workers} | {s['sentences']:,} | {s['seconds']:.1f} | {s['wall_seconds']:.1f} "
                  f"| {s['sentences'] / s['wall_seconds']:,.0f} | {one / s['wall_seconds']:.2f}x | {s['peak_mib']:,.0f} "
                  f"| {s['segment_seconds'] / s['seconds']:.0%} | {s['model_seconds'] / s['seconds']:.0%} |", flush=True)
        dump.unlink()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--transformer", nargs="*", default=[], metavar="URI", help="transformer model URIs")
    parser.add_argument("--baseline", metavar="URI", help="baseline model URI")
    parser.add_argument("--articles", type=int, default=400, help="real-news articles for the transformer dump")
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000], help="baseline dump sizes")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--runtimes", nargs="*", metavar="RUNTIME",
                        help="runtimes besides the default and torch (the reference); default: all")
    parser.add_argument("--no-workers", action="store_true", help="skip the run with one worker process a core")
    parser.add_argument("--data", default="data/corpus/sentences.jsonl")
    args = parser.parse_args()
    print(f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f} at start")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        if args.transformer:
            real_dump(tmp / "real.jsonl", args.data, args.articles)
        for uri in args.transformer:
            transformer_table(uri, tmp / "real.jsonl", tmp, args.repeats, args.runtimes, not args.no_workers)
        if args.baseline:
            baseline_table(args.baseline, args.sizes, args.data, tmp, args.repeats)


if __name__ == "__main__":
    main()
