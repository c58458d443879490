"""`newstag grid`: the README's results table, read back from real runs in a real MLflow store."""

import mlflow
import numpy as np

from conftest import last_json, run_cli


def test_grid_rows_are_seed_means_and_single_runs_sorted_by_dev(tiny_config, tmp_path):
    common = ["--set", "tracking.registered_model=null", "--set", "eval.bootstrap=0",
              "--set", "tracking.experiment=grid-test"]
    seeded = last_json(run_cli("train", "-c", tiny_config, "--seeds", "2", "--set", "seed=3", "--set", "context.window=1",
                               *common, check=True).stdout)
    alone = last_json(run_cli("train", "-c", tiny_config, "--set", "context.window=0", "--set", "context.title=false",
                              "--set", "context.quotes=false", "--set", "model.C=0.01", *common, check=True).stdout)
    client = mlflow.MlflowClient()
    devs = np.array([client.get_run(c).data.metrics["dev/macro_f1"] for c in seeded["children"]])
    single = client.get_run(alone["run_id"]).data.metrics["dev/macro_f1"]

    out = tmp_path / "grid.md"
    proc = run_cli("grid", "--experiment", "grid-test", "-o", out, check=True)
    assert last_json(proc.stdout) == {"experiment": "grid-test", "corpora": 1, "rows": 2, "output": str(out)}
    rows = [line.split(" | ") for line in out.read_text().splitlines() if line.startswith("| baseline")]
    assert len(rows) == 2
    by_seeds = {row[7]: row for row in rows}
    assert by_seeds["2"][8] == f"{devs.mean():.3f} ± {devs.std(ddof=1):.3f}"
    assert by_seeds["2"][3:6] == ["1", "yes", "state + spans"] and by_seeds["1"][3:6] == ["0", "no", "spans"]
    assert by_seeds["1"][8] == f"{single:.3f}"
    assert [r[7] for r in rows] == (["2", "1"] if devs.mean() >= single else ["1", "2"])  # best dev first
    assert seeded["run_id"][:8] in by_seeds["2"][-1] and alone["run_id"][:8] in by_seeds["1"][-1]


def test_grid_names_an_unknown_experiment_without_a_traceback():
    proc = run_cli("grid", "--experiment", "no-such-experiment")
    assert proc.returncode == 2 and "no MLflow experiment named 'no-such-experiment'" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_an_ensemble_row_names_its_members():
    from train.grid import Row

    params = {"model.kind": "ensemble", "model.members.0.config": "/cfg/transformer.yaml", "model.members.0.model": "None",
              "model.members.0.name": "None", "model.members.1.config": "None", "model.members.1.model": "runs:/ab/model",
              "model.members.1.name": "tfidf", "model.members.2.config": "None", "model.members.2.model": "models:/m@x",
              "model.members.2.name": "None", "context.title": "True"}
    assert Row("ens", params, {}, 1, 1.0).describe()["encoder"] == "transformer + tfidf + models:/m@x"


def test_a_transformer_row_says_when_it_keeps_only_the_lower_layers():
    """`model.encoder_layers` makes another model of the same checkpoint: its row must not read as the whole one."""
    from train.grid import Row

    params = {"model.kind": "transformer", "model.name_or_path": "sentence-transformers/all-mpnet-base-v2",
              "model.encoder_layers": "None"}
    assert Row("t", params, {}, 1, 1.0).describe()["encoder"] == "all-mpnet-base-v2"
    params["model.encoder_layers"] = "6"
    assert Row("t", params, {}, 1, 1.0).describe()["encoder"] == "all-mpnet-base-v2 (lowest 6 layers)"
    params.update({"model.max_length": "96", "model.lora_rank": "16"})
    assert (Row("t", params, {}, 1, 1.0).describe()["encoder"]
            == "all-mpnet-base-v2 (lowest 6 layers) (96 tokens) (LoRA rank 16)")
    params.update({"model.encoder_layers": "None", "model.max_length": "128", "model.lora_rank": "0"})
    assert Row("t", params, {}, 1, 1.0).describe()["encoder"] == "all-mpnet-base-v2"
