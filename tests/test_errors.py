"""Exit 2 and one line for what the user can fix; a traceback and exit 1 for everything else (real CLI calls)."""

import json
import shutil

import mlflow
import pytest
from conftest import TINY, run_cli


def user_error(proc, *words, lines=1):
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr and len(proc.stderr.strip().splitlines()) == lines, proc.stderr
    assert proc.stderr.startswith(f"newstag {proc.args[1]}: error: "), proc.stderr
    assert all(w in proc.stderr for w in words), proc.stderr


@pytest.mark.parametrize("model, words", [
    ("models:/no-such-model@champion", ["no-such-model"]),
    ("models:/newstag-test@no-such-alias", ["no-such-alias"]),
    ("runs:/0123456789abcdef0123456789abcdef/model", ["0123456789abcdef0123456789abcdef"]),
])
def test_unknown_model_uri_or_alias_is_a_user_error(trained, model, words):
    user_error(run_cli("evaluate", "--model", model, "--data", TINY), *words)


def test_missing_or_malformed_data_is_a_user_error(trained, tmp_path):
    user_error(run_cli("evaluate", "--model", "models:/newstag-test@champion", "--data", tmp_path / "nope.jsonl"),
               "nope.jsonl: no such file")
    for line, why in [('{"text": "B.", "label": ', "bad.jsonl:2: not valid JSON"),
                      (json.dumps({"text": 7, "label": "claim"}), "bad.jsonl:2: `text` must be a string, got int")]:
        bad = tmp_path / "bad.jsonl"
        bad.write_text(json.dumps({"text": "Fine.", "label": "claim"}) + "\n" + line + "\n")
        user_error(run_cli("evaluate", "--model", "models:/newstag-test@champion", "--data", bad), why)


def test_bad_config_value_is_a_user_error(tiny_config):
    user_error(run_cli("train", "-c", tiny_config, "--set", "model.C=-1"), "invalid config", "model.C: Input should be",
               lines=2)  # the file, then one line per bad key


def test_a_broken_model_is_an_internal_error_with_its_traceback(trained, tmp_path):
    """A logged model that lost a file is not the user's doing: traceback, exit 1 (it used to read as exit 2)."""
    broken = tmp_path / "model"
    shutil.copytree(mlflow.artifacts.download_artifacts(trained["model_uri"]), broken)
    (broken / "artifacts" / "model" / "baseline.npz").unlink()
    proc = run_cli("evaluate", "--model", broken, "--data", TINY)
    assert proc.returncode == 1 and "Traceback" in proc.stderr and "baseline.npz" in proc.stderr, proc.stderr
