"""The ``newstag`` command.  Each subcommand imports its stage lazily, so ``--help`` and ``tag`` stay quick.

Exit codes: 0 success; 1 failure; 2 a user error (bad config, bad data, bad arguments), reported without a
traceback; 3 ``tag`` finished but skipped bad records (listed in ``OUTPUT.errors.jsonl``).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import warnings

EXIT_USAGE = 2


def _emit(result: dict) -> None:
    """The last line of stdout is one JSON object, for scripts and pipelines."""
    print(json.dumps(result, default=str), flush=True)


def cmd_train(args) -> int:
    from train.run import train_seeds

    if args.seeds < 1:
        raise SystemExit("newstag train: error: --seeds must be at least 1")
    _emit(train_seeds(args.config, args.set, args.seeds))
    return 0


def cmd_evaluate(args) -> int:
    from train.evaluate import evaluate_uri, log_evaluation

    rep = evaluate_uri(args.model, args.data, bootstrap=args.bootstrap)
    short = {k.split("/", 1)[1]: v for k, v in rep.metrics.items()}
    result = {"model": args.model, "data": args.data, "n": int(short["n"]), "macro_f1": short["macro_f1"],
              "accuracy": short["accuracy"], **{k: v for k, v in short.items() if k.startswith(("f1_", "macro_f1_"))}}
    if args.log:
        result["run_id"] = log_evaluation(rep, args.model, args.data, args.experiment)
    if args.json:
        _emit(result)
    else:
        print(f"{args.model} on {args.data} ({result['n']} sentences)")
        for key, value in result.items():
            if isinstance(value, float):
                print(f"  {key:<28} {value:.4f}")
    return 0


def cmd_tag(args) -> int:
    from infer.job import EXIT_OK, EXIT_SKIPPED, Job, JobError

    engine, extra = Job, {}
    if args.engine == "spark" and args.workers not in ("auto", 1):
        raise JobError("--workers is for the local engine; Spark's parallelism is --spark-master, e.g. local[4]")
    if args.engine == "spark":
        from infer.spark import SparkJob, check_environment

        check_environment()  # before loading the model: a missing JVM is reported at once
        engine, extra = SparkJob, {"master": args.spark_master}
    from infer.tagger import Tagger

    tagger = Tagger(args.model, runtime=args.runtime, segmenter=args.segmenter, min_score=args.min_score,
                    batch_size=args.batch_size)
    workers = tagger.auto_workers() if args.workers == "auto" else args.workers
    if args.engine == "local" and workers > 1:
        from infer.pool import PoolJob

        engine, extra = PoolJob, {"workers": workers}
    job = engine(args.inputs, args.output, tagger, fmt=args.format, chunk_size=args.chunk_size, resume=args.resume,
                 max_chars=args.max_chars, progress=False if args.no_progress else None, runtime=args.runtime, **extra)
    summary = job.run()
    s = summary.as_dict()
    print(f"tagged {s['articles_tagged']:,} of {s['articles_read']:,} articles, {s['sentences']:,} sentences in "
          f"{s['seconds']:.1f}s ({s['sentences_per_second']:,.0f} sentences/s); skipped {s['skipped']:,}"
          + (f" (see {args.output}.errors.jsonl)" if s["skipped"] else ""), file=sys.stderr)
    print("labels: " + ", ".join(f"{k} {v:,}" for k, v in sorted(s["labels"].items())), file=sys.stderr)
    _emit({"output": args.output, **s})
    return EXIT_SKIPPED if s["skipped"] else EXIT_OK


def cmd_promote(args) -> int:
    from train.registry import promote

    _emit(promote(args.model, args.alias, args.name, best_by=args.best_by))
    return 0


def cmd_data(args) -> int:
    if args.action == "build":
        from train.corpus import build

        _emit(build(args.raw, args.out, seed=args.seed, real=args.real, allow_split_changes=args.allow_split_changes))
        return 0
    if args.action == "card":
        from train.card import card
        from train.learning_curve import FRACTIONS, train_fractions

        runs = train_fractions(args.config, args.path, FRACTIONS if args.learning_curve else (1.0,))
        print(card(args.path, args.config, runs))
        return 0
    if args.action == "agreement":
        from train.agreement import agreement

        _emit(agreement(args.corpus, args.second, args.adjudication))
        return 0
    from train.validate import validate

    report = validate(args.path, exclusions=args.exclusions)
    for line in report["messages"]:
        print(line, file=sys.stderr)
    _emit({k: v for k, v in report.items() if k != "messages"})
    return 0 if report["ok"] else 1


def cmd_compare(args) -> int:
    from train.compare import compare

    _emit(compare(args.models, args.data, args.output, log=not args.no_log, bootstrap=args.bootstrap, ui=args.ui_url))
    return 0


def cmd_grid(args) -> int:
    from train.grid import collect, markdown

    grouped = collect(args.experiment)
    table = markdown(grouped, tuple(args.metric or ("dev/macro_f1", "test/macro_f1")))
    if args.output:
        with open(args.output, "w", encoding="utf-8") as handle:
            handle.write(table)
    print(table)
    _emit({"experiment": args.experiment, "corpora": len(grouped), "rows": sum(map(len, grouped.values())),
           "output": args.output})
    return 0


def _workers(value: str) -> int | str:
    return value if value == "auto" else _positive(value)


def _positive(value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a whole number") from None
    if number < 1:
        raise argparse.ArgumentTypeError(f"{value} must be 1 or more")
    return number


def _runtime(value: str) -> str:
    """Checked against the registry of model kinds only when given, so `--help` need not import the models."""
    from train.kinds import runtimes

    if value not in runtimes():
        raise argparse.ArgumentTypeError(f"{value!r} is not a runtime; choose from {', '.join(runtimes())}")
    return value


def _bootstrap_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--bootstrap", type=int, default=1000, help="resamples for 95%% intervals (0: none)")


def parser() -> argparse.ArgumentParser:
    from train.provenance import CORPUS_SEED  # stdlib only: `--help` stays quick

    p = argparse.ArgumentParser(prog="newstag", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    t = sub.add_parser("train", help="train a model from a config and log it to MLflow")
    t.add_argument("-c", "--config", required=True, help="YAML config (configs/*.yaml or experiments/*.yaml)")
    t.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a config key, e.g. model.C=2")
    t.add_argument("--seeds", type=int, default=1, metavar="N",
                   help="train N seeds (seed, seed+1, ...) as child runs of a parent that logs mean and std")
    t.set_defaults(func=cmd_train)

    e = sub.add_parser("evaluate", help="score a logged model on a labelled JSONL file")
    e.add_argument("--model", required=True, help="model URI (models:/newstag@champion, runs:/ID/model, ...)")
    e.add_argument("--data", required=True, help="JSONL with `text` and `label` per line")
    e.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    _bootstrap_option(e)
    e.add_argument("--log", action="store_true", help="also log the evaluation as an MLflow run")
    e.add_argument("--experiment", default="newstag-eval", help="experiment for --log")
    e.set_defaults(func=cmd_evaluate)

    g = sub.add_parser("tag", help="tag every sentence of article dumps with a logged model")
    g.add_argument("inputs", nargs="+", metavar="INPUT", help="JSONL, CSV, Parquet (.gz ok), .txt/.html files or folders")
    g.add_argument("-o", "--output", required=True, help="output file: .jsonl or .parquet")
    g.add_argument("--model", default="models:/newstag@champion", help="model URI (default: %(default)s)")
    g.add_argument("--format", choices=("jsonl", "parquet"), help="output format if the extension does not say")
    g.add_argument("--resume", action="store_true",
                   help="continue an interrupted job; refused (exit 2) if its inputs or options changed")
    g.add_argument("--min-score", type=float, help="label sentences under this score as needs_review")
    g.add_argument("--runtime", type=_runtime, help="inference runtime, e.g. onnx (default: the model's)")
    g.add_argument("--segmenter", default="syntok", choices=("syntok", "blingfire", "pysbd"))
    g.add_argument("--batch-size", type=_positive, default=4096,
                   help="sentences per model call; the transformer groups sentences of one length within it "
                        "(default: %(default)s)")
    g.add_argument("--chunk-size", type=_positive, default=1000, help="articles per committed chunk")
    g.add_argument("--max-chars", type=_positive, default=200_000, help="longer articles are skipped as errors")
    g.add_argument("--engine", choices=("local", "spark"), default="local")
    g.add_argument("--workers", type=_workers, default="auto",
                   help="local engine: tag chunks in N processes, one model each (default auto: one a core for "
                        "single-threaded models such as the baseline, else 1; README \"Tag\")")
    g.add_argument("--spark-master", default="local[*]", help="Spark master URL for --engine spark")
    g.add_argument("--no-progress", action="store_true", help="no progress bar even on a terminal")
    g.set_defaults(func=cmd_tag)

    r = sub.add_parser("promote", help="point an alias (e.g. champion) at a model version")
    r.add_argument("model", nargs="?", help="run id, models:/NAME/VERSION, or a version number")
    r.add_argument("--alias", default="champion")
    r.add_argument("--name", default="newstag", help="registered model name")
    r.add_argument("--best-by", metavar="METRIC", help="pick the version whose run has the highest METRIC (e.g. dev/macro_f1)")
    r.set_defaults(func=cmd_promote)

    d = sub.add_parser("data", help="build or validate the labelled corpus")
    dsub = d.add_subparsers(dest="action", required=True)
    b = dsub.add_parser("build", help="raw annotated articles -> sentences.jsonl with fixed splits")
    b.add_argument("--raw", default="data/corpus/raw", help="synthetic articles")
    b.add_argument("--real", default="data/corpus/real/raw", help="real-news articles (split by outlet)")
    b.add_argument("--out", default="data/corpus/sentences.jsonl")
    b.add_argument("--seed", type=int, default=CORPUS_SEED)
    b.add_argument("--allow-split-changes", action="store_true",
                   help="replace --out even when articles already in it change split (a deliberate re-split)")
    v = dsub.add_parser("validate", help="schema, labels, duplicates, leakage and label shares")
    v.add_argument("path", nargs="?", default="data/corpus/sentences.jsonl")
    v.add_argument("--exclusions", help="hashed pages no article may come from (default: ../shared/eval-exclusions.txt)")
    cc = dsub.add_parser("card", help="print the data card's numbers (trains the baseline; logs to newstag-datacard)")
    cc.add_argument("path", nargs="?", default="data/corpus/sentences.jsonl")
    cc.add_argument("-c", "--config", default="configs/baseline.yaml", help="model config for the learning curve")
    cc.add_argument("--learning-curve", action="store_true", help="also train on 25, 50 and 75 %% of the real train articles")
    k = dsub.add_parser("agreement", help="Cohen's kappa of the double-annotated subset")
    k.add_argument("--corpus", default="data/corpus/sentences.jsonl")
    k.add_argument("--second", default="data/corpus/double/second.jsonl")
    k.add_argument("--adjudication", default="data/corpus/double/adjudication.jsonl")
    d.set_defaults(func=cmd_data)

    c = sub.add_parser("compare", help="side-by-side report of two or more runs or models")
    c.add_argument("models", nargs="+", metavar="RUN_OR_MODEL")
    c.add_argument("--data", default="data/corpus/sentences.jsonl",
                   help="labelled JSONL; its real-news test split is used when it has one, else its test split")
    c.add_argument("-o", "--output", default=".", help="directory for compare.html and compare.md")
    c.add_argument("--no-log", action="store_true", help="do not log the report as a comparison run")
    _bootstrap_option(c)
    c.add_argument("--ui-url", default=os.environ.get("NEWSTAG_MLFLOW_UI"), metavar="URL",
                   help="MLflow UI the report links runs to (default: $NEWSTAG_MLFLOW_UI, else the tracking server "
                        "if it is one, else http://127.0.0.1:5000)")
    c.set_defaults(func=cmd_compare)

    gr = sub.add_parser("grid", help="every config of an experiment as a Markdown table (mean ± std over seeds)")
    gr.add_argument("--experiment", default="newstag", help="MLflow experiment (default: newstag)")
    gr.add_argument("--metric", action="append", default=None, metavar="NAME",
                    help="metric column, repeatable (default: dev/macro_f1 and test/macro_f1)")
    gr.add_argument("-o", "--output", default=None, help="also write the table to this file")
    gr.set_defaults(func=cmd_grid)
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    # MLflow's INFO chatter and its type-hint advice bury our own output; real warnings still show.
    os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    warnings.filterwarnings("ignore", message=".*type hints to the `predict` method.*")
    warnings.filterwarnings("ignore", message=".*dataset source can be interpreted in multiple ways.*")
    from infer.job import JobFailed
    from newstag.errors import describe, is_user_error

    try:
        return args.func(args)
    except JobFailed as err:
        print(f"newstag {args.command}: failed: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"newstag {args.command}: interrupted", file=sys.stderr)
        return 130
    except Exception as err:
        if not is_user_error(err):
            raise  # an internal failure: Python prints the traceback and exits 1
        print(f"newstag {args.command}: error: {describe(err)}", file=sys.stderr)
        return EXIT_USAGE
