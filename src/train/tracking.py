"""Everything that talks to MLflow during training: run set-up, inputs, metrics, figures, model, registry.

The tracking URI is MLflow's own (``MLFLOW_TRACKING_URI``, else ``sqlite:///mlflow.db`` in the working
directory).  Every run carries the resolved config, the data digest and the git commit, so any score can be
traced to exactly what produced it.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import mlflow
import pandas as pd
from mlflow.models import ModelSignature, infer_signature
from mlflow.types import ColSpec, Schema

import newstag_model
from newstag_model.load import load
from newstag_model.schema import INPUT_COLUMNS, model_inputs, predictions_frame, read_meta
from train import kinds, plots
from train.config import Config, flatten, resolved_yaml
from train.data import Splits

# The logged model's code: the package travels with every model (code_paths), pyfunc.py is its models-from-code file.
MODEL_PACKAGE = Path(newstag_model.__file__).parent
MODEL_CODE = MODEL_PACKAGE / "pyfunc.py"


def git_commit(cwd: Path | None = None) -> str:
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=cwd, capture_output=True, text=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return commit + ("-dirty" if dirty else "")


@contextlib.contextmanager
def start_run(cfg: Config, config_path: Path, splits: Splits):
    """A new run in the configured experiment, or the one ``mlflow run`` opened for us (MLFLOW_RUN_ID)."""
    inside_project = bool(os.environ.get("MLFLOW_RUN_ID"))
    if not inside_project:
        mlflow.set_experiment(cfg.tracking.experiment)
    commit = git_commit(Path(__file__).resolve().parent)  # the code that trains, wherever the config lives
    tags = {
        "model_kind": cfg.model.kind,
        "config_file": str(config_path),
        "config_name": Path(config_path).stem,
        "data_digest": splits.digest,
    }
    if not inside_project:  # `mlflow run` records the project's own commit; keep it
        tags["mlflow.source.git.commit"] = commit
    nested = mlflow.active_run() is not None  # a seed's child run under `train --seeds`
    with mlflow.start_run(run_name=None if inside_project and not nested else cfg.tracking.run_name, tags=tags,
                          nested=nested) as run:
        params = flatten(cfg)
        params.update({"data_digest": splits.digest, "config_name": Path(config_path).stem, "git_commit": commit})
        params.update({f"data.n_{name}": len(part) for name, part in splits.items()})
        mlflow.log_params(params)
        mlflow.log_text(resolved_yaml(cfg), "config/resolved.yaml")
        mlflow.log_artifact(str(config_path), "config")
        for name, part in splits.items():
            columns = [c for c in ("text", "label", "article_id", "origin") if c in part.columns]
            with warnings.catch_warnings():  # a local JSONL path matches two equivalent source types
                warnings.simplefilter("ignore", UserWarning)
                dataset = mlflow.data.from_pandas(
                    part[columns], source=str(splits.path), name=f"{splits.path.stem}-{name}", targets="label")
            _log_input(dataset, name)
        yield run


def _log_input(dataset, context: str, tries: int = 5) -> None:
    """Two runs that log the same dataset at once race on its unique row; the loser finds it on a retry."""
    for attempt in range(tries):
        try:
            mlflow.log_input(dataset, context=context)
            return
        except Exception as err:  # noqa: BLE001 - the store raises its own integrity error types
            if "UNIQUE constraint" not in str(err) or attempt == tries - 1:
                raise
            time.sleep(0.2 * (attempt + 1))


@contextlib.contextmanager
def parent_run(cfg: Config, config_path: Path, seeds: int):
    """The run that groups one config's seeds; children open inside it (nested)."""
    if not os.environ.get("MLFLOW_RUN_ID"):
        mlflow.set_experiment(cfg.tracking.experiment)
    name = f"{cfg.tracking.run_name or cfg.model.kind} x{seeds} seeds"
    with mlflow.start_run(run_name=name, tags={"model_kind": cfg.model.kind, "config_name": Path(config_path).stem,
                                                "seeds": str(seeds)}) as run:
        mlflow.log_params({**flatten(cfg), "seeds": seeds, "config_name": Path(config_path).stem,
                           "git_commit": git_commit(Path(__file__).resolve().parent)})
        mlflow.log_text(resolved_yaml(cfg), "config/resolved.yaml")
        yield run


def run_metrics(run_id: str) -> dict[str, float]:
    return dict(mlflow.MlflowClient().get_run(run_id).data.metrics)


def log_seed_summary(children: list[dict[str, float]]) -> dict[str, float]:
    """Mean under each metric's own name and its std as `<name>_std`, for metrics every child has."""
    import numpy as np

    names = set.intersection(*(set(c) for c in children))
    out = {}
    for name in sorted(names):
        values = np.array([c[name] for c in children], dtype=float)
        out[name] = float(values.mean())
        out[f"{name}_std"] = float(values.std(ddof=1)) if len(values) > 1 else 0.0
    mlflow.log_metrics(out)
    return out


_curve_end: dict[str, int] = {}  # run id -> the last step a curve logged


def log_metrics(metrics: dict[str, float], step: int | None = None) -> None:
    """Curves pass their step; a final score (no step) goes to the run's last curve step.  MLflow shows a name's
    latest value (highest step, then newest), so `dev/macro_f1` in the UI, `newstag grid` and the seed summary is
    the final dev score, not the curve's last epoch (per sentence, maybe not the epoch that was kept)."""
    run_id = (mlflow.active_run() or mlflow.start_run()).info.run_id
    if step is None:
        step = _curve_end.get(run_id, 0)
    else:
        _curve_end[run_id] = max(step, _curve_end.get(run_id, 0))
    mlflow.log_metrics({k: float(v) for k, v in metrics.items()}, step=step)


def log_figure(fig, path: str) -> None:
    mlflow.log_figure(fig, path)
    plots.close(fig)


def log_table(frame: pd.DataFrame, path: str) -> None:
    mlflow.log_table(frame, artifact_file=path)


INPUT_SCHEMA = Schema([ColSpec(kind, name, required=required)
                       for name, (kind, required) in INPUT_COLUMNS.items()])


def log_model(model_dir: Path, cfg: Config, example_rows: pd.DataFrame) -> tuple[str, str | None]:
    """Log the pyfunc (models-from-code) with the model directory as its artifact; register it when named.

    Only `text` is required; rows that share an `article_id` are read in their article's context.
    """
    example = model_inputs(example_rows).reset_index(drop=True)
    meta = read_meta(model_dir)
    output = predictions_frame(cfg.labels, load(model_dir).predict_proba(example))
    with _without_registry_chatter():
        info = mlflow.pyfunc.log_model(
            name="model",
            python_model=str(MODEL_CODE),
            code_paths=[str(MODEL_PACKAGE)],
            artifacts={"model": str(model_dir)},
            signature=ModelSignature(INPUT_SCHEMA, infer_signature(example[["text"]], output).outputs),
            input_example=example,
            registered_model_name=cfg.tracking.registered_model,
            pip_requirements=_requirements(meta),
            # Declared so that `load_model(uri, model_config={"runtime": "onnx", "threads": 1})` may switch runtimes and
            # intra-op threads at load time (MLflow ignores keys a model did not declare).
            model_config={"runtime": meta["runtime"], "threads": None} if "runtime" in meta else None,
            # Read by `newstag tag` without loading any training code: the default abstention threshold.
            metadata={"labels": list(cfg.labels), "model_kind": cfg.model.kind, "min_score": cfg.eval.min_score,
                      "context": meta.get("context")},
        )
    version = str(info.registered_model_version) if cfg.tracking.registered_model else None
    if version and cfg.tracking.alias:
        mlflow.MlflowClient().set_registered_model_alias(cfg.tracking.registered_model, cfg.tracking.alias, version)
    return info.model_uri, version


# What MLflow prints on stderr as it registers a model; `newstag train` says it once, in its own progress line.
_REGISTRY_CHATTER = re.compile(r"(Successfully registered model .*\.|Registered model .* already exists\. Creating a new "
                               r"version of this model\.\.\.|Created version .* of model .*\.)\s*$")


@contextlib.contextmanager
def _without_registry_chatter():
    """Keep MLflow's registry lines off stderr; anything else printed meanwhile passes through."""
    buffer = io.StringIO()
    try:
        with contextlib.redirect_stderr(buffer):
            yield
    finally:
        sys.stderr.writelines(line for line in buffer.getvalue().splitlines(keepends=True)
                              if not _REGISTRY_CHATTER.match(line))


def log_resolved(model_dir: Path) -> None:
    """What the config left to the machine (``auto`` settings) as the run's ``resolved.*`` tags."""
    mlflow.set_tags({f"resolved.{k}": v for k, v in (read_meta(model_dir).get("resolved") or {}).items()})


def keep_model_files(model_dir: Path) -> None:
    """The trained model directory as plain run artifacts (``model-files/``), loadable with ``newstag_model.load.load``."""
    mlflow.log_artifacts(str(model_dir), artifact_path="model-files")
    warnings.warn(f"logging the model failed; its files are kept in run {mlflow.active_run().info.run_id} "
                  "under model-files/", stacklevel=2)


def _requirements(meta: dict) -> list[str]:
    """The common packages and those of the model's kind, or of its members' kinds for an ensemble."""
    from importlib.metadata import version

    used = [meta["kind"], *(member["kind"] for member in meta.get("members", ()))]
    names = dict.fromkeys((*kinds.COMMON_REQUIREMENTS, *(r for kind in used for r in kinds.get(kind).requirements)))
    return [f"{name}=={version(name)}" for name in names]


def scratch_dir() -> tempfile.TemporaryDirectory:
    return tempfile.TemporaryDirectory(prefix="newstag-")
