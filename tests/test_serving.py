"""The registered model answers over HTTP through `mlflow models serve`, offline, as a deployment would run it."""

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

HOST = "127.0.0.1"
BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def wait_ready(url: str, proc: subprocess.Popen, log: Path, timeout: float = 90.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"server exited {proc.returncode}:\n{log.read_text()[-4000:]}")
        try:
            with urllib.request.urlopen(url, timeout=2) as resp:
                if resp.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.5)
    raise AssertionError(f"{url} not ready after {timeout:.0f}s:\n{log.read_text()[-4000:]}")


def test_model_serves_the_labels_it_learned(trained, tiny_config, tmp_path):
    """Sentences the model memorised, one per label, must come back with their own labels, in request order."""
    from train.config import load_config
    from train.data import load_splits

    train = load_splits(load_config(tiny_config)).train
    unmistakable = train.groupby("label", sort=False).head(1)
    assert set(unmistakable["label"]) == {"claim", "attributed_quote", "unverified", "official_response"}
    port = free_port()
    # The venv's bin must be on PATH: the scoring server is started as `uvicorn`.
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"}
    log = tmp_path / "server.log"
    with open(log, "w") as fh:  # a file, not a pipe: a chatty server can never block on a full pipe
        proc = subprocess.Popen([str(BIN / "mlflow"), "models", "serve", "-m", "models:/newstag-test@champion",
                                 "--env-manager", "local", "-h", HOST, "-p", str(port)],
                                env=env, stdout=fh, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        wait_ready(f"http://{HOST}:{port}/ping", proc, log)
        body = {"dataframe_split": {"columns": ["text"], "data": [[t] for t in unmistakable["text"]]}}
        req = urllib.request.Request(f"http://{HOST}:{port}/invocations", data=json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=30) as resp:
            predictions = json.load(resp)["predictions"]
        assert [p["label"] for p in predictions] == unmistakable["label"].tolist()
        for p in predictions:
            assert p["score"] == pytest.approx(p[f"prob_{p['label']}"]) and p["score"] > 0.5
            assert sum(v for k, v in p.items() if k.startswith("prob_")) == pytest.approx(1.0)
    finally:
        stop(proc)


def stop(proc: subprocess.Popen) -> None:
    """`mlflow models serve` runs uvicorn as a child: end the whole group the server leads, then reap it."""
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=15)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        pass
    try:
        os.killpg(proc.pid, signal.SIGKILL)  # whatever of the group outlived SIGTERM
    except ProcessLookupError:
        pass
    proc.wait(timeout=15)
