"""The second stage (``stack_window``: the baseline's from out-of-fold train scores, the transformer's fitted on
dev) and the baseline's dev-fitted label offsets (``tune_offsets``).

The task below cannot be solved from the sentence alone: a continuation ("We are looking at every option.") takes
the label of the sentence before it, a quote after a quote, a response after a response.  The second stage reads
that from the previous sentence's first-stage label.
"""

import json

import mlflow
import numpy as np
import pandas as pd
import pytest
from conftest import ROOT, run_cli, tiny_transformer_config, write_rows
from tiny_transformer import build_tiny_bert

from newstag_model.context import with_context
from newstag_model.load import load
from newstag_model.probability import log_softmax, pool_quote_spans, softmax, stack_features
from newstag_model.schema import predictions_frame, read_meta, write_meta
from train import baseline, metrics, stacking
from train.config import ConfigError, load_config
from train.data import load_splits
from train.run import train

LEADS = {
    "attributed_quote": ["Minister {} said the budget would pass before the summer.",
                         "Mayor {} told reporters the bridge would reopen soon.",
                         "Professor {} said the results surprised her team."],
    "official_response": ["A spokesperson for {} declined to comment on the memo.",
                          "{} said in a statement that it rejects the allegations.",
                          "Lawyers for {} denied any wrongdoing in a written reply."],
}
NAMES = ["Ana Ruiz", "Tom Berg", "Lena Fox", "Omar Haddad", "Kim Sato", "Acme Corp", "the ministry", "Delta Air"]
CONTINUATIONS = ["We are looking at every option.", "Nothing has been decided yet.", "We will say more next week."]
FACTS = ["The river rose by two metres overnight.", "Ticket prices went up by ten percent in May.",
         "The factory employs 400 people."]
HEDGES = ["The memo is said to date from March.", "The deal was reportedly signed in secret.",
          "The fire may have started in the kitchen, according to unconfirmed reports."]


def stack_rows(n_articles: int = 60) -> list[dict]:
    """Articles of a fact, a quote and a response (in either order), each followed by a continuation, and a hedge:
    every article holds both labels, so only the sentence before a continuation tells its label."""
    rows = []
    for i in range(n_articles):
        split = "test" if i >= n_articles - 12 else "dev" if i >= n_articles - 24 else "train"
        blocks = ("attributed_quote", "official_response")[::1 if i % 2 else -1]
        sentences = [(FACTS[i % 3], "claim")]
        for b, label in enumerate(blocks):
            lead = LEADS[label][(i // 2 + b) % 3].format(NAMES[(i + b) % len(NAMES)])
            sentences += [(lead, label), (CONTINUATIONS[(i // 2 + b) % 3], label)]
        sentences.append((HEDGES[i % 3], "unverified"))
        rows += [{"text": t, "label": y, "article_id": f"s{i:02d}", "sentence_index": k, "split": split,
                  "origin": "real"} for k, (t, y) in enumerate(sentences)]
    return rows


@pytest.fixture(scope="module")
def stack_file(tmp_path_factory):
    return write_rows(tmp_path_factory.mktemp("stack") / "stack.jsonl", stack_rows())


def config(path, *overrides):
    return load_config(ROOT / "configs/baseline.yaml", [f"data.path={path}", "model.C=100", "context.window=0",
                                                        "context.title=false", "context.quotes=false", *overrides])


def continuation_accuracy(model_dir, frame) -> float:
    clf = load(model_dir)
    predicted = predictions_frame(clf.labels, clf.predict_proba(frame))["label"].to_numpy()
    mask = frame["sentence_index"].isin([2, 4]).to_numpy()
    return float((predicted[mask] == frame["label"].to_numpy()[mask]).mean())


def test_stack_features_put_each_neighbour_in_its_place_whatever_the_row_order():
    frame = pd.DataFrame({"text": ["a2", "b0", "a0", "loose", "a1", "b1"], "article_id": ["a", "b", "a", None, "a", "b"],
                          "sentence_index": [2, 0, 0, 9, 1, 1]})
    inputs = with_context(frame, quotes=True, quote_spans=True)
    log_proba = np.log(np.array([[0.1, 0.9], [0.2, 0.8], [0.3, 0.7], [0.4, 0.6], [0.5, 0.5], [0.6, 0.4]]))
    x = stack_features(inputs, log_proba, window=1)
    # own (2) | previous (2) + flag | next (2) + flag | first, second, last, alone, quoted, continues | mean (2)
    assert x.shape == (6, 2 + 3 + 3 + 6 + 2)
    np.testing.assert_array_equal(x[:, :2], log_proba)
    prev, next_ = x[:, 2:5], x[:, 5:8]
    np.testing.assert_array_equal(prev[0], [*log_proba[4], 1])  # a2 follows a1
    np.testing.assert_array_equal(prev[4], [*log_proba[2], 1])  # a1 follows a0
    np.testing.assert_array_equal(next_[1], [*log_proba[5], 1])  # b0 precedes b1
    for row in (1, 2, 3):  # first sentences and the loose row: nothing before
        np.testing.assert_array_equal(prev[row], [0, 0, 0])
    for row in (0, 3, 5):  # last sentences: nothing after
        np.testing.assert_array_equal(next_[row], [0, 0, 0])
    flags = x[:, 8:14]
    np.testing.assert_array_equal(flags[:, :4], [[0, 0, 1, 0], [1, 0, 0, 0], [1, 0, 0, 0], [1, 0, 1, 1],
                                                 [0, 1, 0, 0], [0, 1, 1, 0]])
    np.testing.assert_allclose(x[0, 14:], np.mean([[0.1, 0.9], [0.3, 0.7], [0.5, 0.5]], axis=0))
    np.testing.assert_allclose(x[3, 14:], [0.4, 0.6])
    # Two neighbours each side: a0 sees a2 as its second next sentence.
    wide = stack_features(inputs, log_proba, window=2)
    np.testing.assert_array_equal(wide[2, 2 + 3 * 3:2 + 3 * 4], [*log_proba[0], 1])


def test_second_stage_reads_the_label_of_the_sentence_before(stack_file, tmp_path):
    stacked = config(stack_file, "model.stack_window=1")
    splits = load_splits(stacked)
    baseline.fit(stacked, splits, tmp_path / "stacked")
    alone = config(stack_file, "model.stack_window=0")
    baseline.fit(alone, load_splits(alone), tmp_path / "alone")
    assert continuation_accuracy(tmp_path / "stacked", splits.test) == 1.0
    assert continuation_accuracy(tmp_path / "alone", splits.test) <= 0.75  # the words alone carry no cue


@pytest.fixture(scope="module")
def logged_stacked(stack_file, tmp_path_factory):
    cfg = tmp_path_factory.mktemp("stackcfg") / "stack.yaml"
    cfg.write_text(f"extends: {ROOT / 'configs/baseline.yaml'}\ndata: {{path: {stack_file}}}\n"
                   "model: {kind: baseline, C: 100.0, stack_window: 2, tune_offsets: true}\n"
                   "context: {window: 0, title: false, quotes: false}\n"
                   "eval: {bootstrap: 0}\ntracking: {registered_model: null, experiment: tests-stack}\n")
    return train(cfg)


def test_logged_stacked_model_reloads_exactly_and_scores_each_article_alone(logged_stacked):
    assert logged_stacked["test/macro_f1"] == 1.0
    model = mlflow.pyfunc.load_model(logged_stacked["model_uri"])
    test = pd.DataFrame([r for r in stack_rows() if r["split"] == "test"])[["text", "article_id", "sentence_index"]]
    out = model.predict(test)
    local = mlflow.artifacts.download_artifacts(logged_stacked["model_uri"])
    direct = load(f"{local}/artifacts/model").predict_proba(test)
    np.testing.assert_array_equal(out[[c for c in out.columns if c.startswith("prob_")]].to_numpy(), direct)
    first, rest = test.iloc[:6], test.iloc[6:]
    pd.testing.assert_frame_equal(out.iloc[:6], model.predict(first))  # batched with others == alone
    shuffled = model.predict(rest.iloc[::-1].reset_index(drop=True))
    pd.testing.assert_frame_equal(shuffled.iloc[::-1].reset_index(drop=True), out.iloc[6:].reset_index(drop=True))
    logged = mlflow.get_run(logged_stacked["run_id"]).data.metrics
    assert {f"calibration/offset_{label}" for label in ("claim", "unverified")} <= set(logged)


def test_the_offsets_a_model_holds_shift_its_log_probabilities(logged_stacked, tmp_path):
    """Offsets are read from meta.json at load and added to every sentence's log-probabilities."""
    import shutil

    local = tmp_path / "model"
    shutil.copytree(f"{mlflow.artifacts.download_artifacts(logged_stacked['model_uri'])}/artifacts/model", local)
    meta = read_meta(local)
    clf = load(local)
    assert clf.offsets.tolist() == meta["offsets"] and clf.stack_window == 2
    frame = with_context(pd.DataFrame(stack_rows()[:12]), **clf.context)
    scores = clf.scores(frame)
    write_meta(local, {**meta, "offsets": [0.5, -0.5, 0.0, 1.0]})
    shifted = load(local).sentence_proba(frame)
    np.testing.assert_allclose(shifted, softmax(scores / clf.temperature + [0.5, -0.5, 0.0, 1.0]),
                               rtol=1e-12)
    before = clf.sentence_proba(frame)  # the fitted offsets: the odds of label 4 over label 2 move by the difference
    np.testing.assert_allclose(np.log(shifted[:, 3] / shifted[:, 1]) - np.log(before[:, 3] / before[:, 1]),
                               1.5 - (clf.offsets[3] - clf.offsets[1]), rtol=1e-6)


def test_tag_reads_each_continuation_after_the_sentence_before_it(logged_stacked, tmp_path):
    """`newstag tag` on whole articles: segmented, batched across articles, each continuation labelled as its lead."""
    test = [r for r in stack_rows() if r["split"] == "test"]
    articles = {}
    for r in test:
        articles.setdefault(r["article_id"], []).append(r["text"])
    dump = tmp_path / "dump.jsonl"
    dump.write_text("".join(json.dumps({"id": a, "text": " ".join(t)}) + "\n" for a, t in articles.items()))
    out = tmp_path / "tags.jsonl"
    run_cli("tag", dump, "-o", out, "--model", logged_stacked["model_uri"], "--format", "jsonl", "--batch-size", "7",
            check=True)
    tagged = {(r["article_id"], r["text"]): r["label"] for r in map(json.loads, out.read_text().splitlines())}
    assert len(tagged) == len(test)
    assert all(tagged[(r["article_id"], r["text"])] == r["label"] for r in test)


def test_macro_f1_offsets_move_a_boundary_that_misses_a_rare_label():
    labels = ("a", "b", "c")
    gold = ["a"] * 50 + ["b"] * 40 + ["c"] * 10
    proba = np.array([[0.7, 0.2, 0.1]] * 50 + [[0.2, 0.7, 0.1]] * 40 + [[0.45, 0.15, 0.4]] * 10)
    before = metrics.point_scores(gold, proba, labels, "dev")["dev/macro_f1"]
    offsets = metrics.macro_f1_offsets(np.log(proba), gold, labels)
    after = metrics.point_scores(gold, softmax(np.log(proba) + offsets), labels, "dev")["dev/macro_f1"]
    assert before < 0.7 and after == 1.0
    assert offsets[2] - offsets[0] > np.log(0.45 / 0.4)  # c now beats a where it was second
    # Nothing to gain: no offset moves.
    perfect = np.array([[0.7, 0.2, 0.1]] * 50 + [[0.2, 0.7, 0.1]] * 40 + [[0.1, 0.2, 0.7]] * 10)
    np.testing.assert_array_equal(metrics.macro_f1_offsets(np.log(perfect), gold, labels), np.zeros(3))


def test_a_second_stage_is_refused_with_sigmoid_calibration():
    with pytest.raises(ConfigError, match="stack_window"):
        load_config(ROOT / "configs/baseline.yaml", ["model.stack_window=1", "model.calibrate=true",
                                                      "model.nb_scaling=false", "model.temperature_scaling=false"])


def test_dev_cross_fitted_scores_of_an_article_never_read_its_own_labels():
    """Each dev article's reported scores come from a stage fitted on the other folds: relabelling one article
    changes the stage fitted on all of dev, and not that article's cross-fitted scores."""
    rng = np.random.default_rng(0)
    frame = with_context(pd.DataFrame({"text": [f"s{i}" for i in range(200)],
                                       "article_id": [f"a{i // 5}" for i in range(200)],
                                       "sentence_index": [i % 5 for i in range(200)]}))
    labels = ["a", "b", "c"]
    gold = [labels[i] for i in rng.integers(0, 3, 200)]
    log_proba = log_softmax(rng.normal(size=(200, 3)) + 2 * np.eye(3)[[labels.index(g) for g in gold]])
    arrays, held_out = stacking.fit_on_dev(frame, log_proba, gold, labels, window=1, folds=5, seed=13)
    relabelled = [("c" if g == "a" else "a") if i < 5 else g for i, g in enumerate(gold)]  # article a0
    arrays2, held_out2 = stacking.fit_on_dev(frame, log_proba, relabelled, labels, window=1, folds=5, seed=13)
    np.testing.assert_array_equal(held_out2[:5], held_out[:5])
    assert not np.allclose(arrays2["stack.coef"], arrays["stack.coef"])
    fold = stacking.article_folds(frame["article"], 5, 13)
    others = fold != fold[0]
    assert (held_out2[others] != held_out[others]).any()  # the other folds' stages did see a0
    # A dev set of one label: no stage, the first stage's scores.
    assert stacking.fit_on_dev(frame, log_proba, ["a"] * 200, labels, 1, 5, 13) == ({}, log_proba)


@pytest.fixture(scope="module")
def stacked_transformer(stack_file, tmp_path_factory):
    """A tiny BERT that reads each sentence alone (window 0) with a second stage fitted on dev."""
    d = tmp_path_factory.mktemp("tfstack")
    bert = build_tiny_bert(d / "bert", [r["text"] for r in stack_rows()])
    cfg = tiny_transformer_config(d / "tf.yaml", stack_file, bert,
                                  "epochs: 8, batch_size: 8, learning_rate: 2.0e-3, export_onnx: false, "
                                  "runtime: torch, stack_window: 1",
                                  "context: {window: 0, title: false, quotes: false}\neval: {bootstrap: 0}\n"
                                  "tracking: {registered_model: null, experiment: tests-tfstack}\n")
    return train(cfg)


def test_transformer_second_stage_fitted_on_dev_reads_the_sentence_before(stacked_transformer, tmp_path):
    import shutil

    local = tmp_path / "model"
    shutil.copytree(f"{mlflow.artifacts.download_artifacts(stacked_transformer['model_uri'])}/artifacts/model", local)
    test = pd.DataFrame([r for r in stack_rows() if r["split"] == "test"])
    assert continuation_accuracy(local, test) == 1.0
    meta = read_meta(local)
    write_meta(local, {**meta, "stack_window": 0})  # the first stage alone cannot tell them
    assert continuation_accuracy(local, test) <= 0.75
    assert stacked_transformer["test/macro_f1"] == 1.0
    # The run reports dev from cross-fitted stages: recomputed from the first stage's dev scores, it is the same.
    cfg = load_config(mlflow.artifacts.download_artifacts(run_id=stacked_transformer["run_id"],
                                                          artifact_path="config/resolved.yaml"))
    dev, first_stage = load_splits(cfg).dev, load(local)
    frame = with_context(dev, **first_stage.context)
    log_proba = log_softmax(first_stage.logits(dev).astype(np.float64) / first_stage.temperature)
    _, held_out = stacking.fit_on_dev(frame, log_proba, dev["label"].tolist(), list(cfg.labels), 1, 5, cfg.seed)
    expected = metrics.point_scores(dev["label"].tolist(), pool_quote_spans(softmax(held_out),
                                    frame["span"]), cfg.labels, "dev")
    logged = mlflow.get_run(stacked_transformer["run_id"]).data.metrics
    assert logged["dev/macro_f1"] == pytest.approx(expected["dev/macro_f1"], abs=1e-12)
    assert logged["dev/ece"] == pytest.approx(expected["dev/ece"], abs=1e-9)  # in-sample probabilities differ
    assert logged["calibration/stack_dev_macro_f1_first_stage"] < 0.9


def test_logged_transformer_with_a_second_stage_scores_each_article_alone(stacked_transformer):
    model = mlflow.pyfunc.load_model(stacked_transformer["model_uri"])
    test = pd.DataFrame([r for r in stack_rows() if r["split"] == "test"])[["text", "article_id", "sentence_index"]]
    out = model.predict(test)
    pd.testing.assert_frame_equal(out.iloc[:6], model.predict(test.iloc[:6]))
    shuffled = model.predict(test.iloc[6:].iloc[::-1].reset_index(drop=True))
    pd.testing.assert_frame_equal(shuffled.iloc[::-1].reset_index(drop=True), out.iloc[6:].reset_index(drop=True),
                                  rtol=1e-5)
