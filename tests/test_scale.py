"""Scaling out, for real: every launcher and sweeper that can run on this machine sweeps tiny
jobs, and the runs are read back from MLflow. A Ray runtime, `mlflow server` and PostgreSQL are
started here on 127.0.0.1 and stopped by the ids of the processes these tests started."""

from __future__ import annotations

import glob
import json
import os
import pwd
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import pytest
from conftest import TINY, free_port, job_states, run_cli, start_sweep_to_kill
from mlflow.tracking import MlflowClient

from echo.sweep import PARENT_ENV, RAY_LOOPBACK_ENV

pytestmark = pytest.mark.slow

# Two jobs that differ in what they vary; no model, to keep each job short.
SWEEP = [*TINY, "model.units=4,6", "mlflow.log_model=false"]


def descendants(pid: int) -> list[int]:
    """The processes `pid` started, and theirs, from /proc."""
    children: dict[int, list[int]] = {}
    for stat in glob.glob("/proc/[0-9]*/stat"):
        try:
            fields = Path(stat).read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # gone since the listing
        children.setdefault(int(fields[1]), []).append(int(stat.split("/")[2]))
    found, queue = [], [pid]
    while queue:
        for child in children.get(queue.pop(), []):
            found.append(child)
            queue.append(child)
    return found


@contextmanager
def background(
    argv: list[str], log: Path, ready, timeout: float = 90, **popen
) -> Iterator[subprocess.Popen]:
    """Run `argv` until the block ends, once `ready()` is true. Then stop it with SIGTERM, and
    SIGKILL whatever it started that outlives it: only processes started here are signalled."""
    with open(log, "w") as out:
        process = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, **popen)
    started = []
    try:
        deadline = time.monotonic() + timeout
        while not ready():
            assert process.poll() is None, (
                f"{argv[:4]} exited {process.returncode}:\n{log.read_text()[-3000:]}"
            )
            assert time.monotonic() < deadline, (
                f"{argv[:4]} not ready in {timeout} s:\n{log.read_text()[-3000:]}"
            )
            time.sleep(0.5)
        yield process
    finally:
        started = descendants(process.pid)
        process.terminate()
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        for pid in started:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


def answers(url: str) -> bool:
    try:
        urllib.request.urlopen(url, timeout=1).close()
        return True
    except OSError:
        return False


@contextmanager
def mlflow_server(backend_uri: str, folder: Path) -> Iterator[str]:
    """A tracking server on loopback that stores runs in `backend_uri` and serves artifacts
    from `folder` by proxy, so that clients upload through it."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    argv = [
        sys.executable,
        "-m",
        "mlflow",
        "server",
        "--backend-store-uri",
        backend_uri,
        "--artifacts-destination",
        str(folder / "artifacts"),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        "1",
    ]
    with background(
        argv, folder / "mlflow-server.log", lambda: answers(url + "/health"), cwd=folder
    ):
        yield url


@pytest.fixture(scope="module")
def ray_head() -> Iterator[dict[str, str]]:
    """A Ray runtime on 127.0.0.1 with token authentication, as `ray start --head` makes it.

    Started without the tests' tracking URI or sweep variables, from a folder of its own, so
    that whatever the jobs get comes from echo. Its dashboard and client ports are free ones,
    so a Ray runtime already on this machine (on 8265, 10001) is neither joined nor disturbed.
    Yields the environment a sweep needs to join it, and the address."""
    folder = Path(tempfile.mkdtemp(prefix="ray-"))  # short: Ray's socket paths must fit 107 bytes
    token = secrets.token_hex(16)
    auth = {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": token}
    env = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_TRACKING_URI", PARENT_ENV)}
    env.update(auth, **{RAY_LOOPBACK_ENV: "0"})
    port = free_port()
    argv = [
        sys.executable,
        "-m",
        "ray.scripts.scripts",
        "start",
        "--head",
        "--block",
        "--node-ip-address",
        "127.0.0.1",
        "--port",
        str(port),
        "--num-cpus",
        "2",
        "--include-dashboard",
        "false",
        "--dashboard-port",
        str(free_port()),
        "--ray-client-server-port",
        str(free_port()),
        "--dashboard-agent-listen-port",
        str(free_port()),
        "--temp-dir",
        str(folder / "tmp"),
        "--disable-usage-stats",
    ]
    log = folder / "head.log"
    try:
        with background(
            argv, log, lambda: "Ray runtime started" in log.read_text(), cwd=folder, env=env
        ):
            yield {"address": f"127.0.0.1:{port}", **auth}
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def sweep_tree(client: MlflowClient, experiment: str = "echo"):
    runs = client.search_runs([client.get_experiment_by_name(experiment).experiment_id])
    (parent,) = [r for r in runs if r.data.tags.get("echo.role") == "sweep"]
    return parent, [r for r in runs if r is not parent]


def assert_sweep_recorded(client: MlflowClient, jobs: int = 2, swept: str = "model.units"):
    """One parent, `jobs` finished children under it with their curves, scores and config,
    named by what they varied, and the parent's results table."""
    parent, children = sweep_tree(client)
    assert parent.info.status == "FINISHED" and len(children) == jobs
    assert {r.data.tags["mlflow.parentRunId"] for r in children} == {parent.info.run_id}
    for run in children:
        assert run.info.status == "FINISHED"
        assert run.info.run_name.startswith(f"{swept}=") or f",{swept}=" in run.info.run_name
        assert {"eval_acc", "eval_exact", "train_seconds"} <= set(run.data.metrics)
        assert [m.step for m in client.get_metric_history(run.info.run_id, "loss")] == [0, 1, 2, 3]
        assert run.data.tags["echo.command"].startswith(f"python -m echo.train {TINY[0]}")
        config = Path(client.download_artifacts(run.info.run_id, "config.yaml")).read_text()
        assert f"units: {run.data.params['model.units']}" in config
    table = json.loads(
        Path(client.download_artifacts(parent.info.run_id, "results.json")).read_text()
    )
    assert len(table["data"]) == jobs and swept in table["columns"]
    assert parent.data.tags["echo.best_run_id"] in {r.info.run_id for r in children}
    return parent, children


@pytest.mark.parametrize(
    "launcher",
    [
        ["hydra/launcher=joblib", "hydra.launcher.n_jobs=2"],
        ["hydra/launcher=submitit_local", "hydra.launcher.timeout_min=10"],
    ],
    ids=["joblib", "submitit_local"],
)
def test_local_launchers_sweep_into_one_store(tmp_path, launcher):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    result = run_cli(["-m", *launcher, *SWEEP], tmp_path, uri)
    assert result.returncode == 0, result.stderr[-3000:]
    _, children = assert_sweep_recorded(MlflowClient(uri))
    assert sorted(r.data.params["model.units"] for r in children) == ["4", "6"]


def test_slurm_preset_extends_submitit_slurm(tmp_path):
    """No SLURM here: what can be checked is that conf/hydra/launcher/slurm.yaml composes onto
    the plugin's config and gives the jobs' TensorFlow the CPUs SLURM gives them."""
    result = run_cli(
        ["hydra/launcher=slurm", "hydra.launcher.cpus_per_task=4", "--cfg", "hydra", "--resolve"],
        tmp_path,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert (
        "_target_: hydra_plugins.hydra_submitit_launcher.submitit_launcher.SlurmLauncher"
        in result.stdout
    )
    assert (
        "- export TF_NUM_INTRAOP_THREADS=4" in result.stdout and "timeout_min: 60" in result.stdout
    )


def test_ray_sweep_lands_in_a_tracking_server_with_its_artifacts(ray_head, tmp_path):
    store = tmp_path / "server"
    store.mkdir()
    with mlflow_server(f"sqlite:///{store / 'mlflow.db'}", store) as url:
        launcher = ["hydra/launcher=ray", f"hydra.launcher.ray.init.address={ray_head['address']}"]
        result = run_cli(["-m", *launcher, *SWEEP], tmp_path, url, env=ray_head)
        assert result.returncode == 0, result.stderr[-3000:]
        assert "Connected to Ray cluster" in result.stderr  # joined the head, did not start one

        client = MlflowClient(url)
        parent, children = assert_sweep_recorded(client)
        # Jobs ran in Ray's workers, each job in its own folder under the sweep's.
        sweep_dir = Path(parent.data.tags["echo.hydra_sweep_dir"])
        assert {Path(r.data.tags["echo.output_dir"]).parent for r in children} == {sweep_dir}
        assert sweep_dir.is_relative_to(tmp_path)
        # Artifacts went up through the server, into its folder; no client wrote there itself.
        for run in children:
            assert run.info.artifact_uri.startswith("mlflow-artifacts:")
            echoes = json.loads(
                Path(client.download_artifacts(run.info.run_id, "echoes.json")).read_text()
            )
            assert (
                echoes["columns"] == ["window", "expected", "echoed", "right"]
                and len(echoes["data"]) == 4
            )
        uploaded = {p.name for p in (store / "artifacts").rglob("*") if p.is_file()}
        assert {"echoes.json", "config.yaml", "learning_curves.png", "results.json"} <= uploaded
    assert not (tmp_path / "mlflow.db").exists()  # nothing fell back to a local store


def test_ray_sweep_on_the_default_store_lands_where_it_was_launched(ray_head, tmp_path):
    # No MLFLOW_TRACKING_URI: echo's default, sqlite:///mlflow.db, relative to where the sweep
    # was launched, while Ray's workers start in the head's folder.
    launcher = ["hydra/launcher=ray", f"hydra.launcher.ray.init.address={ray_head['address']}"]
    result = run_cli(["-m", *launcher, *SWEEP], tmp_path, env=ray_head)
    assert result.returncode == 0, result.stderr[-3000:]
    assert_sweep_recorded(MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}"))
    assert len(list(tmp_path.glob("multirun/*/*/[01]/train.log"))) == 2


def postgres_bin() -> Path | None:
    """Where PostgreSQL's server programs are: on PATH, or Debian's versioned folder."""
    found = shutil.which("initdb")
    if found:
        return Path(found).resolve().parent
    folders = sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=lambda p: int(p.split("/")[-2]))
    return Path(folders[-1]) if folders else None


@pytest.fixture
def postgres() -> Iterator[str]:
    """A throwaway PostgreSQL cluster on 127.0.0.1 and a free port, its socket in its own
    folder; yields the URI of an empty database, with the password the cluster asks of its
    user, as a team's server would. initdb refuses to run as root, so as root the cluster runs
    as the `postgres` user that Debian's package creates."""
    bin_dir = postgres_bin()
    if bin_dir is None or not (bin_dir / "pg_ctl").exists():
        pytest.skip(
            "PostgreSQL's server programs (initdb, pg_ctl) are not installed; .ci/run installs "
            "Debian's postgresql"
        )
    as_user: list[str] = []
    if os.geteuid() == 0:
        try:
            owner = pwd.getpwnam("postgres")
        except KeyError:
            pytest.skip(
                "running as root, and there is no `postgres` user to run PostgreSQL as (initdb "
                "refuses root)"
            )
        as_user = ["runuser", "-u", "postgres", "--"]
    folder = Path(tempfile.mkdtemp(prefix="pg-"))
    if as_user:
        os.chown(folder, owner.pw_uid, owner.pw_gid)
    data, port = folder / "data", free_port()
    password = secrets.token_hex(8)
    (folder / "password").write_text(password + "\n")  # readable by the cluster's user

    def pg(*argv: str) -> None:
        done = subprocess.run(
            [*as_user, *argv],
            capture_output=True,
            text=True,
            cwd=folder,
            env={**os.environ, "PGPASSWORD": password},
        )
        assert done.returncode == 0, done.stdout + done.stderr

    try:
        pg(
            str(bin_dir / "initdb"),
            "-D",
            str(data),
            "-U",
            "echo",
            "-A",
            "scram-sha-256",
            "--pwfile",
            str(folder / "password"),
            "--no-sync",
            "-E",
            "UTF8",
        )
        options = f"-p {port} -k {folder} -c listen_addresses=127.0.0.1 -c fsync=off"
        pg(
            str(bin_dir / "pg_ctl"),
            "-D",
            str(data),
            "-o",
            options,
            "-l",
            str(folder / "postgres.log"),
            "-w",
            "start",
        )
        try:
            pg(
                str(bin_dir / "createdb"),
                "-h",
                "127.0.0.1",
                "-p",
                str(port),
                "-U",
                "echo",
                "mlflow",
            )
            yield f"postgresql://echo:{password}@127.0.0.1:{port}/mlflow"
        finally:
            pg(
                str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop"
            )  # this cluster only
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def test_a_tracking_server_on_postgresql_takes_a_sweep(postgres, tmp_path):
    with mlflow_server(postgres, tmp_path) as url:
        result = run_cli(["-m", *SWEEP], tmp_path, url)
        assert result.returncode == 0, result.stderr[-3000:]
        client = MlflowClient(url)
        _, children = assert_sweep_recorded(client)
        for run in children:
            echoes = json.loads(
                Path(client.download_artifacts(run.info.run_id, "echoes.json")).read_text()
            )
            assert len(echoes["data"]) == 4
    # The runs are in PostgreSQL itself, not only as the server saw them.
    import sqlalchemy

    with sqlalchemy.create_engine(postgres).connect() as db:
        assert db.execute(sqlalchemy.text("select count(*) from runs")).scalar() == 3


def test_a_search_shares_its_study_through_postgresql(postgres, tmp_path, monkeypatch):
    """The team's search of README "Hyperparameter search": the study in a PostgreSQL database
    of its own, the runs on a tracking server backed by another database of the same cluster.
    Optuna's own loader finds the trials there, each naming its run; the parent run names the
    study's storage without its password but with its user, which reaches the study with
    the password in PGPASSWORD, as README tells a team."""
    import optuna
    import sqlalchemy
    from optuna.trial import TrialState

    engine = sqlalchemy.create_engine(postgres, isolation_level="AUTOCOMMIT")
    with engine.connect() as db:
        db.execute(sqlalchemy.text("create database optuna"))
    engine.dispose()
    storage = postgres.rsplit("/", 1)[0] + "/optuna"
    password = urllib.parse.urlsplit(storage).password
    with mlflow_server(postgres, tmp_path) as url:
        search = [
            "-m",
            "hydra/sweeper=echo_optuna",
            "hydra.sweeper.n_trials=3",
            f"hydra.sweeper.storage={storage}",
            "hydra.sweeper.study_name=shared",
            *SWEEP,
        ]
        result = run_cli(search, tmp_path, url)
        assert result.returncode == 0, result.stderr[-3000:]
        parent, runs = sweep_tree(MlflowClient(url))
    assert parent.info.status == "FINISHED" and parent.data.tags["echo.study_name"] == "shared"
    tagged = parent.data.tags["echo.study_storage"]
    assert tagged == storage.replace(f":{password}@", "@")
    assert not [key for key, value in parent.data.tags.items() if password in value]
    monkeypatch.setenv("PGPASSWORD", password)  # restored after the test
    assert optuna.load_study(study_name="shared", storage=tagged).trials
    monkeypatch.delenv("PGPASSWORD")
    study = optuna.load_study(study_name="shared", storage=storage)
    trials = study.get_trials()
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 3
    by_run = {r.info.run_id: r for r in runs}
    assert len(runs) == 3 and {r.info.status for r in runs} == {"FINISHED"}
    assert {t.user_attrs["mlflow_run_id"] for t in trials} == set(by_run)
    for trial in trials:  # trial and run name each other
        run = by_run[trial.user_attrs["mlflow_run_id"]]
        assert run.data.tags["echo.trial_number"] == str(trial.number)
        assert run.data.params["model.units"] == str(trial.params["model.units"])
        assert trial.value == run.data.metrics["val_exact"]
    assert not list(tmp_path.rglob("optuna.journal"))  # no study fell back to a file


@pytest.mark.slow
def test_a_killed_sweep_resumed_by_its_parent_finishes_every_job_once(tmp_path):
    """SIGKILL to a 6-job sweep's process group after 2 jobs finished and the third saved a
    checkpoint. While it runs, resuming it is refused; once its heartbeat is stale, rerunning
    it with its parent skips the 2, resumes the third from its checkpoint and runs the other 3:
    one parent, 6 FINISHED children, each job once."""
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    sweep = [
        "-m",
        *TINY,
        "model.units=4,5,6,7,8,9",
        "trainer.epochs=2000",  # seconds a job: long enough to ask, then to kill, mid-job
        "trainer.log_every=10",
        "trainer.checkpoint_every=0.2",
        "mlflow.log_model=false",
        "mlflow.heartbeat_every=0.3",
        "mlflow.vanished_after=1",
    ]
    process, seen, client = start_sweep_to_kill(sweep, tmp_path, uri)
    deadline = time.monotonic() + 120
    while not job_states(client):  # the sweep's parent and first job exist
        assert time.monotonic() < deadline and process.poll() is None, "".join(seen)[-3000:]
        time.sleep(0.05)
    parent, _ = sweep_tree(client)
    refused = run_cli([*sweep, f"hydra.callbacks.echo.resume={parent.info.run_id}"], tmp_path, uri)
    assert refused.returncode == 2 and "that sweep is still running at " in refused.stderr
    # Killed when 2 jobs have finished and the third has saved a checkpoint.
    while job_states(client) != [("FINISHED", True), ("FINISHED", True), ("RUNNING", True)]:
        assert time.monotonic() < deadline and process.poll() is None, "".join(seen)[-3000:]
        time.sleep(0.02)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait(timeout=60)
    parent, children = sweep_tree(client)
    assert sorted(r.info.status for r in children) == ["FINISHED", "FINISHED", "RUNNING"], seen

    time.sleep(1.5)  # the heartbeats are stale now
    resumed = run_cli([*sweep, f"hydra.callbacks.echo.resume={parent.info.run_id}"], tmp_path, uri)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    log = resumed.stdout + resumed.stderr
    assert log.count("ended FINISHED before") == 2 and log.count("resuming run ") == 1
    runs = client.search_runs([parent.info.experiment_id])
    (again,) = [r for r in runs if r.data.tags.get("echo.role") == "sweep"]
    children = [r for r in runs if r is not again]
    assert again.info.run_id == parent.info.run_id and again.info.status == "FINISHED"
    assert len(children) == 6 and {r.info.status for r in children} == {"FINISHED"}
    assert sorted(r.data.params["model.units"] for r in children) == list("456789")
    table = json.loads(
        Path(client.download_artifacts(parent.info.run_id, "results.json")).read_text()
    )
    assert len(table["data"]) == 6


def test_a_sweep_on_joblib_resumed_by_its_parent_keeps_its_finished_jobs(tmp_path):
    """Resuming reaches joblib's workers too (through each job's env_set): rerun with its parent
    and one value more, the sweep keeps its 2 finished jobs in their runs and runs the third."""
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    joblib = [
        "-m",
        "hydra/launcher=joblib",
        "hydra.launcher.n_jobs=2",
        *TINY,
        "mlflow.log_model=false",
    ]
    first = run_cli([*joblib, "model.units=4,6"], tmp_path, uri)
    assert first.returncode == 0, first.stderr[-3000:]
    client = MlflowClient(uri)
    parent, before = sweep_tree(client)
    resume = f"hydra.callbacks.echo.resume={parent.info.run_id}"
    resumed = run_cli([*joblib, "model.units=4,6,8", resume], tmp_path, uri)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert (resumed.stdout + resumed.stderr).count("ended FINISHED before") == 2
    again, children = sweep_tree(client)
    assert again.info.run_id == parent.info.run_id and again.info.status == "FINISHED"
    assert {r.info.run_id for r in before} < {r.info.run_id for r in children}
    assert sorted(r.data.params["model.units"] for r in children) == ["4", "6", "8"]
