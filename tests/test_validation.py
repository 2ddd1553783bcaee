"""Choose on validation, report test: what training reads, what a run logs, what a sweep picks."""

import numpy as np
import pytest
from conftest import TINY, compose_config
from mlflow.tracking import MlflowClient

from echo import data
from echo import train as echo_train

# Learns the tiny echo to a target within a few hundred epochs, checked every 20.
TO_TARGET = [
    *TINY,
    "model.units=16",
    "trainer.epochs=400",
    "trainer.log_every=20",
    "trainer.validate_every=40",
    "trainer.learning_rate=0.02",
    "trainer.eval_sequences=20",
    "trainer.target_exact=0.9",
    "mlflow.log_model=false",
]


def only_run(uri, experiment="echo"):
    client = MlflowClient(uri)
    runs = client.search_runs([client.get_experiment_by_name(experiment).experiment_id])
    assert len(runs) == 1
    return client, runs[0]


def test_a_run_logs_validation_as_a_curve_and_at_the_end_beside_the_test(tracking_uri):
    cfg = compose_config([*TINY, "trainer.epochs=10", "trainer.validate_every=4"])
    metrics = echo_train.train(cfg)
    client, run = only_run(tracking_uri)
    # Calls of 2 epochs: the ones ending at epochs 4 and 8 pass a multiple of 4; the last
    # call (epoch 10) is validated too. Steps are 0-based epochs, as for loss and acc.
    for key in ("val_exact", "val_acc"):
        assert [m.step for m in client.get_metric_history(run.info.run_id, key)] == [3, 7, 9]
    curve = client.get_metric_history(run.info.run_id, "val_exact")
    assert run.data.metrics["val_exact"] == metrics["val_exact"] == curve[-1].value
    assert {"val_acc", "val_exact", "eval_acc", "eval_exact"} <= set(run.data.metrics)


class PoisonedStreams:
    """data.streams, with the test stream replaced by one of another seed."""

    def __init__(self, real):
        self.real = real

    def __call__(self, seed):
        streams = self.real(seed)
        streams["test"] = np.random.default_rng(seed + 1000)
        return streams


def test_the_test_stream_never_steers_training(tracking_uri, monkeypatch):
    """A run whose test windows are different stops at the same epoch with the same
    validation scores: stopping and choosing read validation only."""
    clean = echo_train.train(compose_config(TO_TARGET))
    assert 0 < clean["epochs_to_target"] < 400  # the target stopped it early
    monkeypatch.setattr(data, "streams", PoisonedStreams(data.streams))
    poisoned = echo_train.train(compose_config(TO_TARGET))
    same = ("epochs_to_target", "epochs_trained", "val_acc", "val_exact")
    assert {k: poisoned[k] for k in same} == {k: clean[k] for k in same}
    assert poisoned["eval_acc"] != clean["eval_acc"]  # the test windows did change


@pytest.mark.slow
def test_a_sweep_picks_its_best_job_by_validation(tmp_path):
    from conftest import run_cli

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    args = ["-m", *TINY, "model.units=8,16", "trainer.epochs=5", "mlflow.log_model=false"]
    result = run_cli(args, tmp_path, uri)
    assert result.returncode == 0, result.stderr[-3000:]
    client = MlflowClient(uri)
    runs = client.search_runs([client.get_experiment_by_name("echo").experiment_id])
    (parent,) = [r for r in runs if r.data.tags.get("echo.role") == "sweep"]
    children = [r for r in runs if r is not parent]
    assert all({"val_exact", "eval_exact"} <= set(r.data.metrics) for r in children)
    best = max(r.data.metrics["val_exact"] for r in children)
    chosen = client.get_run(parent.data.tags["echo.best_run_id"])
    assert chosen.data.metrics["val_exact"] == best == parent.data.metrics["best_val_exact"]


def test_a_padded_run_is_also_scored_on_its_full_windows_alone(tracking_uri, monkeypatch):
    """A padded run's val_full_* and eval_full_* score the windows an unpadded run of the same
    data has, the last length - n_in + 1 of each sequence; an unpadded run logs none."""
    from echo.evaluation import score

    seen = {}
    real = echo_train.full_window_scores

    def spy(job, X_test, y_test, echoed_test):
        seen.update(X=X_test, y=y_test, echoed=echoed_test)
        return real(job, X_test, y_test, echoed_test)

    monkeypatch.setattr(echo_train, "full_window_scores", spy)
    cfg = compose_config([*TINY, "data.pad_incomplete=true", "trainer.batch_size=4"])
    metrics = echo_train.train(cfg)
    _, run = only_run(tracking_uri)
    dropped = cfg.data.n_in - 1  # the windows the tutorial's framing drops, at each start
    full = score(seen["y"][:, dropped:], seen["echoed"][:, dropped:])
    assert run.data.metrics["eval_full_exact"] == metrics["eval_full_exact"] == full.eval_exact
    assert run.data.metrics["eval_full_acc"] == full.eval_acc
    assert full.eval_acc != metrics["eval_acc"]  # the padded windows do change the score
    assert {"val_full_acc", "val_full_exact"} <= set(run.data.metrics)

    unpadded = echo_train.train(compose_config([*TINY, "mlflow.experiment=unpadded"]))
    assert not any(key.endswith("_full_exact") for key in unpadded)
