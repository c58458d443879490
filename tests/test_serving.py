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


def test_model_serves_predictions(trained, tmp_path):
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
        body = {"dataframe_split": {"columns": ["text"], "data": [["The ministry denied the report."],
                                                                  ["Police said two people died."]]}}
        req = urllib.request.Request(f"http://{HOST}:{port}/invocations", data=json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=30) as resp:
            predictions = json.load(resp)["predictions"]
        assert len(predictions) == 2
        labels = {"claim", "attributed_quote", "unverified", "official_response"}
        for p in predictions:
            assert p["label"] in labels and 0.0 <= p["score"] <= 1.0
            assert {k[len("prob_"):] for k in p if k.startswith("prob_")} == labels
            assert p["score"] == pytest.approx(max(p[f"prob_{l}"] for l in labels))
            assert sum(p[f"prob_{l}"] for l in labels) == pytest.approx(1.0)
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
