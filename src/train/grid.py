"""``newstag grid``: every config tried in one MLflow experiment, as one Markdown table per corpus.

A run trained with ``--seeds N`` is one row (its parent's mean ± std over the seeds); a plain run is a row of
one seed.  Rows are grouped by data digest, because scores on two corpora do not compare, and sorted by the
selection metric (real dev macro-F1): the table README's "Results" quotes.  Minutes are wall time per seed on
the machine that trained (fit, evaluation and logging).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import mlflow

from train.config import ConfigError

FINISHED = "FINISHED"


@dataclass(frozen=True)
class Row:
    name: str
    params: dict[str, str]
    metrics: dict[str, float]
    seeds: int
    minutes: float

    def cell(self, metric: str) -> str:
        if metric not in self.metrics:
            return "–"
        std = self.metrics.get(f"{metric}_std")
        return f"{self.metrics[metric]:.3f}" + (f" ± {std:.3f}" if self.seeds > 1 and std is not None else "")

    def describe(self) -> dict[str, str]:
        """What varies between configs, in a reader's words."""
        p = self.params
        kind = p.get("model.kind", "?")
        encoder = p.get("model.name_or_path", "tf-idf").rsplit("/", 1)[-1] if kind == "transformer" else "tf-idf + LR"
        if kind == "ensemble":
            encoder = " + ".join(_member_names(p))
        if kind == "transformer":  # what makes a row cheaper than its checkpoint read whole
            for key, default, note in (("model.encoder_layers", "None", "lowest {} layers"),
                                       ("model.max_length", "128", "{} tokens"), ("model.lora_rank", "0", "LoRA rank {}")):
                if p.get(key, default) != default:
                    encoder += f" ({note.format(p[key])})"
        sources = ", ".join(f"{k.split('.')[-1]} {float(v):g}" for k, v in sorted(p.items())
                            if k.startswith("data.train_sources.") and float(v) > 0)
        epochs = f"{float(p['model.epochs']):g}" if kind == "transformer" and "model.epochs" in p else "–"
        return {"kind": kind, "encoder": encoder, "epochs": epochs,
                "window": p.get("context.window", "0"), "title": "yes" if p.get("context.title") == "True" else "no",
                "quotes": " + ".join(name for name, key in (("state", "context.quotes"), ("spans", "context.quote_spans"))
                                     if p.get(key) == "True") or "no", "train": sources or "–"}


def _member_names(params: dict[str, str]) -> list[str]:
    """An ensemble's members: `name`, else the config's stem (as its metrics name them), else the model URI (which
    says more in a table than the metrics' `member<i>`)."""
    names = []
    for i in range(8):
        name, config, model = (params.get(f"model.members.{i}.{key}", "None") for key in ("name", "config", "model"))
        if config == model == "None":
            break
        names.append(name if name != "None" else Path(config).stem if config != "None" else model)
    return names


def collect(experiment: str, client: mlflow.MlflowClient | None = None) -> dict[str, list[Row]]:
    """Finished top-level runs of `experiment` (seed parents and single runs), by data digest."""
    client = client or mlflow.MlflowClient()
    exp = client.get_experiment_by_name(experiment)
    if exp is None:
        raise ConfigError(f"--experiment: no MLflow experiment named {experiment!r} in {mlflow.get_tracking_uri()}")
    runs = client.search_runs([exp.experiment_id], max_results=5000)
    children: dict[str, list] = {}
    for run in runs:
        parent = run.data.tags.get("mlflow.parentRunId")
        if parent:
            children.setdefault(parent, []).append(run)
    grouped: dict[str, list[Row]] = {}
    for run in runs:
        if run.data.tags.get("mlflow.parentRunId") or run.info.status != FINISHED or "dev/macro_f1" not in run.data.metrics:
            continue
        kids = [c for c in children.get(run.info.run_id, []) if c.info.status == FINISHED]
        timed = kids or [run]
        minutes = sum((r.info.end_time - r.info.start_time) for r in timed) / len(timed) / 60000
        digest = run.data.params.get("data_digest") or (kids[0].data.params.get("data_digest") if kids else None)
        name = f"{run.info.run_name} ({run.info.run_id[:8]})"
        row = Row(name, dict(run.data.params), dict(run.data.metrics), len(kids) or 1, minutes)
        grouped.setdefault(digest or "unknown", []).append(row)
    for rows in grouped.values():
        rows.sort(key=lambda r: -r.metrics["dev/macro_f1"])
    return grouped


COLUMNS = ("kind", "encoder", "epochs", "window", "title", "quotes", "train")


def markdown(grouped: dict[str, list[Row]], metrics: tuple[str, ...] = ("dev/macro_f1", "test/macro_f1")) -> str:
    out = []
    for digest, rows in grouped.items():
        out.append(f"Corpus `{digest[:8]}`\n")
        out.append("| " + " | ".join((*COLUMNS, "seeds", *metrics, "min/seed", "run")) + " |")
        out.append("|" + "---|" * (len(COLUMNS) + len(metrics) + 3))
        for row in rows:
            described = row.describe()
            cells = [described[c] for c in COLUMNS] + [str(row.seeds)] + [row.cell(m) for m in metrics]
            out.append("| " + " | ".join(cells + [f"{row.minutes:.0f}", row.name]) + " |")
        out.append("")
    return "\n".join(out)
