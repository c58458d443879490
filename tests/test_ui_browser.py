"""What a user sees in the MLflow UI, in a real (headless) browser: the runs table, the run comparison and the
registered model with its alias.  Screenshots go to the test's tmp folder; with NEWSTAG_SCREENSHOTS=DIR a passing
run also copies the README's two images there (`make screenshots` refreshes docs/img that way)."""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
import warnings
from pathlib import Path

import pytest
from conftest import BIN

try:
    from playwright import sync_api
except ImportError:
    sync_api = None

CHROMIUM = Path("/usr/bin/chromium")
pytestmark = [pytest.mark.browser, pytest.mark.slow,
              pytest.mark.skipif(not CHROMIUM.exists(), reason=f"{CHROMIUM} is not installed (make system-deps)"),
              pytest.mark.skipif(sync_api is None, reason="playwright is not installed (pip install -e '.[ui]')")]

PUBLISH = os.environ.get("NEWSTAG_SCREENSHOTS")
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


# The value cells on the same row as a cell of the compare page's metrics table, left to right (one per run).
ROW_VALUES_JS = """e => {
  const cell = e.closest('.ReactVirtualized__Grid__innerScrollContainer > *');
  let box = cell.parentElement;
  while (box && box.querySelectorAll('.ReactVirtualized__Grid').length < 2) box = box.parentElement;
  const grids = [...box.querySelectorAll('.ReactVirtualized__Grid')];
  return [...grids[grids.length - 1].querySelectorAll('.ReactVirtualized__Grid__innerScrollContainer > *')]
    .filter(c => c.offsetTop === cell.offsetTop).map(c => c.innerText.trim());
}"""


def _ui_number(value: float) -> str:
    """How the UI prints a metric in [0, 10) (MLflow's Utils.formatMetric: 3 decimals, rounded half up)."""
    assert value == 0 or 0.001 <= abs(value) < 10, value
    return "0" if value == 0 else f"{math.floor(value * 1000 + 0.5) / 1000:g}"


def _plot_metric(page, metric: str) -> None:
    """Show `metric` on the compare page's parallel-coordinates plot instead of the first metric it picked.
    Only the screenshot depends on it, so a UI that does not cooperate is reported as a warning, not a failure."""
    try:
        chosen = page.locator(".du-bois-light-select-selection-item").filter(has_text="/").first
        chosen.wait_for(timeout=10_000)
        select = page.locator(".du-bois-light-select", has=chosen).element_handle(timeout=5_000)
        chosen.locator(".du-bois-light-select-selection-item-remove").click(timeout=5_000)
        select.click(timeout=5_000)
        page.locator(f'.du-bois-light-select-item-option[title="{metric}"]').click(timeout=5_000)
        page.keyboard.press("Escape")
        page.evaluate("() => document.activeElement && document.activeElement.blur()")
        page.locator(".js-plotly-plot").get_by_text(metric, exact=True).first.wait_for(timeout=10_000)
    except sync_api.Error as err:
        warnings.warn(f"could not put {metric} on the parallel-coordinates plot: {err}", stacklevel=2)


def _shot(page, path: Path) -> Path:
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
    page.screenshot(path=str(path), full_page=True)
    page.set_viewport_size(VIEWPORT)
    return path


def test_runs_compare_and_registry_pages(request, mlflow_server, browser, trained, tmp_path):
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
    try:
        shots = _check_pages(page, mlflow_server, exp_id, runs, model, alias, tmp_path)
    except Exception:
        page.screenshot(path=str(tmp_path / "failure.png"), full_page=True)  # what the page showed when it failed
        raise
    for path in shots.values():
        assert path.stat().st_size > 10_000, f"{path} looks blank"
    if PUBLISH:
        shutil.copyfile(shots["compare"], Path(PUBLISH, "mlflow-compare.png"))
        shutil.copyfile(shots["runs"], Path(PUBLISH, "mlflow-runs.png"))


def _check_pages(page, url: str, exp_id: str, runs, model: str, alias: str, folder: Path) -> dict[str, Path]:
    names = [r.info.run_name for r in runs]
    shots = {}

    # 1. The experiment's runs table lists both runs by name (and the macro-F1 columns that _new_page asks for).
    page.goto(f"{url}/#/experiments/{exp_id}/runs")
    for name in names:
        _see(page, name)
    _see(page, "dev/macro_f1")
    shots["runs"] = _shot(page, folder / "runs.png")

    # 2. The comparison of the two runs: both names, and the shared metric with each run's value on one row of the
    #    metrics table (a virtualised grid: names and values are separate grids whose rows share offsets).
    query = urllib.parse.urlencode({"runs": json.dumps([r.info.run_id for r in runs]),
                                    "experiments": json.dumps([exp_id])}, quote_via=urllib.parse.quote)
    page.goto(f"{url}/#/compare-runs?{query}")
    _see(page, f"Comparing {len(runs)} Runs from 1 Experiment")
    for name in names:
        _see(page, name)
    metric = _see(page, "dev/macro_f1")
    shown = metric.evaluate(ROW_VALUES_JS)
    assert shown == [_ui_number(r.data.metrics["dev/macro_f1"]) for r in runs], shown
    _plot_metric(page, "dev/macro_f1")
    shots["compare"] = _shot(page, folder / "compare.png")

    # 3. The registered model page shows the alias on its version ("@ champion").
    page.goto(f"{url}/#/models/{model}")
    _see(page, model)
    _see(page, re.compile(rf"^@\s*{re.escape(alias)}$"))
    shots["model"] = _shot(page, folder / "model.png")
    return shots
