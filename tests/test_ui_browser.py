"""What a user sees in the MLflow UI, in a real (headless) browser: the runs table, the run comparison and the
registered model with its alias.  Screenshots go to test-artifacts/ui/ and, when the test passes, to docs/img/."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import pytest
from conftest import BIN, ROOT

pytestmark = [pytest.mark.browser, pytest.mark.slow]

CHROMIUM = Path("/usr/bin/chromium")
if not CHROMIUM.exists():
    pytest.skip(f"{CHROMIUM} is not installed (make browser)", allow_module_level=True)
sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (pip install -e '.[ui]')")

SHOTS = ROOT / "test-artifacts" / "ui"
DOCS_IMG = ROOT / "docs" / "img"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
HEALTH_TIMEOUT_S = 90
TEXT_TIMEOUT_MS = 30_000


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def mlflow_server(tmp_path_factory):
    """`mlflow server` on the session's sqlite store, one worker, no job runner; stopped on teardown."""
    tmp = tmp_path_factory.mktemp("mlflow-server")
    port = _free_port()
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
           "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"}
    log = open(tmp / "server.log", "wb")
    proc = subprocess.Popen(
        [str(BIN / "mlflow"), "server", "--backend-store-uri", os.environ["MLFLOW_TRACKING_URI"],
         "--artifacts-destination", str(tmp / "artifacts"), "--host", "127.0.0.1", "--port", str(port),
         "--workers", "1"],
        cwd=tmp, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + HEALTH_TIMEOUT_S
        while True:
            if proc.poll() is not None:
                pytest.fail(f"mlflow server exited with {proc.returncode}:\n{(tmp / 'server.log').read_text()[-3000:]}")
            try:
                with urllib.request.urlopen(f"{url}/health", timeout=2) as resp:
                    if resp.status == 200:
                        break
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"mlflow server gave no /health in {HEALTH_TIMEOUT_S}s:\n"
                            f"{(tmp / 'server.log').read_text()[-3000:]}")
            time.sleep(0.5)
        yield url
    finally:
        # The server's own process group: gunicorn/uvicorn workers go with it.
        try:
            os.killpg(proc.pid, 15)
        except ProcessLookupError:
            pass
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, 9)
            proc.wait(timeout=10)
        log.close()


@pytest.fixture(scope="module")
def browser_page():
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1600, "height": 1000})
            page.set_default_timeout(TEXT_TIMEOUT_MS)
            yield page
        finally:
            browser.close()


def _see(page, text: str) -> None:
    """Wait (bounded) until some element whose own text is exactly `text` is visible."""
    page.get_by_text(text, exact=True).first.wait_for(state="visible", timeout=TEXT_TIMEOUT_MS)


def _shot(page, name: str) -> Path:
    SHOTS.mkdir(parents=True, exist_ok=True)
    path = SHOTS / name
    page.screenshot(path=str(path), full_page=True)
    return path


def test_runs_compare_and_registry_pages(request, mlflow_server, browser_page, trained):
    pytest.importorskip("torch")
    tiny_transformer = request.getfixturevalue("tiny_transformer")
    import mlflow

    client = mlflow.MlflowClient()
    exp_id = trained["experiment_id"]
    assert tiny_transformer["experiment_id"] == exp_id
    runs = [client.get_run(trained["run_id"]), client.get_run(tiny_transformer["run_id"])]
    names = [r.info.run_name for r in runs]
    assert len(set(names)) == 2, names
    assert all("dev/macro_f1" in r.data.metrics for r in runs)
    page = browser_page

    # 1. The experiment's runs table lists both runs by name.
    page.goto(f"{mlflow_server}/#/experiments/{exp_id}/runs")
    for name in names:
        _see(page, name)
    shots = {"runs": _shot(page, "runs.png")}

    # 2. The comparison of the two runs: both names and a metric they share.
    query = urllib.parse.urlencode({"runs": json.dumps([r.info.run_id for r in runs]),
                                    "experiments": json.dumps([exp_id])}, quote_via=urllib.parse.quote)
    page.goto(f"{mlflow_server}/#/compare-runs?{query}")
    for name in names:
        _see(page, name)
    _see(page, "dev/macro_f1")
    shots["compare"] = _shot(page, "compare.png")

    # 3. The registered model shows its alias.
    page.goto(f"{mlflow_server}/#/models/{trained['registered_model']}")
    _see(page, trained["registered_model"])
    _see(page, trained["alias"])
    shots["model"] = _shot(page, "model.png")

    for path in shots.values():
        assert path.stat().st_size > 10_000, f"{path} looks blank"
    DOCS_IMG.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(shots["compare"], DOCS_IMG / "mlflow-compare.png")
    shutil.copyfile(shots["runs"], DOCS_IMG / "mlflow-runs.png")
