"""Reliability from the user's side: refusals, failures, interrupts, store faults, parallel
writers and reproducibility, each run for real against a real MLflow store."""

import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time

import keras
import mlflow
import numpy as np
import pytest
from conftest import TINY, compose_config, run_cli, start_training
from mlflow.tracking import MlflowClient

from echo import store, tracking
from echo import train as echo_train
from echo.errors import RunFailed, TrackingUnavailable

# rmsprop at this rate overflows the weights within the first updates.
DIVERGING = ["trainer.optimizer=rmsprop", "trainer.learning_rate=1e38"]


def runs_of(uri, experiment="echo"):
    client = MlflowClient(uri)
    found = client.get_experiment_by_name(experiment)
    return client, (client.search_runs([found.experiment_id]) if found else [])


@pytest.mark.parametrize(
    "args, message",
    [
        (["data.n_ot=3"], "data.n_ot=3: Key 'n_ot' not in 'DataConfig'"),
        (
            ["model.units=many"],
            "model.units=many: Value 'many' of type 'str' could not be converted to Integer",
        ),
        (["model=transformer"], "model=transformer: no such option; choose from encdec, seq2seq"),
        (["experiment=nope"], "experiment=nope: no such option; choose from "),
        (
            ["trainer.optimizer=adamm"],
            "trainer.optimizer=adamm: Invalid value 'adamm', expected one of",
        ),
        (["+foo=1"], "foo=1: no such key"),
        (["data.n_out=9"], "data.n_out=9: must be <= data.n_in (5)"),
        (["data.n_in=0"], "data.n_in=0: must be >= 1"),  # not data.n_out, which follows it
        (
            # A refused value that came through an interpolation: the key it came from.
            ["trainer.eval_sequences=${trainer.sample_echoes}", "trainer.sample_echoes=0"],
            "trainer.sample_echoes=0: must be >= 1 (trainer.eval_sequences follows it: "
            "${trainer.sample_echoes})",
        ),
        (
            ["data.length=30"],
            "trainer.batch_size=7: must divide the 26 windows per sequence (data.length=30 - "
            "data.n_in=5 + 1) for a stateful model",
        ),
        (
            ["mlflow.run_name=ëcho ✓ run"],
            "mlflow.run_name=ëcho ✓ run: Hydra's override grammar cannot read this value; to "
            "give it as text, quote it for Hydra inside the shell's quotes: "
            "'mlflow.run_name=\"ëcho ✓ run\"'",
        ),
        (["data.n_in=30"], "data.n_in=30: must be <= data.length (25)"),
        (["data.n_unique=1"], "data.n_unique=1: must be >= 2"),
        (["model.units=0"], "model.units=0: must be >= 1"),
        (["trainer.epochs=0"], "trainer.epochs=0: must be >= 1"),
        (["trainer.learning_rate=0"], "trainer.learning_rate=0.0: must be a finite number > 0"),
        (
            ["trainer.batch_size=5"],
            "trainer.batch_size=5: must divide the 21 windows per sequence (data.length=25 - "
            "data.n_in=5 + 1) for a stateful model",
        ),
        (["-m", "model.units=4,0"], "model.units=0: must be >= 1"),
        (
            ["data.pad_incomplete=maybe"],
            "data.pad_incomplete=maybe: Value 'maybe' is not a valid bool",
        ),
        (
            ["model.representation=binary"],
            "model.representation=binary: Invalid value 'binary', expected one of",
        ),
        (
            ["experiment=masked", "trainer.batch_size=7"],
            "trainer.batch_size=7: must divide the 25 windows per sequence (data.length=25, "
            "with data.pad_incomplete=true)",
        ),
        (["-m", "--cfg", "hydra"], "--multirun and --cfg: give only one of"),
        (
            ["trainer.eval_sequences=100000000"],
            "trainer.eval_sequences=100000000: the run needs about ",
        ),
        (["data.n_unique=1000000000"], "data.n_unique=1000000000: the run needs about "),
        (["model.units=100000000"], "model.units=100000000: the run needs about "),
        (
            ["-m", "hydra/launcher=joblib", "model.units=20,300000"],
            "model.units=300000: 2 runs at once need about ",
        ),
    ],
)
def test_bad_input_is_refused_in_one_line_before_any_run(tmp_path, args, message):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    result = run_cli(args, tmp_path, uri)
    assert result.returncode == 2
    assert result.stderr.startswith(f"echo: {message}") or result.stderr.startswith(
        f"echo: bad config: {message}"
    )
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
    assert not (tmp_path / "mlflow.db").exists()  # no store, let alone a run


def test_full_error_keeps_hydras_trace(tmp_path):
    result = run_cli(["data.n_ot=3"], tmp_path, env={"HYDRA_FULL_ERROR": "1"})
    assert result.returncode != 0 and "Traceback" in result.stderr


def test_unreachable_tracking_server_fails_fast_before_training(tmp_path):
    start = time.monotonic()
    result = run_cli(TINY, tmp_path, "http://127.0.0.1:9")
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1] == (
        "echo: MLFLOW_TRACKING_URI=http://127.0.0.1:9: cannot reach the tracking server ([Errno "
        "111] Connection refused)"
    )
    assert " - epoch " not in result.stdout + result.stderr  # no training started
    assert time.monotonic() - start < 15


def test_credentials_never_reach_messages():
    with pytest.raises(TrackingUnavailable) as caught:
        store.check_reachable("http://alice:s3cret@127.0.0.1:9")
    assert "s3cret" not in str(caught.value) and "alice" not in str(caught.value)


def test_diverging_loss_fails_the_run_with_the_reason(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    result = run_cli([*TINY, *DIVERGING], tmp_path, uri)
    assert result.returncode == 1
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("echo: run ") and last.endswith("failed: loss became nan at epoch 0")
    _, runs = runs_of(uri)
    assert [r.info.status for r in runs] == ["FAILED"]
    assert "loss became nan" in runs[0].data.tags[tracking.FAILURE_TAG]
    # Where the failed run is, to look at it.
    run_id, experiment_id = runs[0].info.run_id, runs[0].info.experiment_id
    assert result.stdout.splitlines()[-3:] == [
        f"run      {run_id}  FAILED  (experiment echo, store {uri})",
        f"browse   mlflow ui --backend-store-uri {uri}",
        f"open     http://127.0.0.1:5000/#/experiments/{experiment_id}/runs/{run_id}"
        "?workflowType=machine_learning",
    ]


def test_a_run_that_fails_after_logging_ends_its_writer_and_its_run(tracking_uri):
    with pytest.raises(RunFailed):
        echo_train.train(compose_config([*TINY, *DIVERGING, "mlflow.log_model=false"]))
    client, (run,) = runs_of(tracking_uri)
    assert run.info.status == "FAILED"
    assert client.get_metric_history(
        run.info.run_id, "loss"
    )  # the curve was written before the failure
    assert not [t for t in threading.enumerate() if t.name.startswith("echo-curves")]


@pytest.mark.slow
def test_a_failing_sweep_job_does_not_stop_the_others(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    result = run_cli(
        [
            "-m",
            *TINY,
            "trainer.optimizer=rmsprop",
            "trainer.learning_rate=1e38,0.001",
            "mlflow.log_model=false",
        ],
        tmp_path,
        uri,
    )
    assert result.returncode == 1
    last = result.stderr.strip().splitlines()[-1]
    assert (
        last.startswith("echo: 1 job(s) of the sweep failed: #0 ")
        and "trainer.learning_rate=1e+38" in last
    )
    assert last.endswith("failed: loss became nan at epoch 0")
    _, runs = runs_of(uri)
    status = {
        r.data.params["trainer.learning_rate"]: r.info.status
        for r in runs
        if "echo.role" not in r.data.tags
    }
    assert status == {"1e+38": "FAILED", "0.001": "FINISHED"}
    (parent,) = [r for r in runs if r.data.tags.get("echo.role") == "sweep"]
    assert parent.info.status == "FAILED"
    # The sweep's last lines: its parent, the best job, the failed one, what to do next.
    (good,) = [r for r in runs if r.data.params.get("trainer.learning_rate") == "0.001"]
    parent_id = parent.info.run_id
    lines = result.stdout.splitlines()
    assert lines[-7] == f"sweep    {parent_id}  FAILED  (experiment echo, store {uri})"
    assert lines[-6].startswith(f"best     {good.info.run_id}  val_exact ")
    assert lines[-6].endswith("  trainer.learning_rate=0.001")
    assert lines[-5] == f"rerun    {good.data.tags['echo.command']}"
    assert lines[-4] == f"failed   {last.split(': ', 2)[2]}"
    assert lines[-1] == f"report   python -m echo.report sweep={parent_id}"


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_a_stopped_run_is_killed_with_a_checkpoint_and_resumes_exactly(tmp_path, sig):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    args = [*TINY, "trainer.epochs=300", "trainer.log_every=3", "mlflow.log_model=false"]
    env = {"MLFLOW_TRACKING_URI": uri}
    process = subprocess.Popen(
        [sys.executable, "-m", "echo.train", *args],
        cwd=tmp_path,
        env={**__import__("os").environ, **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    output = []
    for line in process.stdout:  # stop it once it is well into training
        output.append(line)
        if " - epoch 30/300" in line:
            process.send_signal(sig)
            break
    output.append(process.stdout.read())
    assert process.wait(timeout=120) == 130, "".join(output)
    lines = "".join(output).strip().splitlines()
    run_id = lines[-1].rsplit("trainer.resume=", 1)[1]
    assert lines[-1].startswith(f"echo: run {run_id} stopped by {sig.name} after epoch ")
    # Before it, where the stopped run is and the command that continues it.
    assert lines[-5] == f"run      {run_id}  KILLED  (experiment echo, store {uri})"
    assert lines[-3].startswith("open     http://127.0.0.1:5000/#/experiments/")
    assert lines[-2] == f"resume   python -m echo.train trainer.resume={run_id}"

    client, runs = runs_of(uri)
    assert [r.info.status for r in runs] == ["KILLED"]
    stopped_at = len(client.get_metric_history(run_id, "loss"))
    assert 30 <= stopped_at < 300
    slot = runs[0].data.tags["echo.checkpoint"]  # the newest complete checkpoint's folder
    assert {a.path for a in client.list_artifacts(run_id, slot)} == {
        f"{slot}/model.weights.h5",
        f"{slot}/optimizer.npz",
        f"{slot}/state.json",
    }
    if sig == signal.SIGINT:  # as echo logged checkpoints before periodic ones: still resumes
        client.log_artifacts(run_id, client.download_artifacts(run_id, slot), "checkpoint")
        client.delete_tag(run_id, "echo.checkpoint")

    resumed = run_cli([f"trainer.resume={run_id}"], tmp_path, uri)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    client, runs = runs_of(uri)
    assert [r.info.status for r in runs] == ["FINISHED"]
    history = client.get_metric_history(run_id, "loss")
    assert sorted(m.step for m in history) == list(range(300))  # none missing, none twice

    # Stopping and resuming changes nothing: an uninterrupted run logs the same curve.
    whole = run_cli([*args, "mlflow.experiment=whole"], tmp_path, uri)
    assert whole.returncode == 0, whole.stderr[-2000:]
    client, (uninterrupted,) = runs_of(uri, "whole")
    expected = {
        m.step: m.value for m in client.get_metric_history(uninterrupted.info.run_id, "loss")
    }
    assert {m.step: m.value for m in history} == expected
    assert runs[0].data.metrics["eval_exact"] == uninterrupted.data.metrics["eval_exact"]


def test_same_seed_same_metrics(tracking_uri):
    cfg = compose_config([*TINY, "mlflow.log_model=false"])
    first, second = echo_train.train(cfg), echo_train.train(cfg)
    assert first["eval_acc"] == second["eval_acc"] and first["eval_exact"] == second["eval_exact"]
    client, runs = runs_of(tracking_uri)
    curves = [
        [(m.step, m.value) for m in client.get_metric_history(run.info.run_id, key)]
        for run in runs
        for key in ("loss", "acc")
    ]
    assert curves[:2] == curves[2:] and len(curves[0]) == 4
    assert runs[0].data.tags["echo.data_seed"] == runs[0].data.tags["echo.weight_seed"] == "1"
    echo_train.train(compose_config([*TINY, "mlflow.log_model=false", "trainer.seed=2"]))
    _, runs = runs_of(tracking_uri)
    other = [(m.step, m.value) for m in client.get_metric_history(runs[0].info.run_id, "loss")]
    assert runs[0].data.params["trainer.seed"] == "2" and other != curves[0]  # a seed matters


def test_a_store_that_breaks_mid_run_loses_nothing(tracking_uri, tmp_path, monkeypatch):
    database = tracking_uri.removeprefix("sqlite:///")
    write_curves = tracking.RunLog.log_history
    calls = []

    def break_store_after_first_write(self, history, *file):
        write_curves(self, history, *file)
        self.flush()
        if not calls:  # after the first batch of points, the metric history table vanishes
            with sqlite3.connect(database) as connection:
                connection.execute("DROP TABLE metrics")
        calls.append(history)

    monkeypatch.setattr(tracking.RunLog, "log_history", break_store_after_first_write)
    output_dir = tmp_path / "out"
    cfg = compose_config([*TINY, "trainer.epochs=6"])
    metrics = echo_train.train(cfg, output_dir=output_dir)

    kept = output_dir / "unlogged"
    curves = (kept / "curves.csv").read_text().splitlines()
    assert curves[0] == "epoch,loss,acc" and [line.split(",")[0] for line in curves[1:]] == [
        "0",
        "1",
        "2",
        "3",
        "4",
        "5",
    ]
    assert '"eval_exact": ' + repr(metrics["eval_exact"]) in (kept / "metrics.json").read_text()
    _, runs = runs_of(tracking_uri)
    assert runs[0].info.status == "FINISHED"  # the runs table still works
    assert not [
        t for t in threading.enumerate() if t.name.startswith("echo-curves")
    ]  # the writer ended
    # The model is in the store (its tables survived) or, failing that, kept; either way it
    # loads, in Keras' safe mode.
    if (kept / "model.keras").exists():
        model = keras.saving.load_model(kept / "model.keras", safe_mode=True)
    else:
        model = mlflow.keras.load_model(f"runs:/{runs[0].info.run_id}/model")
    assert model.output_shape == (cfg.trainer.batch_size, 2, 10)


@pytest.mark.slow
def test_parallel_jobs_on_a_fresh_sqlite_store(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    result = run_cli(
        [
            "-m",
            "hydra/launcher=joblib",
            "hydra.launcher.n_jobs=4",
            *TINY,
            "model.units=4,5,6,7,8,9,10,11",
        ],
        tmp_path,
        uri,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    client, runs = runs_of(uri)
    runs = [r for r in runs if r.data.tags.get("echo.role") != "sweep"]
    assert sorted(int(r.data.params["model.units"]) for r in runs) == list(range(4, 12))
    assert len({r.data.tags["mlflow.parentRunId"] for r in runs}) == 1  # one parent, made once
    for run in runs:
        assert run.info.status == "FINISHED"
        assert {"eval_acc", "eval_exact", "train_seconds", "loss", "acc"} <= set(run.data.metrics)
        assert len(client.get_metric_history(run.info.run_id, "loss")) == 4


def test_a_model_mlflow_cannot_take_is_kept(tracking_uri, tmp_path):
    from echo.models import build_model

    cfg = compose_config(TINY)
    model = build_model(cfg.model, cfg.data, cfg.trainer.batch_size)
    windows = np.zeros((cfg.trainer.batch_size, cfg.data.n_in), np.int32)
    with tracking.start_run("kept", None, {}, "", tmp_path / "unlogged") as run:
        # The store loses the table logged models go in, just before the model is logged.
        with sqlite3.connect(tracking_uri.removeprefix("sqlite:///")) as connection:
            connection.execute("DROP TABLE logged_models")
        run.log_model(model, input_example=windows)
    kept = keras.saving.load_model(tmp_path / "unlogged" / "model.keras", safe_mode=True)
    assert [w.shape for w in kept.get_weights()] == [w.shape for w in model.get_weights()]


@pytest.mark.slow
def test_separate_commands_started_at_once_in_a_new_folder_all_run(tmp_path):
    """Three terminals, one new folder: each command creates or finds the same sqlite store."""
    env = {**os.environ, "HYDRA_FULL_ERROR": "0"}
    env.pop("MLFLOW_TRACKING_URI", None)  # echo's default store, sqlite:///mlflow.db, here
    commands = [
        [sys.executable, "-m", "echo.train", *TINY, "mlflow.log_model=false", f"trainer.seed={s}"]
        for s in (1, 2, 3)
    ]
    processes = [
        subprocess.Popen(c, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        for c in commands
    ]
    outputs = [p.communicate(timeout=300)[0].decode() for p in processes]
    assert [p.returncode for p in processes] == [0, 0, 0], "\n".join(o[-2000:] for o in outputs)
    _, runs = runs_of(f"sqlite:///{tmp_path / 'mlflow.db'}")
    assert sorted(r.data.params["trainer.seed"] for r in runs) == ["1", "2", "3"]
    assert {r.info.status for r in runs} == {"FINISHED"}


def read_until(process: subprocess.Popen, text: str) -> str:
    seen = []
    for line in process.stdout:
        seen.append(line)
        if text in line:
            return "".join(seen)
    raise AssertionError(f"{text!r} never came:\n{''.join(seen)[-3000:]}")


@pytest.mark.slow
def test_a_killed_run_is_marked_vanished_and_resumes_from_its_periodic_checkpoint(tmp_path):
    """SIGKILL after the first periodic checkpoint: nothing is told, nothing is lost. The next
    command marks the run FAILED as vanished; resuming it ends as an uninterrupted run of the
    same seed does, every step logged once, and train_seconds covers both segments."""
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    args = [
        *TINY,
        "trainer.epochs=300",
        "trainer.log_every=3",
        "trainer.checkpoint_every=0.3",
        "mlflow.log_model=false",
        "mlflow.heartbeat_every=0.5",
    ]
    process = start_training(args, tmp_path, uri)
    saved = read_until(process, "checkpoint after epoch").rsplit("checkpoint after epoch ", 1)
    saved_through = int(saved[1].split()[0]) - 1  # the last (0-based) epoch it holds
    client, (run,) = runs_of(uri)
    run_id = run.info.run_id
    # Killed once the store holds points past the checkpoint: training the resumed run
    # repeats, and must not log again.
    deadline = time.monotonic() + 60
    while max(m.step for m in client.get_metric_history(run_id, "loss")) <= saved_through:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    process.kill()
    process.wait(timeout=60)
    run = client.get_run(run_id)
    assert run.info.status == "RUNNING" and run.data.tags["echo.checkpoint"].startswith("checkp")

    time.sleep(1.5)  # older than the next command's vanished_after: the heartbeat stopped
    other = run_cli([*TINY, "mlflow.log_model=false", "mlflow.vanished_after=1"], tmp_path, uri)
    assert other.returncode == 0, other.stderr[-2000:]
    run = client.get_run(run_id)
    assert run.info.status == "FAILED" and run.data.tags["echo.vanished"] == "true"
    failure = run.data.tags["echo.failure"]
    assert failure.startswith("process vanished at ") and f"trainer.resume={run_id}" in failure
    listed = run_cli([], tmp_path, uri, module="echo.report")
    assert listed.returncode == 0, listed.stderr[-2000:]
    assert [line.split()[1] for line in listed.stdout.splitlines() if run_id in line] == [
        "VANISHED"
    ]

    resumed = run_cli([f"trainer.resume={run_id}"], tmp_path, uri)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    run = client.get_run(run_id)
    assert run.info.status == "FINISHED" and "echo.failure" not in run.data.tags
    history = client.get_metric_history(run_id, "loss")
    assert sorted(m.step for m in history) == list(range(300))  # none missing, none twice

    whole = run_cli([*args, "mlflow.experiment=whole"], tmp_path, uri)
    assert whole.returncode == 0, whole.stderr[-2000:]
    _, (uninterrupted,) = runs_of(uri, "whole")
    expected = client.get_metric_history(uninterrupted.info.run_id, "loss")
    assert {m.step: m.value for m in history} == {m.step: m.value for m in expected}
    for key in ("val_exact", "val_acc", "eval_exact", "eval_acc"):
        assert run.data.metrics[key] == uninterrupted.data.metrics[key], key
    assert run.data.metrics["train_seconds"] > 0.3  # both segments, not the last alone


@pytest.mark.slow
def test_a_process_that_wakes_to_find_its_run_vanished_takes_it_back(tmp_path):
    """A suspended laptop: the process stops (SIGSTOP) long enough for another command to mark
    its run vanished, then continues (SIGCONT). Its next heartbeat makes the run RUNNING again,
    and the run ends FINISHED with no failure left on it."""
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    args = [*TINY, "trainer.epochs=4000", "trainer.log_every=100", "mlflow.log_model=false"]
    process = start_training([*args, "mlflow.heartbeat_every=0.3"], tmp_path, uri)
    read_until(process, " - epoch 200/4000")
    other = [*TINY, "mlflow.log_model=false", "mlflow.vanished_after=1"]
    try:
        for _ in range(5):
            process.send_signal(signal.SIGSTOP)
            time.sleep(1.5)
            marker = run_cli(other, tmp_path, uri)
            # A process stopped in the middle of a write holds sqlite's lock until it goes on,
            # and then no command can use the store: stop it at another moment.
            if "database is locked" not in marker.stderr:
                break
            process.send_signal(signal.SIGCONT)
            time.sleep(0.2)
        assert marker.returncode == 0, marker.stderr[-2000:]
        client, runs = runs_of(uri)
        (stopped,) = [r for r in runs if r.data.tags.get("echo.vanished") == "true"]
        assert stopped.info.status == "FAILED"
    finally:
        process.send_signal(signal.SIGCONT)
    output = process.communicate(timeout=300)[0]
    assert process.returncode == 0, output[-3000:]
    assert f"run {stopped.info.run_id} was marked vanished" in output
    run = client.get_run(stopped.info.run_id)
    assert run.info.status == "FINISHED" and "echo.revived" in run.data.tags
    assert not {"echo.failure", "echo.vanished"} & set(run.data.tags)


def peak_memory(args: list[str], cwd, uri: str) -> int:
    """The peak resident memory, in bytes, of `python -m echo.train ARGS`, from the kernel."""
    process = start_training(args, cwd, uri)
    output = process.stdout.read()
    _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    assert process.returncode == 0, output[-3000:]
    return usage.ru_maxrss * 1024  # kilobytes on Linux


@pytest.mark.slow
def test_the_memory_estimate_is_within_a_few_times_of_the_measured_peak(tmp_path):
    """Two presets, and a config whose size comes from its data: the estimate of the whole
    process, and of what the config adds to a tiny run, are within 3x of what was measured."""
    from echo import resources

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    quick = ["mlflow.log_model=false"]
    tiny = [*TINY, *quick]
    base = peak_memory(tiny, tmp_path, uri)
    base_estimate = resources.estimate(compose_config(tiny)).total
    for args in (
        ["experiment=encdec_fast", *quick],
        ["experiment=tutorial_seq2seq", "trainer.epochs=100", *quick],
        # Stateless: 50,000 sequences' 300,000 windows are predicted at once.
        [*tiny, "model.stateful=false", "trainer.eval_sequences=50000", "model.units=32"],
    ):
        peak, estimated = peak_memory(args, tmp_path, uri), resources.estimate(compose_config(args))
        assert peak / 3 <= estimated.total <= 3 * peak, (args, peak, estimated)
        grown, expected = peak - base, estimated.total - base_estimate
        if grown > 100 * 2**20:  # what the config adds, where it is more than noise
            assert grown / 3 <= expected <= 3 * grown, (args, grown, expected)
