"""The first hour of a new user, run for real: every command says what it made and what to do
next, progress says how far and how fast, the start is quiet, errors name what was typed."""

from __future__ import annotations

import json
import logging
import os
import pty
import re
import select
import shlex
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import TINY, run_cli
from hydra.core.override_parser.overrides_parser import OverridesParser
from mlflow.tracking import MlflowClient

from echo import progress, quiet
from echo.cli import hydra_quoted

# What TensorFlow and absl print at start on a machine without a GPU, unless filtered.
NOTICE_WORDS = ("cuda", "cuinit", "absl", "onednn", "gpu will not be used")
URL = re.compile(
    r"^open     http://127\.0\.0\.1:5000/#/experiments/(\w+)/runs/(\w+)"
    r"\?workflowType=machine_learning$"
)
# A sweep's: its jobs in the runs table, as the view echo saved for the sweep shows them.
SWEEP_URL = re.compile(
    r"^open     http://127\.0\.0\.1:5000/#/experiments/(\w+)/runs"
    r"\?workflowType=machine_learning&viewStateShareKey=(\w+)$"
)


def only_run(uri: str, experiment: str = "echo"):
    client = MlflowClient(uri)
    (run,) = client.search_runs([client.get_experiment_by_name(experiment).experiment_id])
    return client, run


def as_argv(command: str) -> list[str]:
    """A command echo printed, as the argv a shell would make of it, run by this Python."""
    argv = shlex.split(command)
    head = {"python": [sys.executable], "mlflow": [sys.executable, "-m", "mlflow"]}[argv[0]]
    return head + argv[1:]


def run_in_terminal(args: list[str], cwd: Path, timeout: float = 600) -> tuple[int, str]:
    """Run `python -m echo.train ARGS` with a pseudo-terminal as its stdin, stdout and stderr,
    as in a user's terminal; return its exit code and everything it wrote there."""
    controller, terminal = pty.openpty()
    env = {**os.environ, "TERM": "xterm", "COLUMNS": "160", "HYDRA_FULL_ERROR": "0"}
    env.pop("MLFLOW_TRACKING_URI", None)
    process = subprocess.Popen(
        [sys.executable, "-m", "echo.train", *args],
        cwd=cwd,
        env=env,
        stdin=terminal,
        stdout=terminal,
        stderr=terminal,
    )
    os.close(terminal)
    output, deadline = b"", time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            if select.select([controller], [], [], 0.2)[0]:
                try:
                    chunk = os.read(controller, 65536)
                except OSError:  # the terminal closed: every process on it ended
                    break
                if not chunk:
                    break
                output += chunk
            elif process.poll() is not None:
                break
        return process.wait(timeout=60), output.decode(errors="replace")
    finally:
        if process.poll() is None:
            process.kill()
        os.close(controller)


def hydra_log(cwd: Path) -> str:
    (log_file,) = cwd.glob("outputs/*/*/train.log")
    return log_file.read_text()


def test_a_run_starts_quiet_shows_progress_and_ends_saying_what_it_made(tmp_path):
    args = [*TINY, "trainer.epochs=12", "trainer.target_exact=1.0"]
    result = run_cli(args, tmp_path)  # echo's default store, ./mlflow.db
    assert result.returncode == 0, result.stderr[-3000:]

    # A quiet start: nothing on stderr, TensorFlow's notices on a machine without a GPU
    # included; so `2>&1 | head -5` is echo's own.
    assert result.stderr == "", result.stderr
    first = (result.stderr + result.stdout).lower().splitlines()[:5]
    assert not [line for line in first if any(word in line for word in NOTICE_WORDS)]

    # Progress: where training stops, then epochs done, the rate and an ETA, plain lines for a
    # pipe, and the same in Hydra's log file.
    lines = result.stdout.splitlines()
    assert lines[0].endswith(" - training: stops at val_exact ≥ 1 or epoch 12")
    progress_line = re.compile(
        r" - epoch \d+/12  loss \d\.\d{4}  acc \d\.\d{4}  .*[\d.,]+ epochs/s  ETA (≤ )?\d+:\d\d"
    )
    shown = [line for line in lines if progress_line.search(line)]
    assert len(shown) >= 1 and "val_exact " in shown[-1], result.stdout
    assert [line for line in hydra_log(tmp_path).splitlines() if progress_line.search(line)]

    # The last lines: the run, its experiment and store, how to open it, what to do next.
    client, run = only_run("sqlite:///" + str(tmp_path / "mlflow.db"))
    run_id = run.info.run_id
    run_line, browse, url, predict = lines[-4:]
    assert run_line == f"run      {run_id}  FINISHED  (experiment echo, store sqlite:///mlflow.db)"
    assert browse == "browse   mlflow ui --backend-store-uri sqlite:///mlflow.db"
    assert URL.match(url).groups() == (run.info.experiment_id, run_id)
    assert predict == f"predict  python -m echo.predict run_id={run_id} 'sequence=[1,2,3,4,5]'"

    # The predict command works as printed.
    echoed = subprocess.run(
        as_argv(predict.split(None, 1)[1]), cwd=tmp_path, capture_output=True, text=True
    )
    assert echoed.returncode == 0, echoed.stderr[-3000:]
    assert [len(json.loads(line)) for line in echoed.stdout.splitlines()] == [2, 2, 2]


def test_on_a_terminal_progress_is_a_bar_and_the_log_file_keeps_the_lines(tmp_path):
    code, screen = run_in_terminal([*TINY, "trainer.epochs=12", "mlflow.log_model=false"], tmp_path)
    assert code == 0, screen[-3000:]
    assert "━" in screen and "epoch 12/12" in screen  # rich's bar, drawn to its end
    assert re.search(r"epochs/s  ETA \d+:\d\d", screen)
    assert " - training: stops at epoch 12" in screen  # said once, above the bar
    assert " - epoch " not in screen  # the bar shows them instead of lines
    assert len(re.findall(r" - epoch \d+/12 ", hydra_log(tmp_path))) == 6  # all 6 in the file
    assert re.search(r"^run      \w+  FINISHED", screen, re.M)  # the last lines, after the bar


@pytest.mark.slow
def test_parallel_jobs_draw_no_bars_and_the_sweep_ends_naming_parent_and_best(tmp_path):
    args = ["-m", "hydra/launcher=joblib", "hydra.launcher.n_jobs=2", *TINY]
    code, screen = run_in_terminal([*args, "model.units=4,5", "mlflow.log_model=false"], tmp_path)
    assert code == 0, screen[-3000:]
    assert "━" not in screen  # two jobs' bars would draw over each other
    assert len(re.findall(r" - epoch 4/4  loss ", screen)) == 2  # each job's lines instead

    client = MlflowClient("sqlite:///" + str(tmp_path / "mlflow.db"))
    runs = client.search_runs([client.get_experiment_by_name("echo").experiment_id])
    (parent,) = [r for r in runs if r.data.tags.get("echo.role") == "sweep"]
    parent_id, best_id = parent.info.run_id, parent.data.tags["echo.best_run_id"]
    best = client.get_run(best_id)
    lines = [line.rstrip("\r") for line in screen.strip().splitlines()]
    sweep, best_line, rerun, browse, url, report = lines[-6:]
    assert sweep == (
        f"sweep    {parent_id}  FINISHED  (experiment echo, store sqlite:///mlflow.db)"
    )
    assert best_line == (
        f"best     {best_id}  val_exact {best.data.metrics['val_exact']:.4f}  {best.info.run_name}"
    )
    assert rerun == f"rerun    {best.data.tags['echo.command']}"
    assert f"model.units={best.data.params['model.units']}" in rerun
    assert SWEEP_URL.match(url).groups() == (parent.info.experiment_id, parent_id)
    assert report == f"report   python -m echo.report sweep={parent_id}"
    reported = subprocess.run(
        as_argv(report.split(None, 1)[1]), cwd=tmp_path, capture_output=True, text=True
    )
    assert reported.returncode == 0, reported.stderr[-3000:]
    assert best_id in reported.stdout and len(reported.stdout.strip().splitlines()) == 3


def test_progress_lines_give_rate_eta_and_the_stop_rule():
    records = []
    handler = logging.Handler()
    handler.emit = records.append
    progress.log.addHandler(handler)
    before = progress.log.level
    progress.log.setLevel(logging.INFO)
    try:
        with progress.Lines() as lines:
            # The first call took 2 s (tracing included), the next 100 epochs 0.5 s.
            for point in [
                progress.Point(0, 100, 10_000, 1.5, 0.25, None, None, 2.0, 0.999),
                progress.Point(100, 200, 10_000, 1.0, 0.5, 0.75, 2100, 2.5, 0.999),
                progress.Point(200, 300, 10_000, 0.5, 1.0, 0.9995, 10500, 3.0, 0.999),
            ]:
                lines.show(point)
    finally:
        progress.log.removeHandler(handler)
        progress.log.setLevel(before)
    assert [r.getMessage() for r in records] == [
        "training: stops at val_exact ≥ 0.999 or epoch 10000",
        "epoch 100/10000  loss 1.5000  acc 0.2500  50 epochs/s  ETA ≤ 3:18  (2.0 s)",
        "epoch 200/10000  loss 1.0000  acc 0.5000  val_exact 0.7500 of 2100 windows"
        "  200 epochs/s  ETA ≤ 0:49  (2.5 s)",
        "epoch 300/10000  loss 0.5000  acc 1.0000  val_exact 0.9995 of 10500 windows"
        "  200 epochs/s  ETA 0:00  (3.0 s)",
    ]
    assert [getattr(r, progress.MARK, False) for r in records] == [False, True, True, True]


# Written by TensorFlow 2.21 at start on this machine, which has no GPU; and a line it is not.
STARTUP_NOTICES = [
    "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR",
    "I0000 00:00:1795990747.833145   25032 cudart_stub.cc:31] Could not find cuda drivers on "
    "your machine, GPU will not be used.",
    "E0000 00:00:1795990749.964949   25032 cuda_platform.cc:52] failed call to cuInit: "
    "INTERNAL: CUDA error: Failed call to cuInit: UNKNOWN ERROR (303)",
    "I0000 00:00:1795990747.832841   25032 port.cc:153] oneDNN custom operations are on. You "
    "may see slightly different numerical results due to floating-point round-off errors.",
]
REAL_ERROR = "E0000 00:00:1795990749.964949   25032 some_op.cc:7] a real error"


def test_tensorflows_start_up_notices_are_filtered_and_anything_else_kept(tmp_path):
    program = f"""
import os, sys
from echo import quiet
with quiet.notices_filtered():
    for line in {[*STARTUP_NOTICES[:2], REAL_ERROR, *STARTUP_NOTICES[2:]]!r}:
        os.write(2, line.encode() + b"\\n")
    print("a warning from Python", file=sys.stderr)
    quiet.start_tensorflow()
print("after", file=sys.stderr)
"""
    result = subprocess.run(
        [sys.executable, "-c", program], cwd=tmp_path, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr.splitlines() == [REAL_ERROR, "a warning from Python", "after"]
    assert quiet.is_notice(
        "To enable the following instructions: AVX2 FMA, in other operations, rebuild "
        "TensorFlow with the appropriate compiler flags."
    )


@pytest.mark.parametrize(
    "value", ["ëcho ✓ run", "a=b", 'say "hi"', "it's", "back\\slash", "ends in \\", "[1,2"]
)
def test_the_quoting_echo_suggests_gives_hydra_the_value_as_typed(value):
    (override,) = OverridesParser.create().parse_overrides(
        [f"mlflow.run_name={hydra_quoted(value)}"]
    )
    assert override.value() == value


def test_a_value_hydra_cannot_read_gets_a_line_saying_how_to_quote_it(tmp_path):
    result = run_cli(["mlflow.run_name=ëcho ✓ run"], tmp_path)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr == (
        "echo: bad config: mlflow.run_name=ëcho ✓ run: Hydra's override grammar cannot read this "
        "value; to give it as text, quote it for Hydra inside the shell's quotes: "
        "'mlflow.run_name=\"ëcho ✓ run\"'\n"
    )
    suggested = shlex.split(result.stderr.rsplit(": ", 1)[1])
    shown = run_cli([*suggested, "--cfg", "job"], tmp_path)
    assert shown.returncode == 0 and "  run_name: ëcho ✓ run\n" in shown.stdout, shown.stderr


@pytest.mark.slow
def test_a_file_store_is_refused_in_one_line_with_the_migration_that_works(tmp_path):
    # Runs an earlier MLflow recorded into ./mlruns (MLflow 3 still writes one when told to).
    old = run_cli(
        [*TINY, "mlflow.log_model=false"],
        tmp_path,
        "file:./mlruns",
        env={"MLFLOW_ALLOW_FILE_STORE": "true"},
    )
    assert old.returncode == 0, old.stderr[-3000:]

    result = run_cli(TINY, tmp_path, "file:./mlruns")
    assert result.returncode == 2
    assert result.stderr == (
        "echo: MLFLOW_TRACKING_URI=file:./mlruns: MLflow no longer records into a folder of "
        "files; unset MLFLOW_TRACKING_URI to record into sqlite:///mlflow.db (echo's default), "
        "and move the runs already in ./mlruns there with: mlflow migrate-filestore --source "
        "./mlruns --target sqlite:///mlflow.db\n"
    )
    assert not (tmp_path / "mlflow.db").exists()

    migrate = result.stderr.rsplit(" with: ", 1)[1].strip()
    moved = subprocess.run(as_argv(migrate), cwd=tmp_path, capture_output=True, text=True)
    assert moved.returncode == 0, moved.stderr[-3000:]
    _, run = only_run("sqlite:///" + str(tmp_path / "mlflow.db"))
    assert run.info.status == "FINISHED" and "eval_exact" in run.data.metrics
