"""echo's Optuna search (hydra/sweeper=echo_optuna), for real: tiny trials run by Hydra's
launchers, the study in a real journal file beside a real MLflow store, both read back with
their own clients, and a search killed with SIGKILL and finished by its parent run."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import optuna
import pytest
from conftest import TINY, compose_config, job_states, run_cli, start_sweep_to_kill
from mlflow.tracking import MlflowClient
from optuna.trial import TrialState

pytestmark = pytest.mark.slow

# The tiny problem with the search space of conf/hparams_search/encdec.yaml fixed where it does
# not fit: a plain value on the command line fixes a key of the space.
SEARCH = [
    "-m",
    "hparams_search=encdec",
    *TINY,
    "model.units=4",
    "trainer.batch_size=3",
    "mlflow.log_model=false",
]


def search_tree(client: MlflowClient):
    """The search's parent run and its trials' runs."""
    runs = client.search_runs([client.get_experiment_by_name("echo").experiment_id])
    (parent,) = [r for r in runs if r.data.tags.get("echo.role") == "sweep"]
    return parent, [r for r in runs if r is not parent]


def stored_study(parent) -> optuna.Study:
    """The study the parent run names, opened with Optuna's own loader from the storage the
    parent records."""
    journal = optuna.storages.journal.JournalFileBackend(parent.data.tags["echo.study_storage"])
    storage = optuna.storages.JournalStorage(journal)
    return optuna.load_study(study_name=parent.data.tags["echo.study_name"], storage=storage)


def test_a_search_prunes_the_trials_of_a_bad_learning_rate(tmp_path):
    """Six trials over a good and a hopeless learning rate, with the median pruner: after two
    trials finish, each trial of the hopeless rate is stopped at its first validation. Its
    run ends FINISHED, tagged pruned, with its partial and test scores; its trial is PRUNED."""
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    args = [
        *SEARCH,
        "trainer.learning_rate=choice(0.05,0.00001)",
        "trainer.epochs=300",
        "trainer.validate_every=50",
        "trainer.log_every=10",
        "hydra.sweeper.n_trials=6",
        "hydra.sweeper.n_jobs=1",
        # Random draws of this seed: good, good, bad, good, bad, bad.
        "hydra.sweeper.sampler._target_=optuna.samplers.RandomSampler",
        "hydra.sweeper.sampler.seed=6",
        "hydra.sweeper.pruner.n_startup_trials=2",
    ]
    result = run_cli(args, tmp_path, uri)
    assert result.returncode == 0, result.stderr[-3000:]
    client = MlflowClient(uri)
    parent, runs = search_tree(client)
    study = stored_study(parent)
    assert study.direction == optuna.study.StudyDirection.MAXIMIZE
    assert parent.data.tags["echo.study_storage"] == str(tmp_path / "optuna.journal")
    trials = study.get_trials()
    states = [t.state for t in trials]
    assert states.count(TrialState.PRUNED) == 3 and states.count(TrialState.COMPLETE) == 3
    by_run = {r.info.run_id: r for r in runs}
    assert len(runs) == 6 and {r.info.status for r in runs} == {"FINISHED"}
    for trial in trials:  # trial and run name each other
        run = by_run[trial.user_attrs["mlflow_run_id"]]
        assert run.data.tags["echo.trial_number"] == str(trial.number)
        assert run.data.tags["echo.study_name"] == study.study_name
        assert "eval_exact" in run.data.metrics  # the test set scored once, pruned or not
        if trial.state == TrialState.PRUNED:
            assert trial.params["trainer.learning_rate"] == 0.00001
            assert run.data.tags["echo.pruned"] == "true"
            assert run.data.metrics["epochs_trained"] == 50  # of 300
            assert list(trial.intermediate_values) == [49]
        else:
            assert trial.params["trainer.learning_rate"] == 0.05
            assert "echo.pruned" not in run.data.tags
            assert run.data.metrics["epochs_trained"] == 300
            assert trial.value == run.data.metrics["val_exact"]
    best = study.best_trial
    assert parent.data.tags["echo.best_trial_run_id"] == best.user_attrs["mlflow_run_id"]
    assert json.loads(parent.data.tags["echo.best_params"]) == best.params
    assert parent.data.tags["echo.trials"] == "3 COMPLETE, 3 PRUNED"
    # The parent's table says which runs were pruned; its best run is not one of them.
    table = json.loads(
        Path(client.download_artifacts(parent.info.run_id, "results.json")).read_text()
    )
    status = [row[table["columns"].index("status")] for row in table["data"]]
    assert sorted(status) == ["FINISHED"] * 3 + ["PRUNED"] * 3
    assert by_run[parent.data.tags["echo.best_run_id"]].data.tags.get("echo.pruned") is None


def test_a_run_that_trained_its_budget_is_complete_though_the_pruner_said_prune(tmp_path):
    """Pruning stops a run early, nothing else: a pruner that always says prune (val_exact
    never reaches 2) meets a run whose only validation comes after its last epoch. Nothing is
    left to stop, so the run is not tagged pruned and its trial is COMPLETE with its value."""
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    args = [
        *SEARCH,
        "hydra.sweeper.n_trials=1",
        "hydra.sweeper.pruner=null",
        "+hydra.sweeper.pruner={_target_:optuna.pruners.ThresholdPruner,lower:2.0}",
        "trainer.epochs=8",
        "trainer.validate_every=8",
    ]
    result = run_cli(args, tmp_path, uri)
    assert result.returncode == 0, result.stderr[-3000:]
    parent, (run,) = search_tree(MlflowClient(uri))
    (trial,) = stored_study(parent).get_trials()
    assert list(trial.intermediate_values) == [7]  # reported, and the pruner said prune
    assert run.data.metrics["epochs_trained"] == 8
    assert trial.state == TrialState.COMPLETE, trial.state
    assert trial.value == run.data.metrics["val_exact"]
    assert "echo.pruned" not in run.data.tags


def test_a_search_on_joblib_runs_two_trials_at_a_time_and_resumes_to_its_total(tmp_path):
    """hydra.sweeper.n_jobs=2 on the joblib launcher: each batch's two trials run in two
    worker processes. Rerun with its parent and n_trials=4, the search goes on to 4 trials in
    all, under the same parent, in the same study."""
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    args = [
        *SEARCH,
        "hydra/launcher=joblib",
        "hydra.launcher.n_jobs=2",
        "hydra.sweeper.n_jobs=2",
        "hydra.sweeper.pruner=null",
        "trainer.learning_rate=tag(log, interval(0.01, 0.1))",
        "hydra.sweeper.study_name=joblib_search",
    ]
    first = run_cli([*args, "hydra.sweeper.n_trials=2"], tmp_path, uri)
    assert first.returncode == 0, first.stderr[-3000:]
    client = MlflowClient(uri)
    parent, runs = search_tree(client)
    assert len({r.data.tags["echo.pid"] for r in runs}) == 2  # two workers, one trial each
    again = run_cli(args, tmp_path, uri)  # the same study name is taken
    assert again.returncode == 2
    assert again.stderr.strip().splitlines()[-1] == (
        f"echo: hydra.sweeper.study_name=joblib_search: {tmp_path / 'optuna.journal'} holds "
        "that study already; finish it with hydra.callbacks.echo.resume=PARENT_RUN_ID, or name "
        "a new one"
    )

    resume = f"hydra.callbacks.echo.resume={parent.info.run_id}"
    resumed = run_cli([*args, "hydra.sweeper.n_trials=4", resume], tmp_path, uri)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    parent, runs = search_tree(client)
    assert parent.info.status == "FINISHED" and len(runs) == 4
    study = stored_study(parent)
    assert study.study_name == "joblib_search"
    assert [t.state for t in study.get_trials()] == [TrialState.COMPLETE] * 4
    rates = {t.params["trainer.learning_rate"] for t in study.get_trials()}
    assert len(rates) == 4 and all(0.01 <= rate <= 0.1 for rate in rates)
    assert {r.data.tags["echo.trial_number"] for r in runs} == {"0", "1", "2", "3"}


def test_a_killed_search_resumed_by_its_parent_finishes_its_trials_once(tmp_path):
    """SIGKILL to a 6-trial search's process group after 3 trials finished and the fourth
    saved a checkpoint. Rerun with its parent, the search marks that trial FAIL and runs its
    values again as a new trial, which continues the same MLflow run from its checkpoint; then
    the last 2. One parent, 6 FINISHED runs, 6 trials done and the one the kill interrupted."""
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    search = [
        *SEARCH,
        "model.units=range(4,10)",
        "hydra.sweeper.n_trials=6",
        "hydra.sweeper.n_jobs=1",
        "hydra.sweeper.pruner=null",
        "trainer.epochs=1000",  # seconds a trial: long enough to kill one midway
        "trainer.log_every=10",
        "trainer.checkpoint_every=0.2",
        "mlflow.heartbeat_every=0.3",
        "mlflow.vanished_after=1",
    ]
    process, seen, client = start_sweep_to_kill(search, tmp_path, uri)
    deadline = time.monotonic() + 180
    while job_states(client) != [("FINISHED", True)] * 3 + [("RUNNING", True)]:
        assert time.monotonic() < deadline and process.poll() is None, "".join(seen)[-3000:]
        time.sleep(0.02)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait(timeout=60)
    parent, runs = search_tree(client)
    (killed,) = [r for r in runs if r.info.status == "RUNNING"]
    assert killed.data.tags["echo.trial_number"] == "3"

    time.sleep(1.5)  # the heartbeats are stale now
    resume = f"hydra.callbacks.echo.resume={parent.info.run_id}"
    resumed = run_cli([*search, resume], tmp_path, uri)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert (resumed.stdout + resumed.stderr).count(f"resuming run {killed.info.run_id}") == 1
    again, runs = search_tree(client)
    assert again.info.run_id == parent.info.run_id and again.info.status == "FINISHED"
    assert len(runs) == 6 and {r.info.status for r in runs} == {"FINISHED"}
    trials = stored_study(again).get_trials()
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 3 + [TrialState.FAIL] + [
        TrialState.COMPLETE
    ] * 3
    rerun = trials[4]  # the interrupted trial's values, run again, in the same MLflow run
    assert rerun.params == trials[3].params and rerun.user_attrs["echo.resumes_trial"] == 3
    assert rerun.user_attrs["mlflow_run_id"] == killed.info.run_id
    assert client.get_run(killed.info.run_id).data.tags["echo.trial_number"] == "4"
    assert client.get_run(killed.info.run_id).data.metrics["epochs_trained"] == 1000
    assert again.data.tags["echo.trials"] == "6 COMPLETE"


def test_a_multi_objective_search_records_its_pareto_front(tmp_path):
    """val_exact against train_seconds: no single best trial, so the parent records the
    trials no other beats on both, as a table and a tag."""
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    args = [
        *SEARCH,
        "model.units=choice(4,8)",
        "hydra.sweeper.n_trials=3",
        "hydra.sweeper.pruner=null",
        "hydra.sweeper.objectives=[val_exact,train_seconds]",
        "hydra.sweeper.direction=[maximize,minimize]",
    ]
    result = run_cli(args, tmp_path, uri)
    assert result.returncode == 0, result.stderr[-3000:]
    client = MlflowClient(uri)
    parent, runs = search_tree(client)
    study = stored_study(parent)
    front = {t.number for t in study.best_trials}
    assert parent.data.tags["echo.pareto_front"] == ",".join(str(n) for n in sorted(front))
    table = json.loads(
        Path(client.download_artifacts(parent.info.run_id, "pareto_front.json")).read_text()
    )
    assert table["columns"][:4] == ["trial", "run_id", "val_exact", "train_seconds"]
    metrics = {r.info.run_id: r.data.metrics for r in runs}
    for trial, run_id, val_exact, train_seconds, *_ in table["data"]:
        assert trial in front
        assert (val_exact, train_seconds) == pytest.approx(
            (metrics[run_id]["val_exact"], metrics[run_id]["train_seconds"])
        )


@pytest.mark.parametrize(
    "given, said",
    [
        (
            ["hydra.sweeper.objectives=[eval_exact]"],
            "echo: hydra.sweeper.objectives=eval_exact: a search chooses on validation (val_*); "
            "the test scores (eval_*) are only reported",
        ),
        (
            ["hydra.sweeper.objectives=[val_exact,train_seconds]"],
            "echo: hydra.sweeper.direction=maximize: minimize or maximize, one per objective "
            "(val_exact, train_seconds)",
        ),
        (
            ["hydra.sweeper.storage=mlflow.db"],
            "echo: hydra.sweeper.storage={tmp}/mlflow.db: that is the tracking store; a study "
            "needs a database of its own",
        ),
        (
            ["trainer.learning_rate=shuffle(0.1,0.2)"],
            "echo: trainer.learning_rate=shuffle(0.1,0.2): a search reads only the tags log "
            "and int, and no shuffle",
        ),
        (
            ["hydra/launcher=ray", "hydra.launcher.ray.init.address=192.0.2.1:6379"],
            "echo: hydra.sweeper.storage=null: a cluster's jobs cannot reach a journal file on "
            "this machine; give a database they can reach (postgresql://...)",
        ),
    ],
    ids=["test-score", "directions", "mlflow-db", "shuffle", "ray-cluster"],
)
def test_a_search_that_cannot_work_is_refused_before_any_run(tmp_path, given, said):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    result = run_cli([*SEARCH, *given], tmp_path, uri)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [said.format(tmp=tmp_path)]
    assert not (tmp_path / "multirun").exists()


def test_a_drawn_value_that_breaks_a_rule_fails_only_its_trial(tmp_path):
    """Values drawn from an interval cannot be checked before the sweep, so each job checks
    its own: a target above 1 fails its trial, in one line, and the others run."""
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    args = [
        "-m",
        "hydra/sweeper=echo_optuna",
        "hydra.sweeper.sampler.seed=1",
        "hydra.sweeper.n_trials=4",
        *TINY,
        "trainer.target_exact=interval(0.5,1.5)",
        "mlflow.log_model=false",
    ]
    result = run_cli(args, tmp_path, uri)
    assert result.returncode == 1, result.stderr[-3000:]
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("echo: ") and "must be in (0, 1], or null" in last
    client = MlflowClient(uri)
    parent, runs = search_tree(client)
    targets = [float(r.data.params["trainer.target_exact"]) for r in runs]
    assert targets and all(t <= 1 for t in targets)  # no run for a refused job
    assert all(r.info.status == "FINISHED" for r in runs)
    assert (
        parent.info.status == "FAILED"
        and "must be in (0, 1], or null" in parent.data.tags["echo.failure"]
    )
    states = [t.state for t in stored_study(parent).get_trials()]
    assert states.count(TrialState.FAIL) == 4 - len(runs) and len(states) == 4

    # Resumed with rerun_failed, the failed trials' values run again, as new trials (and fail
    # again: their target is still above 1); the others are done.
    resume = [
        f"hydra.callbacks.echo.resume={parent.info.run_id}",
        "hydra.callbacks.echo.rerun_failed=true",
    ]
    again = run_cli([*args, *resume], tmp_path, uri)
    assert again.returncode == 1, again.stderr[-3000:]
    trials = stored_study(parent).get_trials()
    failed = [t for t in trials[:4] if t.state == TrialState.FAIL]
    assert len(trials) == 4 + len(failed) and failed
    for first, rerun in zip(failed, trials[4:], strict=True):
        assert rerun.user_attrs["echo.resumes_trial"] == first.number
        assert rerun.params == first.params and rerun.state == TrialState.FAIL


def test_search_preset_composes_as_its_first_trial_would():
    cfg = compose_config(["experiment=search_encdec"])
    assert (
        cfg.model.kind.value,
        cfg.model.stateful,
        cfg.trainer.target_exact,
        cfg.trainer.epochs,
    ) == ("encdec", False, None, 2400)
