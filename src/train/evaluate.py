"""Score a classifier on a labelled split and log the same report for every model kind.

``newstag evaluate`` reuses this on any labelled JSONL and a model URI, so a score printed on the command line is
computed by the same evaluator (``metrics.Evaluator``) as the one in the run.
"""

from __future__ import annotations

import os

import mlflow
import numpy as np
import pandas as pd

from newstag_model.schema import model_inputs
from train import metrics, plots, tracking
from train.metrics import Evaluator, Report


def log_report(rep: Report) -> None:
    """Metrics, confusion matrix, per-class bars, reliability diagram, coverage curve and the error table."""
    labels = rep.labels
    y_true = rep.frame["label"].tolist()
    y_pred = metrics.predicted(rep.proba, labels)
    tracking.log_metrics(rep.metrics)
    matrix = metrics.confusion(y_true, y_pred, labels)
    tracking.log_figure(plots.confusion_figure(matrix, labels, rep.split), f"plots/{rep.split}_confusion.png")
    tracking.log_figure(plots.per_class_figure(rep.metrics, labels, rep.split), f"plots/{rep.split}_per_class.png")
    tracking.log_figure(
        plots.reliability_figure(metrics.calibration_bins(y_true, rep.proba, labels),
                                 f"{rep.split}: ECE {rep.metrics[f'{rep.split}/ece']:.3f}"),
        f"plots/{rep.split}_reliability.png",
    )
    curve = metrics.coverage_curve(y_true, rep.proba, labels)
    tracking.log_figure(plots.coverage_figure(curve, f"{rep.split}: coverage vs accuracy"), f"plots/{rep.split}_coverage.png")
    tracking.log_table(curve, f"tables/{rep.split}_coverage.json")
    errors = metrics.errors_table(rep.frame, rep.proba, labels, rep.split)
    tracking.log_table(errors, f"tables/{rep.split}_errors.json")


def proba_from_output(output: pd.DataFrame) -> tuple[tuple[str, ...], np.ndarray]:
    """Labels (in the model's order) and the probability matrix from a pyfunc prediction frame."""
    columns = [c for c in output.columns if c.startswith("prob_")]
    return tuple(c[len("prob_"):] for c in columns), output[columns].to_numpy(dtype=np.float64)


def score_model(model, frame: pd.DataFrame, evaluator: Evaluator, split: str) -> Report:
    """A loaded pyfunc's report on labelled rows, each sentence read in its article as `newstag tag` reads it."""
    labels, proba = proba_from_output(model.predict(model_inputs(frame)))
    if labels != evaluator.labels:
        raise ValueError(f"the model answered labels {labels}, its metadata says {evaluator.labels}")
    return evaluator.report(frame, proba, split)


def evaluate_uri(model_uri: str, path: str, bootstrap: int = 0, seed: int = 0) -> Report:
    """Load a logged model by URI, check the file's labels against the model's own, and score it.

    Rows carry `text` and optionally `article_id`, `sentence_index` and `title`: the model reads each sentence in
    its article (by `sentence_index`, else file order), exactly as `newstag tag` does.
    """
    from infer.tagger import model_labels
    from train.data import read_labelled

    model = mlflow.pyfunc.load_model(model_uri)
    labels = model_labels(model)
    return score_model(model, read_labelled(path, labels, require_article=False), Evaluator(labels, bootstrap, seed),
                       "eval")


def log_evaluation(rep: Report, model_uri: str, data: str, experiment: str) -> str:
    """`newstag evaluate --log`: the report as a run of its own; returns the run id."""
    mlflow.set_experiment(experiment)
    with mlflow.start_run(run_name=f"evaluate {os.path.basename(data)}", tags={"model_uri": model_uri}) as run:
        mlflow.log_params({"model_uri": model_uri, "data": data})
        log_report(rep)
    return run.info.run_id
