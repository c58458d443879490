"""What a user sees in the MLflow UI, in a real (headless) browser: the runs table, the run comparison and the
registered model with its alias.  Screenshots go to test-artifacts/ui/ and, when the test passes, to docs/img/."""

from __future__ import annotations

import json
import os
import re
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
VIEWPORT = {"width": 1600, "height": 1000}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def mlflow_server(tmp_path_factory):
    """`mlflow server` on the session's sqlite store, one worker, no job runner; stopped on teardown."""
    tmp = tmp_path_factory.mktemp("mlflow-server")
    port = _free_port()
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false", "MLFLOW_DISABLE_TELEMETRY": "true",
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
def browser():
    with sync_api.sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


def _new_page(browser, exp_id: str):
    """A page whose local UI state has the assistant side panel closed and the runs table showing the macro-F1
    columns (MLflow 3.17's own localStorage keys; the UI merges them with its defaults)."""
    context = browser.new_context(viewport=VIEWPORT)
    runs_state = {"selectedColumns": ["attributes.`Source`", "attributes.`Models`", "attributes.`Dataset`",
                                      "metrics.`dev/macro_f1`", "metrics.`test/macro_f1`"]}
    items = {"mlflow.assistant.fab.autoOpenedOnFirstLoad_v1": "true", "mlflow.assistant.panelOpen_v1": "false",
             f"MLflowLocalStorage-1.1-ExperimentPage-{json.dumps([exp_id])}-ReactComponentState": json.dumps(runs_state)}
    context.add_init_script("".join(f"localStorage.setItem({json.dumps(k)}, {json.dumps(v)});" for k, v in items.items()))
    page = context.new_page()
    page.set_default_timeout(TEXT_TIMEOUT_MS)
    return page


def _see(page, text):
    """Wait (bounded) until an element whose whole text is `text` (a string or a compiled pattern) is visible."""
    locator = page.get_by_text(text, exact=True).first if isinstance(text, str) else page.get_by_text(text).first
    locator.wait_for(state="visible", timeout=TEXT_TIMEOUT_MS)
    return locator


def _shot(page, name: str) -> Path:
    """Screenshot of the whole page.  The UI scrolls inside <main>, so the viewport is first made as tall as
    that content (bounded), then set back."""
    close = page.locator('[data-component-id="mlflow.assistant.chat_panel.close"]')
    if close.count() and close.first.is_visible():  # in case the stored panel state was not honoured
        close.first.click()
    height = page.evaluate("() => { const m = document.querySelector('main'); "
                           "return m ? m.scrollHeight - m.clientHeight : 0; }")
    if height > 0:
        page.set_viewport_size({"width": VIEWPORT["width"], "height": min(VIEWPORT["height"] + height + 40, 6000)})
        try:
            page.wait_for_function("() => { const m = document.querySelector('main'); "
                                   "return !m || m.scrollHeight <= m.clientHeight + 2; }", timeout=5_000)
        except sync_api.TimeoutError:
            pass  # still taller than the cap: the screenshot shows the top part
    SHOTS.mkdir(parents=True, exist_ok=True)
    path = SHOTS / name
    page.screenshot(path=str(path), full_page=True)
    page.set_viewport_size(VIEWPORT)
    return path


def test_runs_compare_and_registry_pages(request, mlflow_server, browser, trained):
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
    model, alias = trained["registered_model"], trained["alias"]
    assert (model, alias) == ("newstag-test", "champion")
    page = _new_page(browser, exp_id)
    shots = {}

    # 1. The experiment's runs table lists both runs by name (and the macro-F1 column asked for above).
    page.goto(f"{mlflow_server}/#/experiments/{exp_id}/runs")
    for name in names:
        _see(page, name)
    _see(page, "dev/macro_f1")
    shots["runs"] = _shot(page, "runs.png")

    # 2. The comparison of the two runs: both names and a metric they share, in the metrics table.
    query = urllib.parse.urlencode({"runs": json.dumps([r.info.run_id for r in runs]),
                                    "experiments": json.dumps([exp_id])}, quote_via=urllib.parse.quote)
    page.goto(f"{mlflow_server}/#/compare-runs?{query}")
    _see(page, f"Comparing {len(runs)} Runs from 1 Experiment")
    for name in names:
        _see(page, name)
    metric = _see(page, "dev/macro_f1")
    try:  # the parallel-coordinates plot is decoration: give it a bounded chance to draw before the screenshot
        page.locator(".js-plotly-plot").first.wait_for(state="visible", timeout=10_000)
    except sync_api.TimeoutError:
        pass
    metric.scroll_into_view_if_needed()  # the metrics table is virtualised: bring the row into its window
    shots["compare"] = _shot(page, "compare.png")

    # 3. The registered model page shows the alias on its version ("@ champion").
    page.goto(f"{mlflow_server}/#/models/{model}")
    _see(page, model)
    _see(page, re.compile(rf"^@\s*{re.escape(alias)}$"))
    shots["model"] = _shot(page, "model.png")

    for path in shots.values():
        assert path.stat().st_size > 10_000, f"{path} looks blank"
    DOCS_IMG.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(shots["compare"], DOCS_IMG / "mlflow-compare.png")
    shutil.copyfile(shots["runs"], DOCS_IMG / "mlflow-runs.png")
