"""Tiny real runs, read back from a real MLflow store with the MLflow client."""

import json
import subprocess

import keras
import mlflow
import numpy as np
import pytest
from conftest import TINY, compose_config, run_cli
from mlflow.tracking import MlflowClient

from echo import train as echo_train
from echo.config import SOURCE_TREE, flat_params


def only_run(uri, experiment="echo"):
    client = MlflowClient(uri)
    runs = client.search_runs([client.get_experiment_by_name(experiment).experiment_id])
    assert len(runs) == 1
    return client, runs[0]


@pytest.mark.parametrize("model_name", ["seq2seq", "encdec"])
def test_run_records_config_curves_scores_echoes_and_model(tracking_uri, model_name):
    cfg = compose_config([f"model={model_name}", *TINY])
    metrics = echo_train.train(cfg)

    client, run = only_run(tracking_uri)
    assert run.info.status == "FINISHED"
    assert run.data.params == {key: str(value) for key, value in flat_params(cfg).items()}
    for key in ("loss", "acc"):
        history = client.get_metric_history(run.info.run_id, key)
        assert [m.step for m in history] == [0, 1, 2, 3]
    assert run.data.metrics["eval_exact"] == metrics["eval_exact"]
    assert 0 <= run.data.metrics["eval_acc"] <= 1 and run.data.metrics["train_seconds"] > 0
    assert run.data.metrics["epochs_trained"] == 4

    tags = run.data.tags
    assert tags["echo.model_kind"] == model_name and tags["echo.data_seed"] == "1"
    assert tags["echo.version.tensorflow"] and tags["echo.version.mlflow"] == mlflow.__version__
    assert tags["echo.command"].startswith("python -m echo.train")
    head = subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=SOURCE_TREE, capture_output=True, text=True
    )
    if head.returncode == 0:  # echo runs from its git checkout: the run names its commit
        assert tags["mlflow.source.git.commit"] == head.stdout.strip()
    else:
        assert "mlflow.source.git.commit" not in tags
    assert tags["echo.version.keras"] == keras.__version__
    experiment = client.get_experiment(run.info.experiment_id)
    assert experiment.tags["mlflow.experimentKind"] == "custom_model_development"

    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {
        "config.yaml",
        "echoes.json",
        "learning_curves.png",
        "position_accuracy.png",
    } <= artifacts
    echoes = json.loads(open(client.download_artifacts(run.info.run_id, "echoes.json")).read())
    assert (
        echoes["columns"] == ["window", "expected", "echoed", "right"] and len(echoes["data"]) == 4
    )
    assert "n_unique: 10" in open(client.download_artifacts(run.info.run_id, "config.yaml")).read()

    model = mlflow.keras.load_model(f"runs:/{run.info.run_id}/model")
    windows = (np.arange(9).reshape(3, 3) % 10).astype(np.int32)
    assert model.predict(windows, verbose=0, batch_size=3).shape == (3, 2, 10)
    generic = mlflow.pyfunc.load_model(f"runs:/{run.info.run_id}/model")
    assert tuple(generic.metadata.signature.inputs.to_dict()[0]["tensor-spec"]["shape"]) == (-1, 3)
    example = generic.input_example  # one batch of held-out windows
    assert example.shape == (3, 3) and example.max() < 10
    logged = mlflow.search_logged_models(
        experiment_ids=[run.info.experiment_id], output_format="list"
    )
    # The Keras model, and the echoes model beside it (echo.serving).
    assert sorted(m.name for m in logged) == ["echoes", "model"]
    assert {m.source_run_id for m in logged} == {run.info.run_id}
    assert np.asarray(generic.predict(windows)).shape == (3, 2, 10)


def test_a_failing_run_is_marked_failed(tracking_uri, monkeypatch):
    def broken_fit(self, *args, **kwargs):
        raise RuntimeError("disk on fire")

    monkeypatch.setattr("echo.trainer.Trainer.fit", broken_fit)
    with pytest.raises(RuntimeError, match="disk on fire"):
        echo_train.train(compose_config(TINY))
    _, run = only_run(tracking_uri)
    assert run.info.status == "FAILED"
    assert run.data.params["model.units"] == "8"


@pytest.mark.slow
def test_cli_run_from_another_directory(tmp_path):
    uri = f"sqlite:///{tmp_path / 'store.db'}"
    result = run_cli(["model=encdec", *TINY, "mlflow.experiment=cli"], tmp_path, uri)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Expected: [" in result.stderr + result.stdout
    _, run = only_run(uri, "cli")
    assert run.info.status == "FINISHED" and run.data.params["model.kind"] == "encdec"
    assert (tmp_path / "outputs").is_dir()  # Hydra's output folder, under the caller's directory


@pytest.mark.slow
def test_multirun_logs_every_job(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    result = run_cli(
        ["-m", *TINY, "model.units=4,6", "data.n_out=1,2", "mlflow.log_model=false"], tmp_path, uri
    )
    assert result.returncode == 0, result.stderr[-3000:]
    client = MlflowClient(uri)
    runs = client.search_runs([client.get_experiment_by_name("echo").experiment_id])
    (parent,) = [r for r in runs if r.data.tags.get("echo.role") == "sweep"]
    jobs = [r for r in runs if r is not parent]
    assert sorted((r.data.params["model.units"], r.data.params["data.n_out"]) for r in jobs) == [
        ("4", "1"),
        ("4", "2"),
        ("6", "1"),
        ("6", "2"),
    ]
    assert all(r.info.status == "FINISHED" for r in jobs)
    assert all({"val_exact", "eval_exact"} <= set(r.data.metrics) for r in jobs)

    # The sweep is one tree: each job under the parent, named by what it varied.
    assert {r.data.tags["mlflow.parentRunId"] for r in jobs} == {parent.info.run_id}
    assert {frozenset(r.info.run_name.split(",")) for r in jobs} == {
        frozenset({f"model.units={units}", f"data.n_out={n_out}"})
        for units in (4, 6)
        for n_out in (1, 2)
    }
    assert "model.units=4,6 data.n_out=1,2" in parent.data.tags["echo.sweep_overrides"]
    assert parent.info.status == "FINISHED"
    # The best job is chosen on validation, never on the held-out test scores.
    best = max(jobs, key=lambda r: r.data.metrics["val_exact"])
    assert "best_eval_exact" not in parent.data.metrics
    assert parent.data.metrics["best_val_exact"] == best.data.metrics["val_exact"]
    assert parent.data.tags["echo.best_run_id"] in {
        r.info.run_id for r in jobs if r.data.metrics["val_exact"] == best.data.metrics["val_exact"]
    }
    assert {a.path for a in client.list_artifacts(parent.info.run_id)} == {
        "results.json",
        "val_exact_by_sweep.png",
    }
    table = json.loads(open(client.download_artifacts(parent.info.run_id, "results.json")).read())
    assert len(table["data"]) == 4 and {"model.units", "data.n_out", "eval_exact", "status"} <= set(
        table["columns"]
    )

    # The MLflow UI's saved view of the sweep, which the sweep's URL opens: its jobs, best first,
    # the swept params and the scores as columns.
    experiment = client.get_experiment_by_name("echo")
    view = saved_view(experiment.tags, parent.info.run_id)
    assert view["name"] == parent.info.run_name
    assert view["state"]["selectedColumns"] == [
        "params.`model.units`",
        "params.`data.n_out`",
        "metrics.`val_exact`",
        "metrics.`eval_exact`",
    ]
    assert (view["state"]["orderByKey"], view["state"]["orderByAsc"]) == (
        "metrics.`val_exact`",
        False,
    )
    found = client.search_runs([experiment.experiment_id], view["state"]["searchFilter"])
    assert {r.info.run_id for r in found} == {r.info.run_id for r in jobs}
    assert "open " in result.stdout and f"viewStateShareKey={parent.info.run_id}" in result.stdout


def saved_view(tags: dict[str, str], view_id: str) -> dict:
    """An experiment's saved view of its runs table, as the MLflow UI reads it: an envelope
    whose state is itself JSON."""
    envelope = json.loads(tags[f"mlflow.sharedViewState.{view_id}"])
    assert isinstance(envelope["createdAt"], int)
    return {**envelope, "state": json.loads(envelope["state"])}


def test_an_experiment_opens_in_the_ui_on_its_runs_and_scores(tracking_uri):
    # One made by an older echo, without the tags: the next run gives them.
    MlflowClient(tracking_uri).create_experiment("echo")
    echo_train.train(compose_config([*TINY, "mlflow.log_model=false"]))
    tags = MlflowClient(tracking_uri).get_experiment_by_name("echo").tags
    assert tags["mlflow.experimentKind"] == "custom_model_development"
    assert tags["mlflow.experiment.primaryMetric.name"] == "val_exact"
    view = saved_view(tags, "echo-runs")
    assert view["name"] == "echo runs"
    columns = view["state"]["selectedColumns"]
    assert {"metrics.`val_exact`", "metrics.`eval_exact`", "params.`model.units`"} <= set(columns)
    # Newest first and unfiltered: the order in which the UI nests a sweep's jobs under it.
    assert view["state"]["searchFilter"] == "" and "orderByKey" not in view["state"]
