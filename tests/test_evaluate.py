import json

from conftest import TINY, last_json, run_cli


def test_evaluate_json(trained):
    proc = run_cli("evaluate", "--model", "models:/newstag-test@champion", "--data", TINY, "--json", "--bootstrap", "20",
                   check=True)
    result = last_json(proc.stdout)
    assert result["n"] == 32
    assert 0 <= result["macro_f1"] <= 1 and 0 <= result["accuracy"] <= 1
    assert {"f1_claim", "f1_attributed_quote", "f1_unverified", "f1_official_response"} <= set(result)
    assert result["macro_f1_lo"] <= result["macro_f1"] <= result["macro_f1_hi"]


def test_evaluate_unknown_label_names_the_line(tmp_path, trained):
    data = tmp_path / "d.jsonl"
    data.write_text(json.dumps({"text": "A.", "label": "claim"}) + "\n" + json.dumps({"text": "B.", "label": "rumour"}) + "\n")
    proc = run_cli("evaluate", "--model", "models:/newstag-test@champion", "--data", data)
    assert proc.returncode == 2
    assert "d.jsonl:2: unknown label 'rumour'" in proc.stderr and "Traceback" not in proc.stderr


def test_evaluate_can_log_a_run(trained):
    import mlflow

    proc = run_cli("evaluate", "--model", "models:/newstag-test@champion", "--data", TINY, "--json", "--log",
                   "--bootstrap", "0", check=True)
    run = mlflow.get_run(last_json(proc.stdout)["run_id"])
    assert "eval/macro_f1" in run.data.metrics
