"""compare, promote and abstention, on real registered models."""

import json

import mlflow
import pandas as pd
import pytest
from conftest import TINY, last_json, run_cli


def test_compare_names_each_model_and_reports_its_scores(tmp_path, trained, tiny_transformer):
    from train.evaluate import evaluate_uri

    proc = run_cli("compare", trained["run_id"], tiny_transformer["run_id"], "--data", TINY, "-o", tmp_path,
                   "--bootstrap", "50", check=True)
    result = last_json(proc.stdout)
    assert result["n"] == 32 and len(result["models"]) == 2
    base, other = result["models"].values()
    md = (tmp_path / "compare.md").read_text()
    page = (tmp_path / "compare.html").read_text()
    for model, run in ((base, trained), (other, tiny_transformer)):
        info = mlflow.get_run(run["run_id"]).info
        link = f"http://127.0.0.1:5000/#/experiments/{info.experiment_id}/runs/{info.run_id}"
        assert model["run_id"] == info.run_id and model["run_name"] == info.run_name and model["link"] == link
        assert model["uri"] == run["model_uri"]
        assert f"{info.run_name} ({info.run_id[:8]})" in md and link in md and link in page
        # Re-scored by the same evaluator as `newstag evaluate`: the very same number.
        assert model["macro_f1"] == round(evaluate_uri(run["model_uri"], str(TINY)).metrics["eval/macro_f1"], 4)
    assert base["registered"] == ["newstag-test v1"] and "registered as newstag-test v1" in md
    assert other["registered"] == ["newstag-tiny-transformer v1"]
    rows = {line.split(" | ")[0].strip("| "): line for line in md.splitlines() if line.startswith("| ")}
    assert rows["macro_f1"].split(" | ")[1].startswith(f"{base['macro_f1']:.3f} [")  # value and its interval
    delta = float(rows["macro_f1"].rstrip(" |").rsplit(" | ", 1)[1])
    assert delta == pytest.approx(other["macro_f1"] - base["macro_f1"], abs=7e-4)  # shown to 3 decimals
    assert "data:image/png;base64," in page and f"Sentences labelled differently ({result['disagreements']})" in page
    run = mlflow.get_run(result["run_id"])
    assert {a.path for a in mlflow.MlflowClient().list_artifacts(run.info.run_id)} >= {"compare.md", "compare.html"}


def test_compare_resolves_registry_uris_and_links_to_the_ui_given(tmp_path, trained, tiny_transformer):
    proc = run_cli("compare", "models:/newstag-test@champion", "models:/newstag-tiny-transformer/1", "--data", TINY,
                   "-o", tmp_path, "--no-log", "--bootstrap", "0", "--ui-url", "https://mlflow.example.org/", check=True)
    models = list(last_json(proc.stdout)["models"].values())
    assert [m["run_id"] for m in models] == [trained["run_id"], tiny_transformer["run_id"]]
    assert all(m["link"].startswith("https://mlflow.example.org/#/experiments/") for m in models)


def test_compare_needs_two_models(tmp_path, trained):
    proc = run_cli("compare", trained["run_id"], "--data", TINY, "-o", tmp_path)
    assert proc.returncode == 2 and "at least two" in proc.stderr


def test_promote_by_run(trained, tiny_transformer):
    client = mlflow.MlflowClient()
    result = last_json(run_cli("promote", tiny_transformer["run_id"], "--name", "newstag-tiny-transformer",
                               "--alias", "champion", check=True).stdout)
    assert result["version"] == "1" and result["previous_version"] is None
    assert str(client.get_model_version_by_alias("newstag-tiny-transformer", "champion").version) == "1"
    bad = run_cli("promote", "no-such-run", "--name", "newstag-test")
    assert bad.returncode == 2 and "Traceback" not in bad.stderr


def test_promote_best_by_picks_the_highest_of_several_versions(trained):
    """Four versions: dev macro-F1 0.61, 0.74, 0.58 and one whose run lacks the metric; the 0.74 one wins."""
    client = mlflow.MlflowClient()
    client.create_registered_model("newstag-best")
    mlflow.set_experiment("tests-best")
    for value in (0.61, 0.74, 0.58, None):
        with mlflow.start_run() as run:
            if value is not None:
                mlflow.log_metric("dev/macro_f1", value)
        client.create_model_version("newstag-best", source=trained["model_uri"], run_id=run.info.run_id)
    best = last_json(run_cli("promote", "--best-by", "dev/macro_f1", "--name", "newstag-best", "--alias", "champion",
                             check=True).stdout)
    assert best["version"] == "2" and best["value"] == 0.74 and best["metric"] == "dev/macro_f1"
    assert str(client.get_model_version_by_alias("newstag-best", "champion").version) == "2"


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
