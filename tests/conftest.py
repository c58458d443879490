"""Shared fixtures: a real sqlite MLflow store in a temp dir, offline Hugging Face, and a tiny trained model.

Expensive things (a trained and registered model) are built once per session.  Under `make test`
(``NEWSTAG_REQUIRE_ALL=1``, what CI runs) a skipped test fails, so CI cannot go green without Java, Chromium or an
extra; and a session that leaves a file in the checkout fails: tests write only under tmp.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from tiny_transformer import build_tiny_bert

ROOT = Path(__file__).resolve().parents[1]
TINY = ROOT / "tests" / "data" / "tiny.jsonl"
BIN = Path(sys.executable).parent
TEXTS = pd.read_json(TINY, lines=True)["text"].tolist()
REQUIRE_ALL = os.environ.get("NEWSTAG_REQUIRE_ALL") == "1"
CHECKOUT, WRITTEN = pytest.StashKey[dict](), pytest.StashKey[list]()


def _required(report) -> None:
    if REQUIRE_ALL and report.skipped and not hasattr(report, "wasxfail"):
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else report.longrepr
        report.outcome = "failed"
        report.longrepr = f"skipped ({reason}), but `make test` runs every test (NEWSTAG_REQUIRE_ALL=1)"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    _required((yield).get_result())


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(collector):
    _required((yield).get_result())


def _checkout() -> dict[str, tuple[int, int]]:
    """(mtime, size) of the checkout's files; hidden ones (.git, .venv, editor swap files) and caches left out."""
    files = {}
    for folder, subfolders, names in os.walk(ROOT):
        subfolders[:] = [d for d in subfolders if not d.startswith(".") and d != "__pycache__" and not d.endswith(".egg-info")]
        for name in names:
            if not name.startswith("."):
                path = os.path.join(folder, name)
                stat = os.lstat(path)
                files[os.path.relpath(path, ROOT)] = (stat.st_mtime_ns, stat.st_size)
    return files


def pytest_sessionstart(session):
    if REQUIRE_ALL:
        session.config.stash[CHECKOUT] = _checkout()


def pytest_sessionfinish(session):
    """Fail a `make test` session that added files to the checkout or changed tracked ones (a log file the shell
    opened before the session is neither)."""
    before = session.config.stash.get(CHECKOUT, None)
    if before is None:
        return
    after = _checkout()
    listed = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True)
    tracked = set(listed.stdout.splitlines()) if listed.returncode == 0 else set()
    written = sorted(path for path in after.keys() | before.keys()
                     if path not in before or (path in tracked and before[path] != after.get(path)))
    session.config.stash[WRITTEN] = written
    if written:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter, config):
    if written := config.stash.get(WRITTEN, None):
        terminalreporter.section("tests wrote into the checkout", red=True)
        terminalreporter.line(f"only tmp is theirs to write; failing the session for: {', '.join(written[:20])}", red=True)


@pytest.fixture(scope="session", autouse=True)
def isolated_env(tmp_path_factory):
    """Every test talks to its own MLflow store, keeps artifacts in tmp, and never touches the network."""
    home = tmp_path_factory.mktemp("env")
    with pytest.MonkeyPatch.context() as mp:
        for key, value in {
            "MLFLOW_TRACKING_URI": f"sqlite:///{home / 'mlflow.db'}",
            "HF_HOME": str(home / "hf"),
            "HF_HUB_OFFLINE": "1",
            "TRANSFORMERS_OFFLINE": "1",
            "HF_DATASETS_OFFLINE": "1",
            "MLFLOW_LOGGING_LEVEL": "WARNING",
            "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
            "TOKENIZERS_PARALLELISM": "false",
        }.items():
            mp.setenv(key, value)
        for key in ("MLFLOW_EXPERIMENT_ID", "MLFLOW_EXPERIMENT_NAME", "MLFLOW_RUN_ID"):
            mp.delenv(key, raising=False)  # also undoes what mlflow.set_experiment exports during the session
        mp.chdir(home)  # experiments created here put their ./mlruns artifacts in tmp, not in the repository
        import mlflow

        mlflow.set_tracking_uri(os.environ["MLFLOW_TRACKING_URI"])
        yield home


def run_cli(*args, cwd=None, env=None, check=False, timeout=600) -> subprocess.CompletedProcess:
    """The real console script in a subprocess, as a user runs it."""
    proc = subprocess.run([str(BIN / "newstag"), *map(str, args)], cwd=cwd, capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"newstag {args} exited {proc.returncode}\nstdout:{proc.stdout}\nstderr:{proc.stderr}")
    return proc


def write_rows(path: Path, rows: list[dict]) -> Path:
    """`rows` as a JSON-lines file at `path`."""
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def last_json(stdout: str) -> dict:
    return json.loads(stdout.strip().splitlines()[-1])


@pytest.fixture(scope="session")
def tiny_config(tmp_path_factory) -> Path:
    """The shipped baseline config pointed at the tiny set, C raised and every n-gram kept (the default drops those of
    fewer than three sentences) so the model can overfit it; one stage, as a second one learns from out-of-fold
    scores, which 24 sentences cannot make exact (tests/test_stacking.py covers it)."""
    d = tmp_path_factory.mktemp("cfg")
    cfg = d / "tiny-baseline.yaml"
    cfg.write_text(
        f"extends: {ROOT / 'configs' / 'baseline.yaml'}\n"
        f"data: {{path: {TINY}}}\n"
        "model: {kind: baseline, C: 100.0, min_df: 1, stack_window: 0, tune_offsets: false}\n"
        "eval: {bootstrap: 50}\n"
        "tracking: {registered_model: newstag-test, alias: champion, experiment: tests}\n"
    )
    return cfg


@pytest.fixture(scope="session")
def trained(tiny_config) -> dict:
    from train.run import train

    return train(tiny_config)


def tiny_transformer_config(path: Path, data: Path, bert: Path, model: str, rest: str = "") -> Path:
    """The shipped transformer config on `data` with a tiny BERT; `model` adds keys to the model section.

    Nothing frozen unless `model` says so: the shipped count is for a 12-block encoder, the tiny BERT has two.  No
    second stage either: fitted on a dev set a tiny model separates perfectly, it saturates the probabilities that
    the runtime tests compare (tests/test_stacking.py covers it)."""
    frozen = "" if "freeze_layers" in model else "freeze_layers: 0, "
    frozen += "" if "stack_window" in model else "stack_window: 0, "
    path.write_text(f"extends: {ROOT / 'configs' / 'transformer.yaml'}\ndata: {{path: {data}}}\n"
                    f"model: {{kind: transformer, name_or_path: {bert}, {frozen}{model}}}\n{rest}")
    return path


@pytest.fixture(scope="session")
def tiny_transformer(tmp_path_factory):
    d = tmp_path_factory.mktemp("tinybert")
    bert = build_tiny_bert(d / "bert", TEXTS)
    cfg = tiny_transformer_config(d / "tiny-transformer.yaml", TINY, bert,
                                  "epochs: 3, batch_size: 8, learning_rate: 1.0e-3, runtime: onnx-int8,"
                                  " train_precision: auto",
                                  "eval: {bootstrap: 20}\n"
                                  # article context whatever the shipped default: the ONNX pair path stays tested
                                  "context: {window: 1, title: true}\n"
                                  "tracking: {registered_model: newstag-tiny-transformer, alias: candidate, experiment: tests}\n")
    proc = run_cli("train", "-c", cfg, env={"NEWSTAG_PROGRESS_SECONDS": "0"}, check=True)  # a progress line a step
    return {**last_json(proc.stdout), "stderr": proc.stderr}
