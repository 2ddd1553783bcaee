"""Shared test helpers: the real conf/ composed by Hydra, shrunk to tiny sizes."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir

from echo.config import CONF_DIR, EchoConfig, register_schema, to_echo_config
from echo.store import sqlite_path

# A problem small enough to train in well under a second (conf/debug/tiny.yaml).
TINY = ["debug=tiny"]


def free_port() -> int:
    """A TCP port free on 127.0.0.1 now, for a server a test starts."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def compose_config(overrides: list[str] = ()) -> EchoConfig:
    """Compose conf/config.yaml with `overrides`, as `python -m echo.train` would."""
    register_schema()
    with initialize_config_dir(str(CONF_DIR), version_base="1.3"):
        return to_echo_config(compose("config", overrides=list(overrides)))


def run_cli(
    args: list[str],
    cwd: Path,
    tracking_uri: str | None = None,
    python_flags: list[str] = (),
    env: dict[str, str] | None = None,
    timeout: int = 900,
    module: str | None = "echo.train",
) -> subprocess.CompletedProcess:
    """Run `python -m MODULE ARGS` (echo.train unless told; with no module, `python ARGS`) in
    `cwd` as a user would."""
    env = {**os.environ, "HYDRA_FULL_ERROR": "0", **(env or {})}
    env.pop("MLFLOW_TRACKING_URI", None)
    if tracking_uri:
        env["MLFLOW_TRACKING_URI"] = tracking_uri
    return subprocess.run(
        [sys.executable, *python_flags, *(["-m", module] if module else []), *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def start_training(args: list[str], cwd: Path, uri: str, **popen) -> subprocess.Popen:
    """`python -m echo.train ARGS` started in `cwd`, recording to `uri`, its output readable
    line by line as it comes (stdout and stderr together)."""
    env = {**os.environ, "MLFLOW_TRACKING_URI": uri, "HYDRA_FULL_ERROR": "0"}
    return subprocess.Popen(
        [sys.executable, "-m", "echo.train", *args],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        **popen,
    )


def start_sweep_to_kill(args: list[str], cwd: Path, uri: str):
    """`python -m echo.train ARGS` in a process group of its own, as a terminal gives it, for
    a test to kill with os.killpg: the process, the lines it prints (filled as they come) and
    a client of its store, opened in turn as echo's commands open a new one."""
    from filelock import FileLock
    from mlflow.tracking import MlflowClient

    process = start_training(args, cwd, uri, start_new_session=True)
    seen: list[str] = []
    threading.Thread(target=lambda: seen.extend(process.stdout), daemon=True).start()
    with FileLock(f"{sqlite_path(uri)}.lock"):  # the sweep may be creating the store
        client = MlflowClient(uri)
        client.search_experiments()
    return process, seen, client


def job_states(client) -> list[tuple[str, bool]]:
    """Each run of experiment `echo` but a sweep's parent: its status and whether it saved a
    checkpoint, sorted."""
    found = client.get_experiment_by_name("echo")
    runs = client.search_runs([found.experiment_id]) if found else []
    return sorted(
        (r.info.status, "echo.checkpoint" in r.data.tags)
        for r in runs
        if r.data.tags.get("echo.role") != "sweep"
    )


@pytest.fixture
def tracking_uri(tmp_path, monkeypatch) -> str:
    """A fresh sqlite MLflow store in a temp folder, used by in-process runs too."""
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.chdir(tmp_path)
    return uri
