"""The training stages in order: load config and data → fit → evaluate on dev and test → log and register.

The trainer is picked from a plain table; both trainers return a classifier with the same interface, and
everything after fitting is shared.
"""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np

from train import baseline, evaluate, tracking
from train.config import Config, load_config
from train.data import load_splits


def _transformer_fit(*args, **kwargs):
    from train import transformer  # torch is imported only when a transformer is trained

    return transformer.fit(*args, **kwargs)


TRAINERS = {"baseline": baseline.fit, "transformer": _transformer_fit}


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
    splits = load_splits(cfg)
    seed_everything(cfg.seed)
    with tracking.start_run(cfg, Path(config_path), splits) as run, tracking.scratch_dir() as scratch:
        model_dir = Path(scratch) / "model"
        clf = TRAINERS[cfg.model.kind](cfg, splits, model_dir, tracking.log_metrics)
        results: dict[str, float] = {}
        for name, part in (("dev", splits.dev), ("test", splits.test)):
            rep = evaluate.report(part, clf.predict_proba(part["text"].tolist()), cfg.labels, name,
                                  cfg.eval.bootstrap if name == "test" else 0, cfg.seed)
            evaluate.log_report(rep)
            results.update(rep.metrics)
        model_uri, version = None, None
        if cfg.tracking.log_model:
            model_uri, version = tracking.log_model(model_dir, cfg, splits.dev["text"].head(3).tolist())
    headline = {k: round(v, 4) for k, v in results.items()
                if k.split("/", 1)[1] == "accuracy" or k.split("/", 1)[1].startswith(("macro_f1", "f1_"))}
    return {
        "run_id": run.info.run_id,
        "experiment_id": run.info.experiment_id,
        "model_uri": model_uri,
        "registered_model": cfg.tracking.registered_model if version else None,
        "version": version,
        "alias": cfg.tracking.alias if version else None,
        "model_kind": cfg.model.kind,
        **headline,
    }
