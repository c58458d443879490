import pytest
from conftest import ROOT, run_cli

from newstag_model.load import LOADERS
from newstag_model.runtime import AUTO, RUNTIMES
from train.config import Config, ConfigError, flatten, load_config
from train.kinds import COMMON_REQUIREMENTS, KINDS, runtimes

ALL_CONFIGS = sorted((ROOT / "configs").glob("*.yaml")) + sorted((ROOT / "experiments").glob("*.yaml"))


@pytest.mark.parametrize("path", [p for p in ALL_CONFIGS if p.name != "base.yaml"], ids=lambda p: p.name)
def test_every_shipped_config_validates(path):
    cfg = load_config(path)
    assert isinstance(cfg, Config)
    assert isinstance(cfg.model, KINDS[cfg.model.kind].params)
    KINDS[cfg.model.kind].check_config(cfg)  # an ensemble's member configs resolve and validate too


def test_experiment_files_hold_only_differences():
    for path in sorted((ROOT / "experiments").glob("*.yaml")):
        text = path.read_text()
        assert "extends:" in text, f"{path.name} must extend a config in configs/"
        assert len([l for l in text.splitlines() if l.strip() and not l.lstrip().startswith("#")]) <= 12


def test_model_kinds_are_declared_once():
    """The pyfunc file keeps its own loader table (it may not import the registry): it must match the registry."""
    assert {name: kind.loader for name, kind in KINDS.items()} == LOADERS
    for name, kind in KINDS.items():
        assert kind.params.model_fields["kind"].annotation.__args__ == (name,)
        assert not set(kind.requirements) & set(COMMON_REQUIREMENTS)
    assert runtimes() == (AUTO, *RUNTIMES) == KINDS["transformer"].runtimes


def test_tag_runtime_choices_come_from_the_registry(tmp_path):
    proc = run_cli("tag", tmp_path / "in.jsonl", "-o", tmp_path / "o.jsonl", "--runtime", "gpu")
    assert proc.returncode == 2
    assert "'gpu' is not a runtime; choose from auto, torch, torch-bf16, torch-int8, onnx, onnx-int8" in proc.stderr


def write(tmp_path, text, name="c.yaml"):
    p = tmp_path / name
    p.write_text(text)
    return p


def test_unknown_key_is_named(tmp_path):
    p = write(tmp_path, f"extends: {ROOT/'configs/baseline.yaml'}\nmodel: {{kind: baseline, C_value: 2}}\n")
    with pytest.raises(ConfigError) as err:
        load_config(p)
    assert "model.C_value: unknown key" in str(err.value)
    assert str(p) in str(err.value)


def test_wrong_type_is_named(tmp_path):
    p = write(tmp_path, f"extends: {ROOT/'configs/baseline.yaml'}\nseed: twelve\n")
    with pytest.raises(ConfigError, match=r"seed: Input should be a valid integer"):
        load_config(p)


def test_unknown_model_kind(tmp_path):
    p = write(tmp_path, f"extends: {ROOT/'configs/base.yaml'}\nmodel: {{kind: svm}}\n")
    with pytest.raises(ConfigError, match="unknown model kind 'svm'"):
        load_config(p)


def test_override_applies_and_typos_are_refused():
    cfg = load_config(ROOT / "configs/baseline.yaml", ["model.C=0.5", "seed=7"])
    assert cfg.model.C == 0.5 and cfg.seed == 7
    with pytest.raises(ConfigError, match="model.CC: unknown key"):
        load_config(ROOT / "configs/baseline.yaml", ["model.CC=1"])
    with pytest.raises(ConfigError, match="expected key.path=value"):
        load_config(ROOT / "configs/baseline.yaml", ["model.C"])


def test_extends_cycle_is_reported(tmp_path):
    write(tmp_path, "extends: b.yaml\n", "a.yaml")
    write(tmp_path, "extends: a.yaml\n", "b.yaml")
    with pytest.raises(ConfigError, match="cycle"):
        load_config(tmp_path / "a.yaml")


def test_flattened_params_are_stable_names():
    params = flatten(load_config(ROOT / "configs/baseline.yaml"))
    assert params["model.kind"] == "baseline"
    assert params["data.path"] == "data/corpus/sentences.jsonl"
    assert params["model.word_ngrams"] == "1,3"
    members = flatten(load_config(ROOT / "configs/ensemble.yaml"))
    assert members["model.members.0.config"] == str(ROOT / "configs" / "transformer.yaml")  # relative to its file
    assert members["model.members.1.config"] == str(ROOT / "configs" / "baseline.yaml")


def test_cli_reports_bad_config_without_traceback(tmp_path):
    p = write(tmp_path, f"extends: {ROOT/'configs/baseline.yaml'}\nmodel: {{kind: baseline, C: -1}}\n")
    proc = run_cli("train", "-c", p)
    assert proc.returncode == 2
    assert "model.C: Input should be greater than 0" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_cli_missing_config_file(tmp_path):
    proc = run_cli("train", "-c", tmp_path / "nope.yaml")
    assert proc.returncode == 2 and "no such config file" in proc.stderr and "Traceback" not in proc.stderr


def test_seeds_train_children_under_a_parent_that_logs_mean_and_std(tiny_config):
    import mlflow
    import numpy as np
    from conftest import last_json, run_cli

    out = last_json(run_cli("train", "-c", tiny_config, "--seeds", "3", "--set", "tracking.registered_model=null",
                            "--set", "eval.bootstrap=0", check=True).stdout)
    client = mlflow.MlflowClient()
    parent = client.get_run(out["run_id"])
    children = [client.get_run(c) for c in out["children"]]
    assert len(children) == 3 and all(c.data.tags["mlflow.parentRunId"] == parent.info.run_id for c in children)
    assert sorted(c.data.params["seed"] for c in children) == ["13", "14", "15"]
    values = np.array([c.data.metrics["dev/macro_f1"] for c in children])
    assert parent.data.metrics["dev/macro_f1"] == pytest.approx(values.mean())
    assert parent.data.metrics["dev/macro_f1_std"] == pytest.approx(values.std(ddof=1))
    assert out["dev/macro_f1"] == pytest.approx(round(values.mean(), 4))


@pytest.mark.parametrize("overrides, message", [
    (["context.chunk_tokens=256"], "context.chunk_tokens: only transformer models read articles in chunks"),
    (["context.chunk_tokens=32"], "context: .*chunk_tokens: 32 leaves no room for sentences"),
])
def test_chunk_tokens_are_refused_where_they_cannot_work(overrides, message):
    with pytest.raises(ConfigError, match=message):
        load_config(ROOT / "configs/baseline.yaml", overrides)
    if "=256" not in overrides[0]:
        return
    cfg = load_config(ROOT / "configs/transformer.yaml", overrides)
    assert cfg.context.for_model()["chunk_tokens"] == 256
    assert "chunk_tokens" not in load_config(ROOT / "configs/transformer.yaml").context.for_model()
    with pytest.raises(ConfigError, match="neighbour_words cuts the neighbours of a one-sentence input"):
        load_config(ROOT / "configs/transformer.yaml", [*overrides, "context.neighbour_words=10"])
