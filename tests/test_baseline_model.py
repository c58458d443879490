"""Overfit the tiny set, log, reload by models:/ URI, and require the very same probabilities."""

import json
import os
import subprocess
import sys

import mlflow
import numpy as np
import pandas as pd
import pytest
from sklearn.compose import ColumnTransformer
from conftest import TINY

from newstag_model.load import load
from train.evaluate import proba_from_output


def test_run_logs_stable_metric_names_plots_inputs_and_provenance(trained):
    assert trained["model_uri"].startswith("models:/")
    assert trained["registered_model"] == "newstag-test" and trained["alias"] == "champion"
    run = mlflow.get_run(trained["run_id"])
    names = set(run.data.metrics)
    for split in ("dev", "test"):
        assert {f"{split}/macro_f1", f"{split}/accuracy", f"{split}/f1_official_response", f"{split}/ece"} <= names
    assert {"test/macro_f1_lo", "test/macro_f1_hi"} <= names
    assert run.data.tags["model_kind"] == "baseline"
    assert run.data.params["data_digest"] == run.data.tags["data_digest"]
    assert run.data.tags["mlflow.source.git.commit"]
    artifacts = {a.path for a in mlflow.MlflowClient().list_artifacts(trained["run_id"], "plots")}
    assert "plots/test_confusion.png" in artifacts and "plots/dev_reliability.png" in artifacts
    assert [i.dataset.name for i in run.inputs.dataset_inputs]


def test_training_overfits_the_train_split(trained, tiny_config):
    """C=100 on 24 sentences: the logged model must have memorised every one, read alone or in its article."""
    from train.config import load_config
    from train.data import load_splits
    from train.metrics import Evaluator

    cfg = load_config(tiny_config)
    train = load_splits(cfg).train
    model = mlflow.pyfunc.load_model(trained["model_uri"])
    assert (model.predict(train[["text"]])["label"] == train["label"]).all()
    in_context = proba_from_output(model.predict(train[["text", "article_id", "title"]]))[1]
    scores = Evaluator(cfg.labels).scores(train["label"].tolist(), in_context, "train")
    assert scores["train/accuracy"] == 1.0 and scores["train/macro_f1"] == 1.0


def test_reload_by_registry_uri_gives_identical_probabilities(trained):
    texts = pd.read_json(TINY, lines=True)["text"].tolist()
    by_run = mlflow.pyfunc.load_model(trained["model_uri"]).predict(pd.DataFrame({"text": texts}))
    by_alias = mlflow.pyfunc.load_model("models:/newstag-test@champion").predict(pd.DataFrame({"text": texts}))
    pd.testing.assert_frame_equal(by_run, by_alias, check_exact=True)
    local_dir = os.path.join(mlflow.artifacts.download_artifacts(trained["model_uri"]), "artifacts", "model")
    direct = load(local_dir).predict_proba(texts)
    np.testing.assert_array_equal(proba_from_output(by_run)[1], direct)



def test_the_logged_model_runs_the_code_it_carries(trained, tmp_path):
    """A model carries its own copy of the newstag_model package (code_paths): a fresh process without the project's
    src/ on its path loads it from the model alone and scores as the training process does."""
    from conftest import ROOT

    model = mlflow.artifacts.download_artifacts(trained["model_uri"], dst_path=str(tmp_path))
    texts = pd.read_json(TINY, lines=True)["text"].tolist()
    code = ("import json, os, sys\n"
            f"sys.path = [p for p in sys.path if os.path.realpath(p) != {str((ROOT / 'src').resolve())!r}]\n"
            "import mlflow, pandas as pd\n"
            f"out = mlflow.pyfunc.load_model({model!r}).predict(pd.DataFrame({{'text': {texts!r}}}))\n"
            "import newstag_model\n"
            "print(json.dumps({'package': newstag_model.__file__, 'train': 'train' in sys.modules,\n"
            "                  'p': out.filter(like='prob_').to_numpy().tolist()}))\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert os.path.realpath(out["package"]).startswith(os.path.realpath(model)) and out["train"] is False
    expected = mlflow.pyfunc.load_model(trained["model_uri"]).predict(pd.DataFrame({"text": texts}))
    np.testing.assert_array_equal(np.array(out["p"]), expected.filter(like="prob_").to_numpy())

def test_label_order_and_output_columns(trained):
    out = mlflow.pyfunc.load_model(trained["model_uri"]).predict(pd.DataFrame({"text": ["A sentence."]}))
    assert list(out.columns) == ["label", "score", "prob_claim", "prob_attributed_quote", "prob_unverified",
                                 "prob_official_response"]
    assert abs(out.filter(like="prob_").sum(axis=1).iloc[0] - 1) < 1e-9


def test_batched_equals_one_by_one(trained):
    model = mlflow.pyfunc.load_model(trained["model_uri"])
    texts = pd.read_json(TINY, lines=True)["text"].tolist()
    batched = model.predict(pd.DataFrame({"text": texts}))
    single = pd.concat([model.predict(pd.DataFrame({"text": [t]})) for t in texts], ignore_index=True)
    pd.testing.assert_frame_equal(batched, single, check_exact=False, rtol=0, atol=1e-12)


def test_fast_features_equal_scikit_learns_exactly(tiny_config, tmp_path):
    """The baseline's own feature code (analysis shared and cached) gives scikit-learn's matrix bit for bit, on
    articles in context (every block: text, neighbours, title, quote state), on odd whitespace and Unicode, and
    again with its word cache warm."""
    from newstag_model.baseline import BaselineClassifier
    from newstag_model.context import with_context
    from train import baseline
    from train.config import load_config

    texts = pd.read_json(TINY, lines=True)["text"].tolist()
    odd = ["", "   ", "İstanbul  Straße\u00a0mayor\tsaid \u2003 ÉCOLE", "x\u1680y z\x1fw", "ﬁne ǅemal said, \"no\".",
           "said said said", "A"]
    rows = ['He said: "We will appeal.', "It is unfair.", 'We will win," he added.'] + texts + odd
    frame = pd.DataFrame({"text": rows, "article_id": [f"a{i // 5}" for i in range(len(rows))],
                          "sentence_index": [i % 5 for i in range(len(rows))],
                          "title": [f"Title {i // 5}: Council said" for i in range(len(rows))]})
    cfg = load_config(tiny_config)
    context = {"window": 1, "title": True, "quotes": True, "voice": True}
    inputs = with_context(frame, **context)
    assert all(inputs[c].str.len().any() for c in ("prev", "next", "title", "quoted", "voice"))
    labels = [cfg.labels[i % len(cfg.labels)] for i in range(len(rows))]  # any labels: the features are under test
    pipeline = baseline.build(cfg.model, cfg.seed, context).fit(inputs, labels)
    clf = BaselineClassifier(tmp_path, {"labels": list(cfg.labels), "context": context,
                                        **baseline.save(pipeline, tmp_path)})
    from scipy import sparse

    # scikit-learn's own ColumnTransformer arithmetic: each block's transform, times its weight, side by side
    reference = sparse.hstack([v.transform(inputs[column]) * w if w is not None else v.transform(inputs[column])
                               for _, v, column, w in clf.blocks]).tocsr()
    assert [name for name, *_ in clf.blocks] == ["word", "char", "prev", "next", "title", "quoted", "voice"]
    for _ in range(2):  # cold, then warm
        ours = clf.features(inputs)
        assert ours.shape == reference.shape and (ours != reference).nnz == 0
    # scored block by block (no stacked matrix): scikit-learn's probabilities up to the order of the sums
    np.testing.assert_allclose(clf.predict_proba(frame), clf.estimator.predict_proba(reference)[:, clf._order],
                               rtol=1e-12, atol=1e-15)


def test_dataframe_input_returns_one_row_per_sentence(trained):
    """Guards the pitfall of a Pipeline fitted on a Series: given a DataFrame it returns one row for N."""
    model = mlflow.pyfunc.load_model(trained["model_uri"])
    frame = pd.DataFrame({"text": ["One.", "Two.", "Three."], "other": [1, 2, 3]})
    assert len(model.predict(frame)) == 3


def test_loads_without_pickle(trained):
    code = (
        "import mlflow, pandas as pd\n"
        f"m = mlflow.pyfunc.load_model({trained['model_uri']!r})\n"
        "print(len(m.predict(pd.DataFrame({'text': ['The ministry denied it.', 'Police said two died.']}))))\n"
    )
    env = {**os.environ, "MLFLOW_ALLOW_PICKLE_DESERIALIZATION": "false"}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().splitlines()[-1] == "2"
    files = os.listdir(os.path.join(mlflow.artifacts.download_artifacts(trained["model_uri"]), "artifacts", "model"))
    assert {"baseline.json", "baseline.npz"} <= set(files)
    assert not [f for f in files if f.endswith((".pkl", ".pickle", ".joblib"))]


def test_a_failed_model_log_keeps_the_trained_files_in_the_run(tiny_config, monkeypatch, tmp_path):
    """The pyfunc log is made to fail (failure injection, not a mock of the result): the run still holds the
    trained model directory, and it predicts what a freshly trained one does."""
    from train import run, tracking

    def broken(*args, **kwargs):
        raise RuntimeError("artifact store went away")

    monkeypatch.setattr(tracking, "log_model", broken)
    with pytest.raises(RuntimeError, match="artifact store went away"), pytest.warns(UserWarning, match="model-files"):
        run.train(tiny_config, ["tracking.registered_model=null", "tracking.run_name=broken-log"])
    failed = mlflow.search_runs(experiment_names=["tests"], filter_string="tags.mlflow.runName = 'broken-log'")
    assert failed["status"].tolist() == ["FAILED"]
    kept = mlflow.artifacts.download_artifacts(run_id=failed["run_id"][0], artifact_path="model-files",
                                               dst_path=str(tmp_path))
    texts = ["The ministry denied the report.", "Police said two men were arrested."]
    fresh = tmp_path / "fresh"
    monkeypatch.undo()
    from train.baseline import fit
    from train.config import load_config
    from train.data import load_splits

    cfg = load_config(tiny_config)
    expected = fit(cfg, load_splits(cfg), fresh).predict_proba(texts)
    np.testing.assert_allclose(load(kept).predict_proba(texts), expected, atol=1e-12)


def test_a_pipeline_with_an_untrusted_type_is_refused(tmp_path):
    """Loading never runs arbitrary code: a type outside skops' defaults and our allow-list is refused."""
    import json

    import skops.io as sio
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import FunctionTransformer

    from newstag_model.baseline import BaselineClassifier

    sio.dump(Pipeline([("f", FunctionTransformer(func=os.system))]), tmp_path / "pipeline.skops")
    meta = {"kind": "baseline", "labels": ["claim"], "weights": "pipeline.skops"}
    (tmp_path / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(ValueError, match="refusing to load unexpected types.*system"):
        BaselineClassifier(tmp_path, meta)


PLAIN = "model.nb_scaling=false", "model.temperature_scaling=false"
VARIANTS = {"multinomial": PLAIN, "calibrated": (*PLAIN, "model.calibrate=true"), "nb": ("model.nb_scaling=true",)}


@pytest.mark.parametrize("variant", VARIANTS)
def test_plain_files_rebuild_the_fitted_pipeline_exactly(tiny_config, tmp_path, variant):
    """A model is saved as JSON + npz (no pickle, no skops) and predicts exactly what the fitted pipeline does:
    one multinomial regression, three sigmoid-calibrated folds, or NB-LR's regressions a label; the files hold
    numbers and strings only."""
    from newstag_model.baseline import BaselineClassifier
    from newstag_model.context import with_context
    from train import baseline
    from train.config import load_config
    from train.data import load_splits

    cfg = load_config(tiny_config, VARIANTS[variant])
    train = load_splits(cfg).train
    context = {"window": 1, "title": True, "quotes": False}
    pipeline = baseline.build(cfg.model, cfg.seed, context).fit(with_context(train, **context), train["label"])
    meta = {"labels": list(cfg.labels), "context": context, **baseline.save(pipeline, tmp_path)}
    assert sorted(os.listdir(tmp_path)) == ["baseline.json", "baseline.npz"]
    frame = pd.read_json(TINY, lines=True).assign(article_id=lambda f: [f"a{i // 4}" for i in range(len(f))])
    expected = pipeline.predict_proba(with_context(frame, **context))
    clf = BaselineClassifier(tmp_path, meta)
    order = [list(pipeline.classes_).index(label) for label in cfg.labels]
    np.testing.assert_allclose(clf.predict_proba(frame), expected[:, order], rtol=1e-12, atol=1e-15)
    assert not np.allclose(expected, expected.mean(axis=0))  # the model does tell sentences apart


def test_a_model_logged_as_a_skops_pipeline_still_loads(trained, tmp_path):
    """Models logged before the plain-file format (one skops pipeline) load and predict as the same model saved as
    plain files."""
    import shutil

    import skops.io as sio
    from sklearn.pipeline import Pipeline

    from newstag_model.schema import read_meta, write_meta

    model_dir = os.path.join(mlflow.artifacts.download_artifacts(trained["model_uri"]), "artifacts", "model")
    clf = load(model_dir)
    older = tmp_path / "older"
    shutil.copytree(model_dir, older)
    for name in ("baseline.json", "baseline.npz"):
        (older / name).unlink()
    columns = ColumnTransformer([(name, v, column) for name, v, column, _ in clf.blocks],
                                transformer_weights={name: w for name, _, _, w in clf.blocks if w is not None} or None)
    columns.transformers_ = columns.transformers
    sio.dump(Pipeline([("features", columns), ("clf", clf.estimator)]), older / "pipeline.skops")
    meta = read_meta(older)
    del meta["spec"]
    write_meta(older, {**meta, "weights": "pipeline.skops"})
    frame = pd.read_json(TINY, lines=True)
    np.testing.assert_array_equal(load(older).predict_proba(frame), clf.predict_proba(frame))


def test_nb_scaling_scores_as_each_labels_regression_on_its_scaled_features(tiny_config):
    """NB-LR folds each label's log-count ratio into its coefficients: on the unscaled features it scores exactly
    as a regression of that label against the rest, fitted on the features scaled by the ratio (Wang & Manning's
    r from add-one smoothed, weighted document counts, computed here from scratch)."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression

    from train.baseline import NBLogisticRegression

    frame = pd.read_json(TINY, lines=True)
    X = TfidfVectorizer(ngram_range=(1, 2)).fit_transform(frame["text"])
    y, w = frame["label"].to_numpy(), np.linspace(0.5, 1.5, len(frame))
    model = NBLogisticRegression(C=4.0, class_weight="balanced", random_state=0).fit(X, y, sample_weight=w)
    scores = model.decision_function(X)
    seen = (X > 0).toarray()
    for k, label in enumerate(model.classes_):
        mine = y == label
        p, q = 1 + (seen * (w * mine)[:, None]).sum(0), 1 + (seen * (w * ~mine)[:, None]).sum(0)
        r = np.log(p / p.sum() / (q / q.sum()))
        scaled = X.multiply(r).tocsr()
        alone = LogisticRegression(C=4.0, class_weight="balanced", random_state=0).fit(scaled, mine, sample_weight=w)
        np.testing.assert_allclose(scores[:, k], alone.decision_function(scaled), rtol=1e-9, atol=1e-12)
    assert (model.predict(X) == y).mean() > 0.9


def test_baseline_scores_are_divided_by_the_temperature_fitted_on_dev(trained, tiny_config):
    """The shipped baseline fits a temperature on its dev scores (NB-LR's separate regressions are not calibrated
    against each other), keeps it where it lowers dev ECE, logs both, and its probabilities are the softmax of its
    scores over the temperature it holds."""
    from newstag_model.context import with_context
    from newstag_model.probability import softmax
    from train.config import load_config
    from train.data import load_splits
    from train.metrics import fit_temperature, temperature_on_dev

    cfg = load_config(tiny_config)
    assert cfg.model.nb_scaling and cfg.model.temperature_scaling
    clf = load(os.path.join(mlflow.artifacts.download_artifacts(trained["model_uri"]), "artifacts", "model"))
    dev = load_splits(cfg).dev
    frame = with_context(dev, **clf.context)
    scores = clf.scores(frame)
    logged = mlflow.get_run(trained["run_id"]).data.metrics
    fitted = fit_temperature(scores, dev["label"].map(cfg.labels.index).to_numpy())
    assert logged["calibration/temperature_fitted"] == pytest.approx(fitted) and abs(fitted - 1) > 0.05
    chosen = temperature_on_dev(scores, dev["label"].tolist(), cfg.labels)["calibration/temperature"]
    assert clf.temperature == pytest.approx(chosen) == pytest.approx(logged["calibration/temperature"])
    clf.temperature = 1.7  # whatever temperature the model holds divides its scores
    np.testing.assert_allclose(clf.sentence_proba(frame), softmax(scores / 1.7), rtol=1e-12)
