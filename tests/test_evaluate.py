"""The one evaluator, on a case worked out by hand, and `newstag evaluate` on sentences the model memorised."""

import json

import mlflow
import numpy as np
import pytest
from conftest import last_json, run_cli

from train.metrics import ECE_BINS, Evaluator, calibration_bins

LABELS = ("a", "b")
GOLD = ["a", "a", "b", "b"]
# Predicted a, b, b, b with confidences 0.95, 0.62, 0.82, 0.71: each in a bin of its own.
PROBA = np.array([[0.95, 0.05], [0.38, 0.62], [0.18, 0.82], [0.29, 0.71]])


def test_scores_of_a_hand_worked_case():
    m = Evaluator(LABELS).scores(GOLD, PROBA, "dev")
    assert m["dev/accuracy"] == 0.75
    assert m["dev/precision_a"] == 1.0 and m["dev/recall_a"] == 0.5 and m["dev/f1_a"] == pytest.approx(2 / 3)
    assert m["dev/precision_b"] == pytest.approx(2 / 3) and m["dev/recall_b"] == 1.0 and m["dev/f1_b"] == pytest.approx(0.8)
    assert m["dev/macro_f1"] == pytest.approx((2 / 3 + 0.8) / 2)
    # |0.95-1| + |0.62-0| + |0.82-1| + |0.71-1|, each bin a quarter of the sentences
    assert m["dev/ece"] == pytest.approx((0.05 + 0.62 + 0.18 + 0.29) / 4)
    assert m["dev/n"] == 4 and m["dev/support_a"] == 2
    assert not [k for k in m if k.endswith(("_lo", "_hi"))]  # no resamples asked for


def test_primary_metric_is_what_the_trainer_selects_by():
    assert Evaluator(LABELS).primary(GOLD, PROBA) == {"macro_f1": pytest.approx((2 / 3 + 0.8) / 2)}


def test_reliability_diagram_and_ece_share_their_bins():
    bins = calibration_bins(GOLD, PROBA, LABELS)
    assert len(bins) == ECE_BINS and bins["count"].sum() == 4 and (bins["count"] <= 1).all()
    used = bins[bins["count"] > 0]
    assert used["confidence"].tolist() == pytest.approx([0.62, 0.71, 0.82, 0.95])
    assert used["accuracy"].tolist() == [0.0, 1.0, 1.0, 1.0]  # only the 0.62 prediction is wrong


def test_bootstrap_of_a_perfect_model_is_a_point():
    perfect = np.array([[0.9, 0.1], [0.8, 0.2], [0.1, 0.9], [0.3, 0.7]] * 10)  # resamples always hold both labels
    m = Evaluator(LABELS, bootstrap=50, seed=1).scores(GOLD * 10, perfect, "test")
    assert m["test/macro_f1_lo"] == m["test/macro_f1_hi"] == 1.0


@pytest.fixture(scope="module")
def memorised(trained, tiny_config, tmp_path_factory):
    """The train split the tiny baseline memorised (C=100), as an evaluation file."""
    from train.config import load_config
    from train.data import load_splits

    rows = load_splits(load_config(tiny_config)).train.drop(columns=["weight"])
    path = tmp_path_factory.mktemp("eval") / "memorised.jsonl"
    rows.to_json(path, orient="records", lines=True)
    return path, rows


def test_evaluate_scores_memorised_sentences_exactly(memorised, tmp_path):
    path, rows = memorised
    result = last_json(run_cli("evaluate", "--model", "models:/newstag-test@champion", "--data", path, "--json",
                               "--bootstrap", "20", check=True).stdout)
    assert result["n"] == len(rows)
    assert result["accuracy"] == 1.0 and result["macro_f1"] == 1.0
    assert result["macro_f1_lo"] == result["macro_f1_hi"] == 1.0
    # Relabel every `claim` as `unverified`: exactly those sentences become errors.
    flipped = rows.assign(label=rows["label"].replace({"claim": "unverified"}))
    n_claim = int((rows["label"] == "claim").sum())
    bad = tmp_path / "flipped.jsonl"
    flipped.to_json(bad, orient="records", lines=True)
    result = last_json(run_cli("evaluate", "--model", "models:/newstag-test@champion", "--data", bad, "--json",
                               "--bootstrap", "0", check=True).stdout)
    assert n_claim > 0 and result["accuracy"] == pytest.approx(1 - n_claim / len(rows))
    assert result["f1_claim"] == 0.0 and result["f1_attributed_quote"] == 1.0


def test_evaluate_unknown_label_names_the_line(tmp_path, trained):
    data = tmp_path / "d.jsonl"
    data.write_text(json.dumps({"text": "A.", "label": "claim"}) + "\n" + json.dumps({"text": "B.", "label": "rumour"}) + "\n")
    proc = run_cli("evaluate", "--model", "models:/newstag-test@champion", "--data", data)
    assert proc.returncode == 2
    assert "d.jsonl:2: unknown label 'rumour'" in proc.stderr and "Traceback" not in proc.stderr


def test_evaluate_can_log_a_run(memorised):
    proc = run_cli("evaluate", "--model", "models:/newstag-test@champion", "--data", memorised[0], "--json", "--log",
                   "--bootstrap", "0", check=True)
    run = mlflow.get_run(last_json(proc.stdout)["run_id"])
    assert run.data.metrics["eval/macro_f1"] == 1.0 and run.data.params["data"] == str(memorised[0])
    assert "plots/eval_reliability.png" in {a.path for a in mlflow.MlflowClient().list_artifacts(run.info.run_id, "plots")}


def test_a_temperature_is_kept_only_where_it_lowers_dev_ece():
    """Fitted for dev likelihood, a temperature that would raise dev ECE is not used (T = 1); one that lowers it is."""
    from train.metrics import temperature_on_dev

    labels = ("claim", "attributed_quote", "unverified", "official_response")
    # Top-1 calibrated at T = 1 (the top class is right 61.03 % of the time at p 0.6103), but the rest of the mass
    # falls on the lowest-scored class: the likelihood asks for T > 1, which would lower the top confidence.
    z = np.array([2.0, 1.0, 0.0, 0.0])
    top = np.exp(z)[0] / np.exp(z).sum()
    n = 10_000
    gold = ["claim"] * round(top * n) + ["official_response"] * (n - round(top * n))
    flat = temperature_on_dev(np.tile(z, (n, 1)), gold, labels)
    assert flat["calibration/temperature_fitted"] > 1.3
    assert flat["calibration/temperature"] == 1.0
    assert flat["calibration/dev_ece_after"] == flat["calibration/dev_ece_before"] < 1e-4
    # Overconfident scores (labels drawn at twice the scores' temperature): the fitted T ~ 2 is kept.
    rng = np.random.default_rng(0)
    scores = rng.normal(0, 3, (4000, 4))
    p = np.exp(scores / 2) / np.exp(scores / 2).sum(axis=1, keepdims=True)
    sharp = temperature_on_dev(scores, [labels[rng.choice(4, p=q)] for q in p], labels)
    assert sharp["calibration/temperature"] == sharp["calibration/temperature_fitted"] == pytest.approx(2.0, abs=0.15)
    assert sharp["calibration/dev_ece_after"] < 0.5 * sharp["calibration/dev_ece_before"]
