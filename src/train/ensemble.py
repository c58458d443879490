"""Several models read as one (``model.kind: ensemble``): the weighted geometric mean of their probabilities.

The transformer and the baseline err on different sentences (the baseline reads character n-grams and every word
of the title, the transformer word order and meaning), so on real dev their geometric mean beats the better of the
two (README "Ensemble").  Members are configs trained in this run, which share the ensemble's seed, labels and
splits and keep their own model, context and ``data.train_sources``, or models already logged, copied in.  The
weights are fitted on dev for the macro-F1 of the ensemble's final output (quotation pooling included), over a
0.05 grid of the simplex: the members themselves are among the candidates, so on dev the ensemble never scores
below its best member.  A temperature fitted on dev then calibrates the mean.
"""

from __future__ import annotations

import itertools
import shutil
import warnings
from pathlib import Path

import numpy as np

from newstag_model.context import with_context
from newstag_model.load import EnsembleClassifier, load
from newstag_model.probability import pool_quote_spans
from newstag_model.schema import META, read_meta, write_meta
from train import kinds, metrics
from train.config import Config, ConfigError, member_config
from train.data import Splits, load_splits

GRID_STEPS = 20  # weights in steps of 1/20


def simplex_grid(n: int, steps: int = GRID_STEPS) -> np.ndarray:
    """Every weight vector of `n` non-negative multiples of 1/steps that sum to 1, in lexicographic order."""
    return np.array([[b - a - 1 for a, b in zip((-1, *cuts), (*cuts, steps + n - 1))]
                     for cuts in itertools.combinations(range(steps + n - 1), n - 1)], dtype=np.float64) / steps


def member_configs(cfg: Config) -> dict[str, Config | str]:
    """Name -> the member's resolved config (trained here) or its model URI (copied); configs are checked before
    anything trains, so a typo in the third member's file does not cost the first member's training."""
    out = {}
    for i, (name, member) in enumerate(zip(cfg.model.member_names(), cfg.model.members)):
        out[name] = member_config(member.config, cfg, f"model.members.{i}.config") if member.config else member.model
    return out


def _copy_logged(uri: str, target: Path, labels: tuple[str, ...], digest: str) -> None:
    """The logged model's directory under `target`; a warning when it was trained on other data, since its
    weight is then fitted on sentences it may have trained on."""
    import mlflow

    try:
        local = Path(mlflow.artifacts.download_artifacts(artifact_uri=uri)) / "artifacts" / "model"
    except Exception as err:  # noqa: BLE001 - MLflow raises several types for a missing run, version or alias
        raise ConfigError(f"model.members: cannot fetch {uri!r}: {err}") from None
    if not (local / META).is_file():
        raise ConfigError(f"model.members: {uri} holds no newstag model (no artifacts/model/{META}): "
                          "another kind of MLflow model, or one whose artifacts were deleted")
    meta = read_meta(local)
    if tuple(meta["labels"]) != tuple(labels):
        raise ConfigError(f"model.members: {uri} predicts {meta['labels']}, not this config's labels {list(labels)}")
    if meta["kind"] == "ensemble":
        raise ConfigError(f"model.members: {uri} is itself an ensemble")
    shutil.copytree(local, target)
    try:
        trained_on = mlflow.get_run(mlflow.models.get_model_info(uri).run_id).data.tags.get("data_digest")
    except Exception:  # noqa: BLE001 - a model logged outside a run, or a store that lost the run
        trained_on = None
    if trained_on != digest:
        warnings.warn(f"model.members: {uri} was trained on data {trained_on or '(unknown)'}, not this run's {digest}: "
                      "its dev scores, and so its weight, may be optimistic", stacklevel=2)


def _prefixed(log_step, prefix: str):
    if log_step is None:
        return None
    return lambda values, step=None: log_step({prefix + k: v for k, v in values.items()}, step=step)


def fit(cfg: Config, splits: Splits, model_dir: Path, log_step=None) -> EnsembleClassifier:
    params, labels = cfg.model, cfg.labels
    sources = member_configs(cfg)
    members, runtimes = [], []
    for name, source in sources.items():
        target = model_dir / "members" / name
        if isinstance(source, str):
            _copy_logged(source, target, labels, splits.digest)
        else:
            kinds.get(source.model.kind).fit(source, load_splits(source), target, _prefixed(log_step, f"members/{name}/"))
        member_meta = read_meta(target)
        members.append({"name": name, "dir": f"members/{name}", "kind": member_meta["kind"],
                        "source": source if isinstance(source, str) else "trained in this run"})
        runtimes.append(member_meta.get("runtime"))
    meta = {"kind": "ensemble", "labels": list(labels), "members": members,
            "weights": [1.0 / len(members)] * len(members), "temperature": 1.0,
            "context": {"quote_spans": cfg.context.quote_spans}, "config": cfg.model_dump(mode="json")}
    if any(runtimes):
        meta["runtime"] = next(r for r in runtimes if r)  # lets `newstag tag --runtime` reach the encoder member
    write_meta(model_dir, meta)
    clf = load(model_dir)
    scored = [(frame, clf.member_log_proba(frame)) for frame in (splits.dev, splits.test)]
    meta.update(choose_weights(clf, [m["name"] for m in members], scored, params.weights,
                               params.temperature_scaling, log_step))
    write_meta(model_dir, meta)
    return reusing(load(model_dir), scored)


def reusing(clf: EnsembleClassifier, scored: list) -> EnsembleClassifier:
    """`clf`, answering for the very frames already scored (dev and test) from memory: the members' outputs do
    not depend on the weights, and the run's shared evaluation would otherwise score every member on dev and
    test a second time (minutes for a transformer member on two cores)."""
    compute = clf.member_log_proba

    def member_log_proba(inputs):
        for frame, log_proba in scored:
            if inputs is frame:
                return log_proba
        return compute(inputs)

    clf.member_log_proba = member_log_proba
    return clf


def choose_weights(clf: EnsembleClassifier, names: list[str], scored: list, weights,
                   temperature_scaling: bool, log_step=None) -> dict:
    """The weights (given, or best dev macro-F1 on the grid) and the dev temperature, from each member's
    log-probabilities on dev and test (`scored`, in that order); each member's own dev and test scores go to
    ``members/<name>/dev/…``, ``…/test/…`` so the run shows what the ensemble adds."""
    evaluator, labels = metrics.Evaluator(clf.labels), clf.labels
    logged: dict[str, float] = {}
    parts = {split: (frame, log_proba,
                     with_context(frame, quote_spans=bool(clf.context.get("quote_spans")))["span"])
             for split, (frame, log_proba) in zip(("dev", "test"), scored)}
    for i, name in enumerate(names):
        for split, (frame, log_proba, _) in parts.items():
            own = with_context(frame, **clf.members[i].context)["span"]
            scores = evaluator.scores(frame["label"].tolist(), pool_quote_spans(np.exp(log_proba[i]), own),
                                      split, intervals=False)
            logged.update({f"members/{name}/{k}": v for k, v in scores.items()})
    dev, log_proba, span = parts["dev"]
    y_dev = dev["label"].tolist()

    def dev_f1(w) -> float:
        return evaluator.primary(y_dev, pool_quote_spans(clf.combine(log_proba, w, 1.0), span))[
            metrics.PRIMARY_NAME]

    if weights is None:
        grid = simplex_grid(len(clf.members))
        scores = np.array([dev_f1(w) for w in grid])
        # Among equal dev scores the most even mix: no member is dropped on a tie.
        best = np.flatnonzero(scores == scores.max())
        weights = grid[best[np.abs(grid[best] - 1 / len(grid[0])).sum(axis=1).argmin()]]
    weights = np.asarray(weights, dtype=np.float64) / np.sum(weights)
    mixed = np.tensordot(weights, log_proba, axes=1)
    logged.update(metrics.temperature_on_dev(mixed, y_dev, labels) if temperature_scaling
                  else {"calibration/temperature": 1.0})
    logged.update({f"ensemble/weight_{n}": float(w) for n, w in zip(names, weights)})
    temperature = logged["calibration/temperature"]
    if log_step is not None:
        log_step(logged)
    return {"weights": [float(w) for w in weights], "temperature": float(temperature)}
