"""``newstag compare``: two or more models side by side on the same labelled sentences.

Every model is re-scored here on the same data by the same metric code (intervals included), so the report
compares like with like even when the runs were logged months apart.  The report is a Markdown summary and a
self-contained HTML page, also logged as artifacts of a comparison run.
"""

from __future__ import annotations

import base64
import html
import io
import re
from dataclasses import dataclass
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd

from infer.tagger import model_labels
from train import metrics, plots
from train.config import ConfigError
from train.data import read_labelled
from train.evaluate import score_model
from train.metrics import Evaluator


DEFAULT_UI = "http://127.0.0.1:5000"  # where README's `mlflow ui` command serves the UI


@dataclass(frozen=True)
class Named:
    """Which model a report column is: its URI, the run that logged it and its registered versions."""

    uri: str
    run_id: str | None = None
    run_name: str | None = None
    experiment_id: str | None = None
    versions: tuple[str, ...] = ()  # "newstag v3", ...

    @property
    def name(self) -> str:
        """A short, unique column title: run name and run id prefix (two runs may share a name)."""
        return f"{self.run_name or 'run'} ({self.run_id[:8]})" if self.run_id else self.uri

    def link(self, ui: str) -> str | None:
        if not self.run_id:
            return None
        return f"{ui.rstrip('/')}/#/experiments/{self.experiment_id}/runs/{self.run_id}"


@dataclass
class Scored:
    ref: str
    model: Named
    labels: tuple[str, ...]
    proba: np.ndarray
    metrics: dict[str, float]

    @property
    def name(self) -> str:
        return self.model.name


def ui_base(ui: str | None = None) -> str:
    """The MLflow UI: as given, else the tracking server when it is one, else the local `mlflow ui` default."""
    tracking = mlflow.get_tracking_uri()
    return ui or (tracking if tracking.startswith(("http://", "https://")) else DEFAULT_UI)


def _source_run(client: mlflow.MlflowClient, ref: str) -> tuple[str, str | None]:
    """(model URI, id of the run that logged it) for a run id, runs:/ URI, models:/ URI or a local path."""
    if m := re.fullmatch(r"runs:/([^/]+)/.*", ref):
        return ref, m[1]
    if m := re.fullmatch(r"models:/(m-[0-9a-f]+)", ref):
        return ref, mlflow.get_logged_model(m[1]).source_run_id
    if m := re.fullmatch(r"models:/([^/@]+)/(\d+)", ref):
        return ref, client.get_model_version(m[1], m[2]).run_id
    if m := re.fullmatch(r"models:/([^/@]+)@(.+)", ref):
        return ref, client.get_model_version_by_alias(m[1], m[2]).run_id
    if "://" in ref or ref.startswith(("models:/", "/", ".")):
        return ref, None
    models = mlflow.search_logged_models(filter_string=f"source_run_id = '{ref}'", output_format="list",
                                         experiment_ids=[client.get_run(ref).info.experiment_id])
    if not models:
        raise ConfigError(f"run {ref} logged no model")
    return models[0].model_uri, ref


def resolve(ref: str) -> Named:
    """A run id or any model URI, named by its run (id, name, experiment) and registered versions."""
    client = mlflow.MlflowClient()
    uri, run_id = _source_run(client, ref)  # a ref that names nothing raises MLflow's "not found": a user error
    if not run_id:
        return Named(uri)
    run = client.get_run(run_id)
    versions = client.search_model_versions(f"run_id = '{run_id}'")
    return Named(uri, run_id, run.info.run_name, run.info.experiment_id,
                 tuple(f"{v.name} v{v.version}" for v in sorted(versions, key=lambda v: (v.name, int(v.version)))))


def _load_data(path: str, labels: tuple[str, ...], origin: str = "real") -> tuple[pd.DataFrame, str]:
    """The real-news test split when the file has one (what users tag), else its test split, else all of it."""
    frame = read_labelled(path, labels, require_article=False)
    if "split" not in frame.columns or not (frame["split"] == "test").any():
        return frame, path
    test = frame[frame["split"] == "test"]
    if "origin" in test.columns and (test["origin"] == origin).any():
        return test[test["origin"] == origin].reset_index(drop=True), f"{path} ({origin} test split)"
    return test.reset_index(drop=True), f"{path} (test split)"


def score(refs: list[str], data: str, bootstrap: int = 1000, seed: int = 13) -> tuple[list[Scored], pd.DataFrame, str]:
    scored, frame, described = [], None, data
    for ref in refs:
        named = resolve(ref)
        model = mlflow.pyfunc.load_model(named.uri)
        labels = model_labels(model)
        if frame is None:
            frame, described = _load_data(data, labels)
        rep = score_model(model, frame, Evaluator(labels, bootstrap, seed), "test")
        scored.append(Scored(ref, named, labels, rep.proba, rep.metrics))
    if len({s.labels for s in scored}) > 1:
        raise ConfigError("the models do not share one label set; they cannot be compared sentence by sentence")
    return scored, frame, described


def _metric_table(scored: list[Scored]) -> pd.DataFrame:
    labels = scored[0].labels
    names = ["macro_f1", "accuracy", "ece"] + [f"f1_{label}" for label in labels]
    rows = []
    for name in names:
        row = {"metric": name}
        for s in scored:
            value, lo, hi = s.metrics[f"test/{name}"], s.metrics.get(f"test/{name}_lo"), s.metrics.get(f"test/{name}_hi")
            row[s.name] = f"{value:.3f}" + (f" [{lo:.3f}, {hi:.3f}]" if lo is not None else "")
        for s in scored[1:]:
            row[f"Δ {s.name}"] = f"{s.metrics[f'test/{name}'] - scored[0].metrics[f'test/{name}']:+.3f}"
        rows.append(row)
    return pd.DataFrame(rows)


def _disagreements(scored: list[Scored], frame: pd.DataFrame) -> pd.DataFrame:
    a, b = scored[0], scored[1]
    pa, pb = metrics.predicted(a.proba, a.labels), metrics.predicted(b.proba, b.labels)
    idx = [i for i in range(len(frame)) if pa[i] != pb[i]]
    return pd.DataFrame({
        "text": frame["text"].iloc[idx].to_numpy(), "gold": frame["label"].iloc[idx].to_numpy(),
        a.name: [f"{pa[i]} ({a.proba[i].max():.2f})" for i in idx], b.name: [f"{pb[i]} ({b.proba[i].max():.2f})" for i in idx],
        "right": ["both" if pa[i] == pb[i] == frame['label'].iloc[i] else a.name if pa[i] == frame["label"].iloc[i]
                  else b.name if pb[i] == frame["label"].iloc[i] else "neither" for i in idx],
    })


def _confusions_png(scored: list[Scored], frame: pd.DataFrame) -> bytes:
    y = frame["label"].tolist()
    matrices = [metrics.confusion(y, metrics.predicted(s.proba, s.labels), s.labels) for s in scored]
    fig = plots.confusion_grid(matrices, scored[0].labels, [s.name[:40] for s in scored])
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90)
    plots.close(fig)
    return buf.getvalue()


def _markdown(table: pd.DataFrame) -> str:
    cells = [list(table.columns)] + table.astype(str).to_numpy().tolist()
    lines = ["| " + " | ".join(str(c).replace("|", "\\|") for c in row) + " |" for row in cells]
    return "\n".join([lines[0], "|" + "---|" * len(table.columns), *lines[1:]])


def _html(title: str, sections: list[tuple[str, str]]) -> str:
    body = "\n".join(f"<h2>{html.escape(h)}</h2>\n{content}" for h, content in sections)
    style = ("body{font-family:system-ui,sans-serif;margin:2em;max-width:1200px}table{border-collapse:collapse;font-size:13px}"
             "td,th{border:1px solid #ccc;padding:4px 8px;text-align:left;vertical-align:top}th{background:#f3f3f3}")
    return f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title><style>{style}</style></head><body><h1>{html.escape(title)}</h1>{body}</body></html>"


def _model_lines(m: Named, ui: str) -> tuple[str, str]:
    """The model in Markdown and in HTML: its run, registered versions, a link to the run and the model URI."""
    facts = ([f"run {m.run_id}"] if m.run_id else []) + ([f"registered as {', '.join(m.versions)}"] if m.versions else [])
    link = m.link(ui)
    md = facts + ([f"[run in MLflow]({link})"] if link else []) + [f"model `{m.uri}`"]
    page = ([html.escape(f) for f in facts] + ([f"<a href='{html.escape(link)}'>run in MLflow</a>"] if link else [])
            + [f"model <code>{html.escape(m.uri)}</code>"])
    return f"**{m.name}**: " + ", ".join(md), f"<b>{html.escape(m.name)}</b>: " + ", ".join(page)


def compare(refs: list[str], data: str, output: str = ".", log: bool = True, bootstrap: int = 1000,
            ui: str | None = None) -> dict:
    if len(refs) < 2:
        raise ConfigError("compare needs at least two runs or models")
    scored, frame, described = score(refs, data, bootstrap)
    ui = ui_base(ui)
    out = Path(output)
    out.mkdir(parents=True, exist_ok=True)
    table, diff = _metric_table(scored), _disagreements(scored, frame)
    png = _confusions_png(scored, frame)
    (out / "compare_confusion.png").write_bytes(png)
    summary = (f"# Model comparison\n\nData: {described}, {len(frame)} sentences. 95 % bootstrap intervals in brackets; "
               f"Δ is against {scored[0].name}.\n\n" + "\n".join(f"- {_model_lines(s.model, ui)[0]}" for s in scored)
               + "\n\n" + _markdown(table) + f"\n\n{len(diff)} sentences labelled differently by {scored[0].name} "
               f"and {scored[1].name} (right: {diff['right'].value_counts().to_dict() if len(diff) else {}}).\n\n"
               "![confusion matrices](compare_confusion.png)\n")
    (out / "compare.md").write_text(summary, encoding="utf-8")
    image = f"<img src='data:image/png;base64,{base64.b64encode(png).decode()}' style='max-width:100%'>"
    page = _html("newstag model comparison", [
        ("Models", "<ul>" + "".join(f"<li>{_model_lines(s.model, ui)[1]}</li>" for s in scored)
         + f"</ul><p>Data: {html.escape(described)}, {len(frame)} sentences.</p>"),
        ("Metrics (95 % bootstrap intervals)", table.to_html(index=False, escape=True)),
        ("Confusion matrices", image),
        (f"Sentences labelled differently ({len(diff)})", diff.to_html(index=False, escape=True)),
    ])
    (out / "compare.html").write_text(page, encoding="utf-8")
    result = {"output": str(out), "data": described, "n": len(frame), "disagreements": len(diff),
              "models": {s.name: {"uri": s.model.uri, "run_id": s.model.run_id, "run_name": s.model.run_name,
                                  "registered": list(s.model.versions), "link": s.model.link(ui),
                                  "macro_f1": round(s.metrics["test/macro_f1"], 4)} for s in scored}}
    if log:
        result["run_id"] = _log(scored, described, out, diff)
    return result


def _log(scored: list[Scored], described: str, out: Path, diff: pd.DataFrame) -> str:
    """The report as a run of the newstag-compare experiment."""
    mlflow.set_experiment("newstag-compare")
    with mlflow.start_run(run_name="compare " + " vs ".join(s.name for s in scored)[:200]) as run:
        mlflow.log_params({f"model_{i}": s.model.uri for i, s in enumerate(scored)} | {"data": described})
        for name in ("compare.md", "compare.html", "compare_confusion.png"):
            mlflow.log_artifact(str(out / name))
        mlflow.log_table(diff, artifact_file="disagreements.json")
    return run.info.run_id
