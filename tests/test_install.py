"""echo as its users get it: a wheel installed away from the source tree, its console scripts,
`--version`, the commit a run records, and Keras held to TensorFlow."""

from __future__ import annotations

import importlib.metadata
import json
import os
import shutil
import subprocess
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path

import hydra
import pytest
from conftest import TINY, compose_config, run_cli
from mlflow.tracking import MlflowClient

from echo import provenance
from echo import train as echo_train
from echo.config import CONF_DIR, SOURCE_TREE
from echo.errors import WrongBackend

SCRIPTS = ("echo-train", "echo-report", "echo-predict", "echo-study", "echo-capacity")
# What a wheel is built from. The rest of the checkout (tests, runs, build leftovers) stays out
# of the copy the wheel is built from.
BUILD_INPUTS = ("pyproject.toml", "README.md", "echo", "conf", "hydra_plugins")
LIBRARIES = ("tensorflow", "keras", "mlflow", "hydra-core")


def git(cwd: Path, *args: str) -> str:
    """git's output in `cwd`, as a throwaway identity."""
    identity = ["-c", "user.name=echo tests", "-c", "user.email=tests@echo.invalid"]
    done = subprocess.run(
        ["git", *identity, "-c", "commit.gpgsign=false", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        check=True,
    )
    return done.stdout.strip()


def new_repository(path: Path) -> str:
    """A git repository at `path` with one commit; that commit."""
    path.mkdir(parents=True, exist_ok=True)
    git(path, "init", "-q")
    git(path, "commit", "-q", "--allow-empty", "-m", "a project of its own")
    return git(path, "rev-parse", "HEAD")


def files_under(folder: Path) -> set[Path]:
    """Every file below `folder` but Python's bytecode caches."""
    return {p for p in folder.rglob("*") if p.is_file() and "__pycache__" not in p.parts}


@dataclass
class Installed:
    """The wheel's files installed into `target`, as a user's environment holds them."""

    wheel: Path
    target: Path
    version: str  # the wheel's own

    def run(self, command: list[str], cwd: Path, uri: str) -> subprocess.CompletedProcess:
        """`command` in `cwd`, with `target` the only folder ahead of the test's packages."""
        env = {**os.environ, "PYTHONPATH": str(self.target), "HYDRA_FULL_ERROR": "0"}
        env["MLFLOW_TRACKING_URI"] = uri
        return subprocess.run(
            command, cwd=cwd, env=env, capture_output=True, text=True, timeout=900
        )

    def script(self, name: str) -> str:
        return str(self.target / "bin" / name)


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Installed:
    """A wheel pip built from a copy of the source tree, installed without its dependencies into
    a folder inside another git repository, as a virtual environment inside a project is.
    (Building in the tree itself leaves build/ behind, whose stale files setuptools packs into
    later wheels.)"""
    root = tmp_path_factory.mktemp("wheel")
    source = root / "source"
    source.mkdir()
    for name in BUILD_INPUTS:
        if (SOURCE_TREE / name).is_dir():
            ignore = shutil.ignore_patterns("__pycache__")
            shutil.copytree(SOURCE_TREE / name, source / name, ignore=ignore)
        else:
            shutil.copy(SOURCE_TREE / name, source / name)
    build = [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(root), str(source)]
    subprocess.run(build, check=True, capture_output=True, timeout=600)
    (wheel,) = root.glob("*.whl")
    new_repository(root / "project")
    target = root / "project" / "site-packages"
    install = [sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(target)]
    subprocess.run([*install, str(wheel)], check=True, capture_output=True, timeout=600)
    return Installed(wheel, target, version=wheel.name.split("-")[1])


@pytest.mark.slow
def test_the_wheel_carries_every_config_and_preset_inside_the_package(installed):
    names = set(zipfile.ZipFile(installed.wheel).namelist())
    configs = {f"echo/conf/{p.relative_to(CONF_DIR)}" for p in CONF_DIR.rglob("*.yaml")}
    assert "echo/conf/experiment/tutorial_encdec.yaml" in configs and configs <= names
    assert "echo/conf/__init__.py" in names  # Hydra reads pkg://echo.conf only with it
    dist_info = f"echo_lstm-{installed.version}.dist-info"
    assert {name.split("/")[0] for name in names} == {"echo", "hydra_plugins", dist_info}
    # echo's sweeper, where Hydra's scan of hydra_plugins finds it; a namespace package, so it
    # sits beside the other plugins' instead of hiding them.
    assert "hydra_plugins/echo_optuna_sweeper/echo_optuna_sweeper.py" in names
    assert "hydra_plugins/__init__.py" not in names
    entry_points = zipfile.ZipFile(installed.wheel).read(f"{dist_info}/entry_points.txt")
    scripts = {line.split(" = ")[0] for line in entry_points.decode().splitlines() if " = " in line}
    assert scripts == set(SCRIPTS)  # never one named `echo`, the shell's own command


@pytest.mark.slow
def test_the_installed_wheel_runs_from_its_own_folder_with_its_own_configs(installed, tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    where = installed.run(
        [
            sys.executable,
            "-c",
            "import echo.conf, echo.config as c; print(echo.conf.__file__); print(c.SOURCE_TREE)",
        ],
        tmp_path,
        uri,
    )
    package, source_tree = where.stdout.split()
    # Not the source tree, nor an editable install's finder: the wheel's files.
    assert Path(package).resolve().is_relative_to(installed.target.resolve())
    assert source_tree == "None"

    version = installed.run([installed.script("echo-train"), "--version"], tmp_path, uri)
    assert version.returncode == 0, version.stderr
    lines = version.stdout.splitlines()
    assert lines[0] == f"echo-lstm {installed.version}"  # the new name's metadata, the wheel's
    for library in LIBRARIES:
        assert f"{library} {importlib.metadata.version(library)}" in lines
    hydra_version = installed.run(
        [installed.script("echo-train"), "--hydra-version"], tmp_path, uri
    )
    assert hydra_version.stdout.strip() == f"Hydra {hydra.__version__}"

    searchpath = installed.run(
        [installed.script("echo-train"), "--info", "searchpath"], tmp_path, uri
    )
    assert "| main     | pkg://echo.conf" in searchpath.stdout  # by name: SLURM nodes find it
    for name in SCRIPTS[1:]:
        usage = installed.run([installed.script(name), "--help"], tmp_path, uri)
        assert usage.returncode == 0 and usage.stdout.startswith("`python -m echo."), name
    assert list(tmp_path.iterdir()) == []  # nothing run, no store made


@pytest.mark.slow
def test_the_installed_wheel_trains_and_reports_from_an_empty_folder(installed, tmp_path):
    before = files_under(installed.target)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    runs = [
        [installed.script("echo-train"), *TINY, "trainer.epochs=3"],
        [sys.executable, "-m", "echo.train", "experiment=tutorial_encdec", *TINY],
    ]
    for command in runs:
        done = installed.run(command, tmp_path, uri)
        assert done.returncode == 0, done.stderr[-3000:]
    client = MlflowClient(uri)
    logged = client.search_runs([client.get_experiment_by_name("echo").experiment_id])
    assert sorted(r.data.params["trainer.epochs"] for r in logged) == ["3", "4"]
    assert {r.info.status for r in logged} == {"FINISHED"}
    assert "tutorial_encdec" in {r.info.run_name for r in logged}
    for run in logged:
        tags = run.data.tags
        assert tags["echo.version.echo-lstm"] == installed.version
        # The install sits in another project's repository; its commit is not echo's.
        assert not [tag for tag in tags if tag.startswith("mlflow.source.git.")]

    report = installed.run([installed.script("echo-report")], tmp_path, uri)
    assert report.returncode == 0, report.stderr[-2000:]
    assert all(run.info.run_id in report.stdout for run in logged)

    study = installed.run([installed.script("echo-study"), "seeds=1"], tmp_path, uri)
    assert study.returncode == 2 and study.stderr.strip().splitlines() == [
        "echo: folder: not given; installed, echo-study writes RESULTS.md and its charts only "
        "where it is told: folder=DIR"
    ]
    assert files_under(installed.target) == before  # nothing written into the install


def test_version_answers_from_metadata_and_names_what_is_missing(tmp_path, monkeypatch):
    result = run_cli(["--version"], tmp_path)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith("echo-lstm")  # the distribution's name, not PyPI's other echo
    for library in LIBRARIES:
        assert f"{library} {importlib.metadata.version(library)}" in lines
    hydra_version = run_cli(["--hydra-version"], tmp_path)
    assert hydra_version.stdout.strip() == f"Hydra {hydra.__version__}"

    real = importlib.metadata.version

    def without_optuna(name: str) -> str:
        if name == "optuna":
            raise importlib.metadata.PackageNotFoundError(name)
        return real(name)

    monkeypatch.setattr(importlib.metadata, "version", without_optuna)
    assert (
        "optuna: not installed (the search extra installs it, for hydra/sweeper=echo_optuna)"
        in provenance.version_text().splitlines()
    )


def test_the_commit_is_recorded_only_from_echos_own_checkout(tmp_path):
    assert provenance.source_tags(None) == {}
    new_repository(tmp_path / "outer")
    nested = tmp_path / "outer" / "vendored" / "echo"
    nested.mkdir(parents=True)
    assert provenance.source_tags(nested) == {}  # the outer repository's commit is not echo's

    own = tmp_path / "own"
    commit = new_repository(own)
    git(own, "checkout", "-q", "-b", "trunk")
    git(own, "remote", "add", "origin", "https://someone:secret@git.example.com/echo.git")
    assert provenance.source_tags(own) == {
        "mlflow.source.git.commit": commit,
        "mlflow.source.git.branch": "trunk",
        "mlflow.source.git.repoURL": "https://git.example.com/echo.git",
    }


def test_another_keras_backend_is_refused_in_one_line_before_any_run(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    result = run_cli(TINY, tmp_path, uri, env={"KERAS_BACKEND": "jax"})
    assert result.returncode == 2
    assert result.stderr.strip() == (
        "echo: KERAS_BACKEND=jax: echo trains with TensorFlow only; unset KERAS_BACKEND or set "
        "it to tensorflow"
    )
    assert "Traceback" not in result.stdout + result.stderr
    assert not (tmp_path / "mlflow.db").exists()


def test_train_refuses_another_backend_and_restores_the_variable(tracking_uri, monkeypatch):
    monkeypatch.setenv("KERAS_BACKEND", "torch")
    with pytest.raises(WrongBackend, match="KERAS_BACKEND=torch"):
        echo_train.train(compose_config(TINY))
    assert os.environ["KERAS_BACKEND"] == "torch"
    monkeypatch.delenv("KERAS_BACKEND")
    echo_train.train(compose_config(TINY))
    assert "KERAS_BACKEND" not in os.environ  # set for the run, unset again after it
    client = MlflowClient(tracking_uri)
    (run,) = client.search_runs([client.get_experiment_by_name("echo").experiment_id])
    assert run.info.status == "FINISHED"  # only the run that was allowed to start


@pytest.mark.slow
@pytest.mark.parametrize("how", ["command line", "train()"])
def test_a_keras_json_that_picks_another_backend_still_trains_on_tensorflow(tmp_path, how):
    """jax is not installed: Keras importing with it would fail deep inside its import."""
    keras_home = tmp_path / "keras-home"
    keras_home.mkdir()
    (keras_home / "keras.json").write_text(json.dumps({"backend": "jax"}))
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    env = {"KERAS_HOME": str(keras_home)}
    if how == "command line":
        result = run_cli([*TINY, "mlflow.log_model=false"], tmp_path, uri, env=env)
    else:
        script = (
            "from hydra import compose, initialize_config_dir\n"
            "from echo.config import CONF_DIR, register_schema, to_echo_config\n"
            "from echo.train import train\n"
            "register_schema()\n"
            "with initialize_config_dir(str(CONF_DIR), version_base='1.3'):\n"
            f"    cfg = to_echo_config(compose('config', overrides={TINY!r}))\n"
            "cfg.mlflow.log_model = False\n"
            "train(cfg)\n"
            "import keras\n"
            "print('backend', keras.backend.backend())\n"
        )
        result = run_cli(["-c", script], tmp_path, uri, env=env, module=None)
    assert result.returncode == 0, result.stderr[-3000:]
    client = MlflowClient(uri)
    (run,) = client.search_runs([client.get_experiment_by_name("echo").experiment_id])
    assert run.info.status == "FINISHED"
    if how == "train()":  # and Keras stays on TensorFlow for the rest of the program
        assert "backend tensorflow" in result.stdout
