"""compare, promote and abstention, on real registered models."""

import json

import mlflow
import pandas as pd
from conftest import TINY, last_json, run_cli


def test_compare_baseline_and_transformer_runs(tmp_path, trained, tiny_transformer):
    proc = run_cli("compare", trained["run_id"], tiny_transformer["run_id"], "--data", TINY, "-o", tmp_path, check=True)
    result = last_json(proc.stdout)
    assert result["n"] == 32 and len(result["models"]) == 2
    md = (tmp_path / "compare.md").read_text()
    assert "| macro_f1 |" in md and "Δ" in md and "[" in md  # intervals and deltas
    page = (tmp_path / "compare.html").read_text()
    assert "data:image/png;base64," in page and "Sentences labelled differently" in page
    run = mlflow.get_run(result["run_id"])
    assert {a.path for a in mlflow.MlflowClient().list_artifacts(run.info.run_id)} >= {"compare.md", "compare.html"}


def test_compare_needs_two_models(tmp_path, trained):
    proc = run_cli("compare", trained["run_id"], "--data", TINY, "-o", tmp_path)
    assert proc.returncode == 2 and "at least two" in proc.stderr


def test_promote_by_run_and_by_metric(trained, tiny_transformer):
    client = mlflow.MlflowClient()
    result = last_json(run_cli("promote", tiny_transformer["run_id"], "--name", "newstag-tiny-transformer",
                               "--alias", "champion", check=True).stdout)
    assert result["version"] == "1" and result["previous_version"] is None
    assert str(client.get_model_version_by_alias("newstag-tiny-transformer", "champion").version) == "1"
    best = last_json(run_cli("promote", "--best-by", "dev/macro_f1", "--name", "newstag-test", "--alias", "best",
                             check=True).stdout)
    assert best["metric"] == "dev/macro_f1" and best["version"] == "1"
    bad = run_cli("promote", "no-such-run", "--name", "newstag-test")
    assert bad.returncode == 2 and "Traceback" not in bad.stderr


def test_min_score_marks_needs_review(tmp_path, trained):
    src = tmp_path / "d.jsonl"
    src.write_text(json.dumps({"id": "x", "text": "The ministry denied it. Something else happened today."}) + "\n")
    out = tmp_path / "o.jsonl"
    run_cli("tag", src, "-o", out, "--model", "models:/newstag-test@champion", "--min-score", "0.99", check=True)
    rows = pd.read_json(out, lines=True)
    assert (rows["label"] == "needs_review").all()
    assert (rows["score"] < 0.99).all()


def test_min_score_from_the_training_config_travels_with_the_model(tmp_path, tiny_config):
    proc = run_cli("train", "-c", tiny_config, "--set", "eval.min_score=0.99", "--set", "tracking.registered_model=null",
                   "--set", "eval.bootstrap=0", check=True)
    src = tmp_path / "d.jsonl"
    src.write_text(json.dumps({"id": "x", "text": "The ministry denied it."}) + "\n")
    out = tmp_path / "o.jsonl"
    run_cli("tag", src, "-o", out, "--model", last_json(proc.stdout)["model_uri"], check=True)
    assert (pd.read_json(out, lines=True)["label"] == "needs_review").all()
