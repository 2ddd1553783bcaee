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
from conftest import TINY, free_port, run_cli
from mlflow.tracking import MlflowClient

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
# Where the README's screenshots come from:
#   ECHO_SCREENSHOT_DIR=docs python -m pytest tests/test_mlflow_ui.py
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


# The sweep the screenshots show: the tutorial's encoder-decoder trained to its target (a few
# minutes at most), over what the tutorial varies. CI's sweep is tiny, and shows the same page.
SHOWCASE = ["experiment=encdec_fast", "mlflow.run_name=null", "model.units=8,32", "data.n_out=1,3"]
TINY_SWEEP = [*TINY, "mlflow.log_model=false", "model.units=4,6", "data.n_out=1,2"]
SWEPT = ("model.units", "data.n_out")
# The run name cell's button that expands a sweep's parent run into its jobs.
EXPAND = 'button[data-component-id$="runnamecellrenderer.tsx_46"]'


def tidy(page):
    """Close what covers the table on a first visit: the assistant panel, the shared-view banner."""
    from playwright.sync_api import expect

    for component in (
        "mlflow.assistant.chat_panel.close",
        "mlflow.experiment_page.shared_view.dismiss",
    ):
        button = page.locator(f'button[data-component-id="{component}"]')
        if button.count():
            button.first.click()
            expect(button).to_have_count(0)


def open_runs(page, url):
    """Open a runs table at `url`, and close what covers it."""
    from playwright.sync_api import expect

    page.goto(url)
    expect(page.get_by_test_id("sort-header-Run Name")).to_be_visible(timeout=60_000)
    tidy(page)


def expect_runs_table(page, columns, rows):
    """The model-training runs table shows these column headers and run names."""
    from playwright.sync_api import expect

    for column in columns:
        expect(page.get_by_test_id(f"sort-header-{column}")).to_be_visible()
    for row in rows:
        expect(page.get_by_role("link", name=row, exact=True)).to_be_visible()
    # Not the GenAI view, whose sidebar leads with Overview and Traces.
    expect(page.get_by_text("Overview", exact=True)).to_have_count(0)
    assert "/overview" not in page.url


def test_a_sweep_opens_on_its_jobs_with_scores_as_columns(tracking_uri, mlflow_ui, tmp_path):
    from playwright.sync_api import expect, sync_playwright

    started = time.monotonic()
    result = run_cli(["-m", *(SHOWCASE if SCREENSHOT_DIR else TINY_SWEEP)], tmp_path, tracking_uri)
    assert result.returncode == 0, result.stderr[-3000:]
    print(f"the sweep took {time.monotonic() - started:.0f} s")
    (url,) = [line.split()[1] for line in result.stdout.splitlines() if line.startswith("open ")]
    client = MlflowClient(tracking_uri)
    experiment = client.get_experiment_by_name("echo")
    runs = client.search_runs([experiment.experiment_id])
    (parent,) = [r for r in runs if r.data.tags.get("echo.role") == "sweep"]
    jobs = [r for r in runs if r is not parent]
    best = client.get_run(parent.data.tags["echo.best_run_id"])
    base = f"{mlflow_ui}/#/experiments/{experiment.experiment_id}/runs"
    shots = [tmp_path, *([SCREENSHOT_DIR] if SCREENSHOT_DIR else [])]

    with sync_playwright() as playwright:
        browser = launch(playwright)
        page = browser.new_page(viewport={"width": 1500, "height": 700})
        # The URL the sweep printed: its jobs, best first, swept params and scores as columns.
        open_runs(page, url.replace("http://127.0.0.1:5000", mlflow_ui))
        expect_runs_table(
            page, [*SWEPT, "val_exact", "eval_exact"], [r.info.run_name for r in jobs]
        )
        expect(page.get_by_role("link", name=parent.info.run_name)).to_have_count(0)
        page.get_by_test_id("sort-header-val_exact").hover()  # no tooltip left from a click
        for folder in shots:
            page.screenshot(path=str(folder / "mlflow-sweep.png"))

        # The chart view of the same jobs.
        page.goto(page.url + "&compareRunsMode=CHART")
        expect(page.get_by_text("Model metrics").first).to_be_visible(timeout=60_000)
        tidy(page)
        expect(page.locator(".js-plotly-plot").first).to_be_visible(timeout=60_000)
        page.wait_for_timeout(2000)  # the charts draw in
        for folder in shots:
            page.screenshot(path=str(folder / "mlflow-charts.png"))

        # Every run of the experiment, the sweep as one tree, opened.
        page.goto(f"{base}?workflowType=machine_learning&viewStateShareKey=echo-runs")
        expect_runs_table(
            page, ["val_exact", "eval_exact", "best_val_exact"], [parent.info.run_name]
        )
        tidy(page)
        page.locator(EXPAND).first.click()
        expect_runs_table(page, [*SWEPT, "val_exact"], [r.info.run_name for r in jobs])
        for folder in shots:
            page.screenshot(path=str(folder / "mlflow-runs.png"))

        # The best job's own page, and its held-out echoes as a table.
        page.goto(f"{base}/{best.info.run_id}?workflowType=machine_learning")
        expect(page.get_by_text("eval_exact").first).to_be_visible(timeout=60_000)
        expect(page.get_by_text("train_seconds").first).to_be_visible()
        page.screenshot(
            path=str(tmp_path / "mlflow-run.png")
        )  # it shows local paths: not for docs/
        page.goto(f"{base}/{best.info.run_id}/artifacts/echoes.json?workflowType=machine_learning")
        expect(page.get_by_text("expected", exact=True).first).to_be_visible(timeout=60_000)
        echoes = json.loads(
            Path(client.download_artifacts(best.info.run_id, "echoes.json")).read_text()
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
    size = (int.from_bytes(png[16:20], "big"), int.from_bytes(png[20:24], "big"))
    assert size == (560, 200)  # the clip
