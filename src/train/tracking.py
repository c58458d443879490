"""Everything that talks to MLflow during training: run set-up, inputs, metrics, figures, model, registry.

The tracking URI is MLflow's own (``MLFLOW_TRACKING_URI``, else ``sqlite:///mlflow.db`` in the working
directory).  Every run carries the resolved config, the data digest and the git commit, so any score can be
traced to exactly what produced it.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import tempfile
import warnings
from pathlib import Path

import mlflow
import pandas as pd
from mlflow.models import infer_signature

from train import classifier, plots
from train.config import Config, flatten, resolved_yaml
from train.data import Splits

MODEL_CODE = Path(classifier.__file__)


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
    with mlflow.start_run(run_name=None if inside_project else cfg.tracking.run_name, tags=tags) as run:
        params = flatten(cfg)
        params.update({"data_digest": splits.digest, "config_name": Path(config_path).stem, "git_commit": commit})
        params.update({f"data.n_{name}": len(part) for name, part in splits.items()})
        mlflow.log_params(params)
        mlflow.log_text(resolved_yaml(cfg), "config/resolved.yaml")
        mlflow.log_artifact(str(config_path), "config")
        for name, part in splits.items():
            columns = [c for c in ("text", "label", "article_id") if c in part.columns]
            with warnings.catch_warnings():  # a local JSONL path matches two equivalent source types
                warnings.simplefilter("ignore", UserWarning)
                dataset = mlflow.data.from_pandas(
                    part[columns], source=str(splits.path), name=f"{splits.path.stem}-{name}", targets="label")
            mlflow.log_input(dataset, context=name)
        yield run


def log_metrics(metrics: dict[str, float], step: int | None = None) -> None:
    mlflow.log_metrics({k: float(v) for k, v in metrics.items()}, step=step)


def log_figure(fig, path: str) -> None:
    mlflow.log_figure(fig, path)
    plots.close(fig)


def log_table(frame: pd.DataFrame, path: str) -> None:
    mlflow.log_table(frame, artifact_file=path)


def log_model(model_dir: Path, cfg: Config, example_texts: list[str]) -> tuple[str, str | None]:
    """Log the pyfunc (models-from-code) with the model directory as its artifact; register it when named."""
    example = pd.DataFrame({"text": example_texts})
    meta = classifier.read_meta(model_dir)
    output = classifier.predictions_frame(cfg.labels, classifier.load(model_dir).predict_proba(example_texts))
    info = mlflow.pyfunc.log_model(
        name="model",
        python_model=str(MODEL_CODE),
        artifacts={"model": str(model_dir)},
        signature=infer_signature(example, output),
        input_example=example,
        registered_model_name=cfg.tracking.registered_model,
        pip_requirements=_requirements(cfg),
        # Declared so that `load_model(uri, model_config={"runtime": "onnx"})` may switch runtimes at load time.
        model_config={"runtime": meta["runtime"]} if "runtime" in meta else None,
        # Read by `newstag tag` without loading any training code: the default abstention threshold.
        metadata={"labels": list(cfg.labels), "model_kind": cfg.model.kind, "min_score": cfg.eval.min_score},
    )
    version = str(info.registered_model_version) if cfg.tracking.registered_model else None
    if version and cfg.tracking.alias:
        mlflow.MlflowClient().set_registered_model_alias(cfg.tracking.registered_model, cfg.tracking.alias, version)
    return info.model_uri, version


def _requirements(cfg: Config) -> list[str]:
    from importlib.metadata import version

    names = ["mlflow", "pandas", "numpy", "scikit-learn", "skops"]
    if cfg.model.kind == "transformer":
        names += ["torch", "transformers", "safetensors", "onnxruntime"]
    return [f"{name}=={version(name)}" for name in names]


def scratch_dir() -> tempfile.TemporaryDirectory:
    return tempfile.TemporaryDirectory(prefix="newstag-")
