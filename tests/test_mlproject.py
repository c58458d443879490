"""The MLproject at the repository root: `mlflow run . -e train` trains through the real CLI and logs one finished run."""

import os
import subprocess

import mlflow
import pytest
import yaml
from conftest import BIN, ROOT, TINY

pytestmark = pytest.mark.slow


def test_mlproject_declares_the_entry_points():
    spec = yaml.safe_load((ROOT / "MLproject").read_text())
    points = spec["entry_points"]
    assert set(points) >= {"train", "evaluate", "tag"}
    assert points["train"]["parameters"]["config"]["default"] == "configs/baseline.yaml"
    assert (ROOT / points["train"]["parameters"]["config"]["default"]).is_file()
    assert points["tag"]["parameters"]["model"]["default"] == "models:/newstag@champion"
    assert all(p["command"].startswith("newstag ") for p in points.values())


def test_mlflow_run_train_logs_a_finished_run(tmp_path):
    cfg = tmp_path / "project-baseline.yaml"
    cfg.write_text(
        f"extends: {(ROOT / 'configs' / 'baseline.yaml').resolve()}\n"
        f"data: {{path: {TINY.resolve()}}}\n"
        "tracking: {registered_model: null, experiment: tests}\n"
    )
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
           "MLFLOW_TRACKING_URI": os.environ["MLFLOW_TRACKING_URI"]}
    for leaked in ("MLFLOW_RUN_ID", "MLFLOW_EXPERIMENT_ID", "MLFLOW_EXPERIMENT_NAME"):
        env.pop(leaked, None)  # mlflow.set_experiment() in this process exports MLFLOW_EXPERIMENT_ID
    # `newstag train` calls set_experiment(tracking.experiment); MLflow refuses to resume the project's run from
    # another experiment, so the project run must be opened in the config's experiment.
    proc = subprocess.run(
        [str(BIN / "mlflow"), "run", str(ROOT), "-e", "train", "-P", f"config={cfg}", "--env-manager", "local",
         "--experiment-name", "tests"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, f"stdout:\n{proc.stdout[-3000:]}\nstderr:\n{proc.stderr[-3000:]}"

    runs = mlflow.search_runs(experiment_names=["tests"], output_format="list",
                              filter_string=f"tags.config_file = '{cfg}'")
    assert len(runs) == 1
    run = runs[0]
    assert run.info.status == "FINISHED"
    assert "dev/macro_f1" in run.data.metrics
    assert run.data.tags["mlflow.source.type"] == "PROJECT"
    assert run.data.tags["mlflow.project.entryPoint"] == "train"
    assert run.data.tags["model_kind"] == "baseline"
