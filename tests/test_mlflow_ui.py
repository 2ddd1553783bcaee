"""The MLflow UI over a store made by a real run, opened in a real headless Chromium."""

import json
import os
import shutil
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from conftest import TINY, compose_config, free_port, run_cli
from mlflow.tracking import MlflowClient

from echo import train as echo_train

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
# Where the README's screenshot comes from: ECHO_SCREENSHOT_DIR=docs python -m pytest -k ui
SCREENSHOT_DIR = (
    os.environ.get("ECHO_SCREENSHOT_DIR") and Path(os.environ["ECHO_SCREENSHOT_DIR"]).resolve()
)

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not Path(CHROMIUM).exists(), reason="needs Debian's chromium (.ci/run installs it)"
    ),
]


@pytest.fixture
def mlflow_ui(tracking_uri, tmp_path):
    """`mlflow ui` on loopback over the test's store; yields its base URL."""
    port = free_port()
    log = open(tmp_path / "mlflow-ui.log", "w")
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "mlflow",
            "ui",
            "--backend-store-uri",
            tracking_uri,
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
        ],
        cwd=tmp_path,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(120):
            try:
                urllib.request.urlopen(url + "/health", timeout=1).close()
                break
            except OSError:
                assert server.poll() is None, (tmp_path / "mlflow-ui.log").read_text()
                time.sleep(0.5)
        yield url
    finally:
        server.terminate()
        server.wait(timeout=30)
        log.close()


def launch(playwright):
    return playwright.chromium.launch(
        executable_path=CHROMIUM,
        args=[
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
        ],
    )


def test_the_url_a_run_ends_with_opens_it(tracking_uri, mlflow_ui, tmp_path):
    from playwright.sync_api import expect, sync_playwright

    args = [*TINY, "mlflow.run_name=url-check", "mlflow.log_model=false"]
    result = run_cli(args, tmp_path, tracking_uri)
    assert result.returncode == 0, result.stderr[-3000:]
    (url,) = [line.split()[1] for line in result.stdout.splitlines() if line.startswith("open ")]
    # The run printed `mlflow ui`'s own address; this test's server listens elsewhere.
    assert url.startswith("http://127.0.0.1:5000/#/experiments/")
    with sync_playwright() as playwright:
        browser = launch(playwright)
        page = browser.new_page(viewport={"width": 1400, "height": 900})
        page.goto(url.replace("http://127.0.0.1:5000", mlflow_ui))
        expect(page.get_by_text("url-check").first).to_be_visible(timeout=60_000)
        expect(page.get_by_text("eval_exact").first).to_be_visible(timeout=60_000)
        # The model-training view: its breadcrumb says Runs; the GenAI view's, Evaluations.
        expect(page.get_by_text("Runs", exact=True).first).to_be_visible()
        expect(page.get_by_text("Evaluations", exact=True)).to_have_count(0)
        browser.close()


def test_runs_metrics_and_echoes_show_in_the_ui(tracking_uri, mlflow_ui, tmp_path):
    from playwright.sync_api import expect, sync_playwright

    echo_train.train(compose_config([*TINY, "mlflow.run_name=ui-check", "mlflow.log_model=false"]))
    client = MlflowClient(tracking_uri)
    experiment = client.get_experiment_by_name("echo")
    (run,) = client.search_runs([experiment.experiment_id])
    shots = [tmp_path]
    if SCREENSHOT_DIR:
        shots.append(SCREENSHOT_DIR)

    with sync_playwright() as playwright:
        browser = launch(playwright)
        page = browser.new_page(viewport={"width": 1400, "height": 900})
        # The model-training view: MLflow 3.17's UI opens the GenAI one unless the URL says.
        view = "?workflowType=machine_learning"
        page.goto(f"{mlflow_ui}/#/experiments/{experiment.experiment_id}/runs{view}")
        expect(page.get_by_text("ui-check").first).to_be_visible(timeout=60_000)
        for folder in shots:
            page.screenshot(path=str(folder / "mlflow-runs.png"))

        page.goto(
            f"{mlflow_ui}/#/experiments/{experiment.experiment_id}/runs/{run.info.run_id}{view}"
        )
        expect(page.get_by_text("eval_exact").first).to_be_visible(timeout=60_000)
        expect(page.get_by_text("train_seconds").first).to_be_visible()
        page.screenshot(
            path=str(tmp_path / "mlflow-run.png")
        )  # it shows local paths: not for docs/

        page.goto(
            f"{mlflow_ui}/#/experiments/{experiment.experiment_id}/runs/{run.info.run_id}/artifacts/echoes.json{view}"
        )
        expect(page.get_by_text("expected", exact=True).first).to_be_visible(timeout=60_000)
        echoes = json.loads(
            Path(client.download_artifacts(run.info.run_id, "echoes.json")).read_text()
        )
        expect(page.get_by_text(echoes["data"][0][0], exact=True).first).to_be_visible()
        # From the table's header down: the line above it shows where the store lives.
        header = page.get_by_text("window", exact=True).first.bounding_box()
        table = {"x": header["x"] - 16, "y": header["y"] - 12, "width": 560, "height": 200}
        for folder in shots:
            page.screenshot(path=str(folder / "mlflow-echoes.png"), clip=table)
        browser.close()
    png = (tmp_path / "mlflow-echoes.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    assert (int.from_bytes(png[16:20], "big"), int.from_bytes(png[20:24], "big")) == (
        560,
        200,
    )  # the clip
