"""The training stages in order: load config and data → fit → evaluate on dev and test → log and register.

The trainer is picked from the registry of model kinds (``train.kinds``); every trainer returns a classifier with
the same interface, and everything after fitting is shared.
"""

from __future__ import annotations

import random
import time
from pathlib import Path

import numpy as np

from train import evaluate, kinds, progress, tracking
from train.config import Config, load_config
from train.data import load_splits
from train.metrics import Evaluator


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    try:
        import torch
    except ImportError:
        return
    torch.manual_seed(seed)


def train(config_path: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> dict:
    cfg: Config = load_config(config_path, overrides)
    kinds.get(cfg.model.kind).check_config(cfg)
    splits = load_splits(cfg)
    seed_everything(cfg.seed)
    with tracking.start_run(cfg, Path(config_path), splits) as run, tracking.scratch_dir() as scratch:
        model_dir = Path(scratch) / "model"
        # The model is logged before anything else can fail: a broken plot never costs a trained model, and a
        # failure after the weights are saved (calibration, export, the pyfunc log) keeps them in the run.
        model_uri, version, started = None, None, time.monotonic()
        try:
            clf = kinds.get(cfg.model.kind).fit(cfg, splits, model_dir, tracking.log_metrics)
            tracking.log_resolved(model_dir)
            if cfg.tracking.log_model:
                model_uri, version = tracking.log_model(model_dir, cfg, splits.dev.head(3))
        except Exception:
            if (model_dir / "meta.json").exists():
                tracking.keep_model_files(model_dir)
            raise
        progress.say(f"{cfg.model.kind} trained in {(time.monotonic() - started) / 60:.1f} min"
                     + (f", logged as {model_uri}" if model_uri else "")
                     + (f", registered as {cfg.tracking.registered_model} version {version}" if version else ""))
        evaluator, results = Evaluator(cfg.labels, cfg.eval.bootstrap, cfg.seed), {}
        # A set that a stage of the model was fitted on is reported from its cross-fitted scores, not in-sample.
        held_out = getattr(clf, "cross_fitted", {})
        for name, part in splits.evaluations():
            progress.say(f"scoring {name}: {len(part):,} sentences")
            # Intervals on test only: dev picks models, test reports them.
            proba = held_out[name] if name in held_out else clf.predict_proba(part)
            rep = evaluator.report(part, proba, name, intervals=name.endswith("test"))
            evaluate.log_report(rep)
            results.update(rep.metrics)
    return {
        "run_id": run.info.run_id,
        "experiment_id": run.info.experiment_id,
        "model_uri": model_uri,
        "registered_model": cfg.tracking.registered_model if version else None,
        "version": version,
        "alias": cfg.tracking.alias if version else None,
        "model_kind": cfg.model.kind,
        **headline(results),
    }


def headline(results: dict[str, float]) -> dict[str, float]:
    """Accuracy, macro-F1 (with interval) and per-class F1 of every scored set: the JSON line users read."""
    return {k: round(v, 4) for k, v in results.items()
            if k.split("/", 1)[1] == "accuracy" or k.split("/", 1)[1].startswith(("macro_f1", "f1_"))}


def train_seeds(config_path: str | Path, overrides: list[str] | tuple[str, ...] = (), seeds: int = 1) -> dict:
    """Train `seeds` runs (seed, seed+1, …) as children of one parent run that logs mean and std of each metric.

    Seed alone moves a ~1,200-sentence test score by about ±0.02, so configs are compared on these means.
    """
    if seeds <= 1:
        return train(config_path, overrides)
    cfg = load_config(config_path, overrides)
    children = []
    with tracking.parent_run(cfg, Path(config_path), seeds) as parent:
        for k in range(seeds):
            # Children log their model but do not register it: one version per config, not per seed.
            children.append(train(config_path, [*overrides, f"seed={cfg.seed + k}", "tracking.registered_model=null",
                                                f"tracking.run_name={cfg.tracking.run_name or cfg.model.kind}-seed{cfg.seed + k}"]))
        summary = tracking.log_seed_summary([tracking.run_metrics(c["run_id"]) for c in children])
    return {"run_id": parent.info.run_id, "experiment_id": parent.info.experiment_id, "seeds": seeds,
            "children": [c["run_id"] for c in children], "model_kind": cfg.model.kind,
            **{k: round(v, 4) for k, v in summary.items() if k.split("/", 1)[1].startswith(("macro_f1", "accuracy"))
               and not k.split("/", 1)[1].startswith(("macro_f1_lo", "macro_f1_hi"))}}
