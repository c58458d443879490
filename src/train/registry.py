"""Aliases on the model registry: ``champion`` is what ``newstag tag`` uses by default.

A version can be named by run id, by ``models:/NAME/VERSION`` or by number, or chosen by a metric of the run
that produced it (``--best-by dev/macro_f1``), so promotion is a reviewed, reproducible decision.
"""

from __future__ import annotations

import re

from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from train.config import ConfigError


def _resolve(client: MlflowClient, name: str, ref: str) -> str:
    if m := re.fullmatch(r"models:/([^/@]+)/(\d+)", ref):
        if m[1] != name:
            raise ConfigError(f"{ref} belongs to registered model {m[1]!r}, not {name!r} (use --name)")
        return m[2]
    if m := re.fullmatch(r"models:/([^/@]+)@(.+)", ref):
        return str(client.get_model_version_by_alias(m[1], m[2]).version)
    if ref.isdigit():
        return str(client.get_model_version(name, ref).version)
    versions = client.search_model_versions(f"name='{name}' and run_id='{ref}'")
    if not versions:
        raise ConfigError(f"{ref!r} is neither a version of {name!r} nor a run that registered one")
    return str(max(int(v.version) for v in versions))


def _best(client: MlflowClient, name: str, metric: str) -> tuple[str, float]:
    best: tuple[str, float] | None = None
    for version in client.search_model_versions(f"name='{name}'"):
        value = client.get_run(version.run_id).data.metrics.get(metric) if version.run_id else None
        if value is not None and (best is None or value > best[1]):
            best = (str(version.version), value)
    if best is None:
        raise ConfigError(f"no version of {name!r} has a run with metric {metric!r}")
    return best


def promote(ref: str | None, alias: str, name: str = "newstag", best_by: str | None = None) -> dict:
    client = MlflowClient()
    if (ref is None) == (best_by is None):
        raise ConfigError("name a model (run id, models:/NAME/VERSION or version) or use --best-by METRIC, not both")
    try:
        previous = str(client.get_model_version_by_alias(name, alias).version)
    except MlflowException:
        previous = None
    result: dict = {"registered_model": name, "alias": alias, "previous_version": previous}
    if best_by:
        version, value = _best(client, name, best_by)
        result.update({"metric": best_by, "value": value})
    else:
        version = _resolve(client, name, ref)
    client.set_registered_model_alias(name, alias, version)
    result.update({"version": version, "model_uri": f"models:/{name}@{alias}"})
    return result
