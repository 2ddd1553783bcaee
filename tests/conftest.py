"""Shared test helpers: the real conf/ composed by Hydra, shrunk to tiny sizes."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir

from echo.config import CONF_DIR, EchoConfig, register_schema, to_echo_config

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


@pytest.fixture
def tracking_uri(tmp_path, monkeypatch) -> str:
    """A fresh sqlite MLflow store in a temp folder, used by in-process runs too."""
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.chdir(tmp_path)
    return uri
