"""Ensembles: logged models and configs trained in the run, read as one weighted geometric mean, weights from dev."""

import os

import mlflow
import numpy as np
import pandas as pd
import pytest
from conftest import ROOT, TINY, last_json, run_cli

pytest.importorskip("torch")


def ensemble_config(path, members: str, rest: str = ""):
    path.write_text(f"extends: {ROOT / 'configs' / 'ensemble.yaml'}\ndata: {{path: {TINY}}}\n"
                    f"model: {{kind: ensemble, members: {members}}}\neval: {{bootstrap: 20}}\n"
                    f"tracking: {{experiment: tests, registered_model: newstag-ensemble, alias: candidate}}\n{rest}")
    return path


@pytest.fixture(scope="module")
def ensemble(tmp_path_factory, trained, tiny_transformer):
    """The tiny baseline and the tiny transformer, both already logged, with weights fitted on dev."""
    cfg = ensemble_config(tmp_path_factory.mktemp("ens") / "ens.yaml",
                          f"[{{model: '{trained['model_uri']}', name: tfidf}}, "
                          f"{{model: '{tiny_transformer['model_uri']}', name: encoder}}]")
    return last_json(run_cli("train", "-c", cfg, check=True).stdout)


def model_dir(uri: str) -> str:
    return os.path.join(mlflow.artifacts.download_artifacts(uri), "artifacts", "model")


def article_rows() -> pd.DataFrame:
    rows = pd.read_json(TINY, lines=True)
    rows.loc[2, "text"] = "“We will rebuild,” the mayor said. “Every street of it."  # a quotation over two rows
    rows.loc[3, "text"] = "And soon.”"
    rows.loc[3, "article_id"] = rows.loc[2, "article_id"]
    return rows[["text", "article_id", "title"]]


def test_output_is_the_weighted_geometric_mean_of_the_members(ensemble):
    from newstag_model.context import with_context
    from newstag_model.load import load
    from newstag_model.schema import read_meta

    meta = read_meta(model_dir(ensemble["model_uri"]))
    assert [m["name"] for m in meta["members"]] == ["tfidf", "encoder"]
    weights, temperature = np.array(meta["weights"]), meta["temperature"]
    assert weights.sum() == pytest.approx(1.0) and temperature > 0
    rows = article_rows()
    log_proba = []
    for member in meta["members"]:
        clf = load(os.path.join(model_dir(ensemble["model_uri"]), member["dir"]))
        log_proba.append(np.log(clf.sentence_proba(with_context(rows, **clf.context))))
    mixed = np.exp(sum(w * lp for w, lp in zip(weights, log_proba)) / temperature)
    mixed /= mixed.sum(axis=1, keepdims=True)
    quotation = np.sqrt(mixed[2] * mixed[3])  # the two rows of one quotation share one decision
    mixed[2] = mixed[3] = quotation / quotation.sum()
    out = mlflow.pyfunc.load_model(ensemble["model_uri"]).predict(rows)
    labels = ("claim", "attributed_quote", "unverified", "official_response")
    np.testing.assert_allclose(out[[f"prob_{label}" for label in labels]].to_numpy(), mixed, rtol=0, atol=1e-9)


def test_weights_are_the_best_of_the_grid_on_dev_and_members_are_scored(ensemble, trained, tiny_transformer):
    from newstag_model.context import with_context
    from newstag_model.load import load
    from newstag_model.probability import pool_quote_spans
    from train import ensemble as ens
    from train.config import LABELS, load_config
    from train.data import load_splits
    from train.metrics import Evaluator

    metrics = mlflow.MlflowClient().get_run(ensemble["run_id"]).data.metrics
    dev = load_splits(load_config(ROOT / "configs" / "ensemble.yaml", [f"data.path={TINY}"])).dev
    evaluator = Evaluator(LABELS)
    for name, member in (("tfidf", trained), ("encoder", tiny_transformer)):
        own = load(model_dir(member["model_uri"])).predict_proba(dev)
        assert metrics[f"members/{name}/dev/macro_f1"] == pytest.approx(
            evaluator.scores(dev["label"].tolist(), own, "dev", intervals=False)["dev/macro_f1"])
        assert "members/" + name + "/test/macro_f1" in metrics
    clf = load(model_dir(ensemble["model_uri"]))
    log_proba = clf.member_log_proba(dev)
    span = with_context(dev, quote_spans=True)["span"]
    grid = [evaluator.primary(dev["label"].tolist(), pool_quote_spans(clf.combine(log_proba, w, 1.0), span))
            ["macro_f1"] for w in ens.simplex_grid(2)]
    assert metrics["dev/macro_f1"] == pytest.approx(max(grid))
    assert metrics["dev/macro_f1"] >= max(metrics["members/tfidf/dev/macro_f1"], metrics["members/encoder/dev/macro_f1"])
    assert [metrics["ensemble/weight_tfidf"], metrics["ensemble/weight_encoder"]] == pytest.approx(clf.weights.tolist())


def test_logged_ensemble_needs_its_members_packages_and_tags(ensemble, tmp_path):
    requirements = open(os.path.join(mlflow.artifacts.download_artifacts(ensemble["model_uri"]), "requirements.txt")).read()
    for package in ("scikit-learn==", "torch==", "onnxruntime==", "mlflow=="):
        assert package in requirements
    (tmp_path / "a.txt").write_text("Flood\n\nThe river rose overnight. “We lost everything,” said a farmer.\n")
    out = tmp_path / "tags.jsonl"
    run_cli("tag", tmp_path / "a.txt", "-o", out, "--model", "models:/newstag-ensemble@candidate", check=True)
    rows = pd.read_json(out, lines=True)
    assert len(rows) == 2 and rows["model_version"].astype(str).tolist() == [ensemble["version"]] * 2


def test_given_weights_are_kept_and_configs_train_in_the_run(tmp_path, tiny_transformer):
    """Weight 1 on a baseline trained here and 0 on the transformer, no temperature: the baseline's own output."""
    from newstag_model.load import load
    from newstag_model.schema import read_meta

    baseline = tmp_path / "members" / "plain.yaml"
    baseline.parent.mkdir()
    baseline.write_text(f"extends: {ROOT / 'configs' / 'baseline.yaml'}\nmodel: {{kind: baseline, C: 100.0}}\n")
    cfg = ensemble_config(tmp_path / "ens.yaml", f"[{{config: members/plain.yaml}}, {{model: '{tiny_transformer['model_uri']}'}}]",
                          "")
    out = last_json(run_cli("train", "-c", cfg, "--set", "model.weights=[2, 0]", "--set", "model.temperature_scaling=false",
                            "--set", "tracking.registered_model=null", check=True).stdout)
    ensemble_dir = model_dir(out["model_uri"])
    meta = read_meta(ensemble_dir)
    assert meta["weights"] == [1.0, 0.0] and meta["temperature"] == 1.0
    assert [m["name"] for m in meta["members"]] == ["plain", "member1"]
    rows = article_rows()
    member = load(os.path.join(ensemble_dir, "members", "plain"))
    assert read_meta(os.path.join(ensemble_dir, "members", "plain"))["config"]["model"]["C"] == 100.0
    np.testing.assert_allclose(load(ensemble_dir).predict_proba(rows), member.predict_proba(rows),
                               rtol=0, atol=1e-12)


def test_the_run_scores_each_member_once_on_dev_and_test(tmp_path, monkeypatch):
    """The members' dev and test outputs, computed to fit the weights, are what the run's evaluation reads: a
    transformer member is not scored twice.  Other frames, even equal copies, are computed afresh."""
    from newstag_model.baseline import BaselineClassifier
    from newstag_model.load import load
    from train import ensemble as ens
    from train.config import load_config
    from train.data import load_splits

    for name, c in (("a", 100.0), ("b", 1.0)):
        (tmp_path / f"{name}.yaml").write_text(f"extends: {ROOT / 'configs' / 'baseline.yaml'}\nmodel: {{kind: baseline, C: {c}}}\n")
    cfg = load_config(ensemble_config(tmp_path / "ens.yaml", "[{config: a.yaml}, {config: b.yaml}]"))
    splits = load_splits(cfg)
    calls = []
    sentence_proba = BaselineClassifier.sentence_proba
    monkeypatch.setattr(BaselineClassifier, "sentence_proba",
                        lambda self, frame: calls.append(len(frame)) or sentence_proba(self, frame))
    clf = ens.fit(cfg, splits, tmp_path / "model")
    fresh = load(tmp_path / "model")
    calls.clear()
    for frame in (splits.dev, splits.test):
        np.testing.assert_array_equal(clf.predict_proba(frame), fresh.predict_proba(frame))
    assert calls == [len(splits.dev)] * 2 + [len(splits.test)] * 2  # the fresh model's two members, not clf's
    calls.clear()
    np.testing.assert_array_equal(clf.predict_proba(splits.dev.copy()), fresh.predict_proba(splits.dev))
    assert calls == [len(splits.dev)] * 4


def test_a_bad_member_config_is_named_before_any_run(tmp_path):
    (tmp_path / "typo.yaml").write_text(f"extends: {ROOT / 'configs' / 'baseline.yaml'}\nmodel: {{kind: baseline, Cee: 1}}\n")
    cfg = ensemble_config(tmp_path / "ens.yaml", "[{config: typo.yaml}, {config: nope.yaml}]",
                          "tracking: {experiment: never-opened}\n")
    proc = run_cli("train", "-c", cfg)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "model.members.0.config" in proc.stderr and "model.Cee: unknown key" in proc.stderr
    assert mlflow.MlflowClient().get_experiment_by_name("never-opened") is None
    (tmp_path / "typo.yaml").write_text(f"extends: {ROOT / 'configs' / 'baseline.yaml'}\n")
    proc = run_cli("train", "-c", cfg)
    assert proc.returncode == 2 and "model.members.1.config" in proc.stderr and "no such config file" in proc.stderr


def test_a_member_uri_without_a_newstag_model_is_named(tmp_path):
    """An MLflow model of another kind, or a run whose artifacts were deleted: a clear error, not a traceback."""
    mlflow.set_experiment("tests")
    with mlflow.start_run() as run:
        mlflow.log_text("flavors: {}\n", "model/MLmodel")
    uri = f"runs:/{run.info.run_id}/model"
    cfg = ensemble_config(tmp_path / "ens.yaml", f"[{{model: '{uri}'}}, {{model: '{uri}'}}]")
    proc = run_cli("train", "-c", cfg)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert f"{uri} holds no newstag model" in proc.stderr


def test_a_member_trained_on_other_data_is_flagged(tmp_path, trained):
    """Its weight is fitted on dev sentences it may have trained on: the user is told, the run goes on."""
    other = tmp_path / "other.jsonl"
    other.write_text(TINY.read_text().replace("flooding more than 200 homes", "flooding more than 300 homes"))
    cfg = ensemble_config(tmp_path / "ens.yaml", f"[{{model: '{trained['model_uri']}', name: a}}, "
                                                 f"{{model: '{trained['model_uri']}', name: b}}]")
    same = run_cli("train", "-c", cfg, "--set", "tracking.registered_model=null", check=True)
    moved = run_cli("train", "-c", cfg, "--set", f"data.path={other}", "--set", "tracking.registered_model=null", check=True)
    assert "may be optimistic" not in same.stderr
    assert "may be optimistic" in moved.stderr and trained["model_uri"] in moved.stderr
