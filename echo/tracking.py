"""Everything echo records in MLflow, and reads back. No other module imports mlflow, but the
served model's own code (echo.serving), which MLflow loads.

Two promises shape it. A run always ends in a true state: FINISHED, FAILED with the reason in
the `echo.failure` tag, or KILLED with a checkpoint to resume from. And nothing is lost when the
store fails mid-run: whatever could not be written is kept in a local folder, and the log says
where. It only reads and writes: which run is best, and what a chart shows, are decided by
the callers (echo.sweep, echo.report).
"""

from __future__ import annotations

import datetime
import json
import logging
import os
import shutil
import socket
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Optional

import mlflow
import pandas as pd
from mlflow.entities import Metric, Run, RunStatus, RunTag
from mlflow.tracking import MlflowClient

from echo.errors import BadRequest, Interrupted, UnknownRun
from echo.store import (
    GIT_TAG_PREFIX,
    PARENT_TAG,
    check_reachable,
    sqlite_path,
    tracking_uri,
    without_credentials,
)

log = logging.getLogger(__name__)

FAILURE_TAG = "echo.failure"
# When a run's process was last known alive (seconds since the epoch), and the mark a later
# command leaves on a RUNNING run whose heartbeat stopped.
HEARTBEAT_TAG = "echo.heartbeat"
VANISHED_TAG = "echo.vanished"
# The artifact folder of a run's newest complete checkpoint, and the epochs it holds.
CHECKPOINT_TAG = "echo.checkpoint"
CHECKPOINT_EPOCH_TAG = "echo.checkpoint_epoch"
# A run a search stopped at a validation, its scores partial: it ends FINISHED all the same.
PRUNED_TAG = "echo.pruned"
LEGACY_CHECKPOINT = "checkpoint"  # where runs logged before periodic checkpoints kept theirs
# A sweep job that failed, as one tag per job on the sweep's parent run: the jobs' channel
# back to the sweep, whichever launcher ran them and whether or not they made a run.
FAILED_JOB_TAG = "echo.failed_job."
# An echo experiment's own tags. `mlflow.experimentKind` is MLflow 3's mark of a model-training
# experiment, as opposed to a GenAI one; the 3.17 UI does not read it to choose its view (its
# GenAI / Model training switch does, kept per browser; ?workflowType=machine_learning in the
# URL sets it). The primary metric is the one the UI's chart view plots against the params.
EXPERIMENT_TAGS = {
    "mlflow.experimentKind": "custom_model_development",
    "mlflow.experiment.primaryMetric.name": "val_exact",
}
# The MLflow UI keeps an experiment's saved views of its runs table in experiment tags with this
# prefix, each a JSON envelope (name, createdAt, state); ?viewStateShareKey=ID in the URL opens
# view ID, and its Views menu lists them. echo saves one of all its runs, and one per sweep.
VIEW_TAG = "mlflow.sharedViewState."
RUNS_VIEW = "echo-runs"
# The view's columns: the scores runs are chosen and reported by (a sweep's parent logs
# best_val_exact), and the knobs of the tutorial that sweeps vary most.
VIEW_METRICS = ("val_exact", "eval_exact")
VIEW_PARAMS = ("model.kind", "model.units", "trainer.batch_size", "data.n_out")
RUN_NAME_COLUMN = "attributes.`Run Name`"  # the UI's name for it


def client() -> MlflowClient:
    """A client of the tracking store echo is pointed at, checked to answer; MLflow's own
    functions (runs, artifacts, models) are pointed there too."""
    uri = tracking_uri()
    check_reachable(uri)
    mlflow.set_tracking_uri(uri)
    if uri in _opened:
        return MlflowClient(uri)
    store = _open_in_turn(uri)
    _opened.add(uri)
    return store


_opened: set[str] = set()  # stores this process has opened, so created or upgraded


def _open_in_turn(uri: str) -> MlflowClient:
    """A client of `uri`, made under a file lock beside a sqlite store. Making the first one
    creates a new store's tables, or upgrades an old one's, and two processes doing that at
    once break each other's migrations: echo commands started together take turns instead."""
    path = sqlite_path(uri)
    if path is None:
        return MlflowClient(uri)  # a server, or another database, migrates on its own terms
    from filelock import FileLock

    with FileLock(f"{path}.lock"):
        store = MlflowClient(uri)
        store.search_experiments(max_results=1)  # the tables exist once this answers
    return store


def ensure_experiment(store: MlflowClient, name: str) -> str:
    """The experiment `name`, made if new; one made by an older echo gets the tags it lacks."""
    found = store.get_experiment_by_name(name)
    if found is None:
        experiment_id = store.create_experiment(name, tags=EXPERIMENT_TAGS)
    else:
        experiment_id = found.experiment_id
        for key, value in EXPERIMENT_TAGS.items():
            if key not in found.tags:
                store.set_experiment_tag(experiment_id, key, value)
    if found is None or VIEW_TAG + RUNS_VIEW not in found.tags:
        metrics = (*VIEW_METRICS, "best_val_exact")
        save_runs_view(store, experiment_id, RUNS_VIEW, "echo runs", VIEW_PARAMS, metrics)
    return experiment_id


def save_runs_view(
    store: MlflowClient,
    experiment_id: str,
    view_id: str,
    name: str,
    params: tuple[str, ...],
    metrics: tuple[str, ...],
    search: str = "",
    order_by: Optional[str] = None,
    charts: str = "",
) -> None:
    """Save (or replace) a view of an experiment's runs table in the MLflow UI: these columns,
    the runs `search` finds, best first by metric `order_by` (None: newest first, the order in
    which the UI nests a sweep's jobs under their parent); its chart view shows the charts
    whose names contain `charts`."""
    columns = [f"params.`{key}`" for key in params] + [f"metrics.`{key}`" for key in metrics]
    state = {
        "selectedColumns": columns,
        "columnOrder": [RUN_NAME_COLUMN, *columns],
        "columnWidths": {RUN_NAME_COLUMN: 260},  # room for the names of a sweep's jobs
        "searchFilter": search,
        **({"chartsSearchFilter": charts} if charts else {}),
    }
    if order_by:
        state |= {"orderByKey": f"metrics.`{order_by}`", "orderByAsc": False}
    now = int(time.time() * 1000)
    envelope = {"name": name, "createdAt": now, "updatedAt": now, "state": json.dumps(state)}
    store.set_experiment_tag(experiment_id, VIEW_TAG + view_id, json.dumps(envelope))


def prepare(experiments: set[str], vanished_after: float) -> None:
    """Create the experiments once, before parallel jobs start, and mark the runs in them whose
    process vanished."""
    store = client()
    ids = [ensure_experiment(store, name) for name in sorted(experiments)]
    mark_vanished(ids, vanished_after)


def mark_vanished(experiment_ids: list[str], vanished_after: float) -> list[str]:
    """Mark FAILED the RUNNING runs of these experiments whose last heartbeat (their start, for
    runs logged before heartbeats) is more than `vanished_after` seconds old: their process was
    killed without a word (SIGKILL, the OOM killer, a lost node). Returns their ids."""
    store, now, marked = client(), time.time(), []
    try:
        running = store.search_runs(
            experiment_ids, "attributes.status = 'RUNNING'", max_results=50000
        )
    except Exception as err:  # noqa: BLE001 - housekeeping must not stop the command
        log.warning("could not look for vanished runs (%s)", str(err).splitlines()[0])
        return []
    for run in running:
        tags = run.data.tags
        last = _last_beat(run)
        if now - last <= vanished_after:
            continue
        where = f"{tags.get('echo.host', 'an unknown host')}:{tags.get('echo.pid', '?')}"
        when = datetime.datetime.fromtimestamp(last).isoformat(sep=" ", timespec="seconds")
        if CHECKPOINT_TAG in tags:
            then = f"resume with: python -m echo.train trainer.resume={run.info.run_id}"
        else:
            then = "it saved no checkpoint to resume from"
        why = f"process vanished at {where}; last heartbeat {when}; {then}"
        store.set_tag(run.info.run_id, VANISHED_TAG, "true")
        store.set_tag(run.info.run_id, FAILURE_TAG, why)
        store.set_terminated(run.info.run_id, RunStatus.to_string(RunStatus.FAILED))
        log.warning("marked run %s FAILED: %s", run.info.run_id, why)
        marked.append(run.info.run_id)
    return marked


class Heartbeat:
    """Keeps one run's `echo.heartbeat` tag fresh from a thread, so that it beats through long
    compiled calls and compiles. A process that wakes (a suspended laptop) to find its run
    marked vanished takes it back: RUNNING again, the marks removed, `echo.revived` set."""

    def __init__(self, run_id: str, every: float):
        self.run_id, self.every = run_id, every
        self.store = client()
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._beat, name="echo-heartbeat", daemon=True)

    def __enter__(self) -> Heartbeat:
        tags = {**this_process(), HEARTBEAT_TAG: _now()}
        self.store.log_batch(self.run_id, tags=[RunTag(k, v) for k, v in tags.items()])
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stopped.set()
        self.thread.join()

    def _beat(self) -> None:
        while not self.stopped.wait(self.every):
            try:
                if self.store.get_run(self.run_id).data.tags.get(VANISHED_TAG) == "true":
                    self._revive()
                self.store.set_tag(self.run_id, HEARTBEAT_TAG, _now())
            except Exception as err:  # noqa: BLE001 - a missed beat; the next may land
                log.warning("heartbeat of run %s not written (%s)", self.run_id, err)

    def _revive(self) -> None:
        log.warning(
            "run %s was marked vanished while this process was stopped; it goes on", self.run_id
        )
        self.store.update_run(self.run_id, status=RunStatus.to_string(RunStatus.RUNNING))
        for tag in (VANISHED_TAG, FAILURE_TAG):
            self.store.delete_tag(self.run_id, tag)
        self.store.set_tag(self.run_id, "echo.revived", _now())


def _now() -> str:
    return f"{time.time():.3f}"


def this_process() -> dict[str, str]:
    """Tags that name the process a run lives in."""
    return {"echo.host": socket.gethostname(), "echo.pid": str(os.getpid())}


def start_sweep(experiment: str, overrides: list[str], tags: dict[str, str]) -> str:
    """The parent run of a sweep; its jobs' runs name it in their mlflow.parentRunId tag."""
    store = client()
    run = store.create_run(
        ensure_experiment(store, experiment),
        run_name="sweep " + " ".join(overrides),
        tags={
            "echo.role": "sweep",
            "echo.sweep_overrides": " ".join(overrides),
            **this_process(),
            **tags,
        },
    )
    return run.info.run_id


def check_resumable_sweep(parent_run_id: str, vanished_after: float) -> None:
    """Refuse to resume a sweep that is not one, or whose process still beats."""
    given = f"hydra.callbacks.echo.resume={parent_run_id}"
    run = _run(client(), parent_run_id, given)
    tags = run.data.tags
    if tags.get("echo.role") != "sweep":
        raise BadRequest(f"{given}: that run is not a sweep's parent")
    age = time.time() - _last_beat(run)
    if run.info.status == "RUNNING" and age <= vanished_after:
        where = f"{tags.get('echo.host', '?')}:{tags.get('echo.pid', '?')}"
        raise BadRequest(
            f"{given}: that sweep is still running at {where} (last heartbeat {age:.0f} s ago)"
        )


def reopen_sweep(parent_run_id: str) -> str:
    """An earlier sweep's parent, RUNNING again, without its earlier verdict."""
    store = client()
    tags = store.get_run(parent_run_id).data.tags
    store.update_run(parent_run_id, status=RunStatus.to_string(RunStatus.RUNNING))
    for tag in tags:
        if tag in (FAILURE_TAG, VANISHED_TAG) or tag.startswith(FAILED_JOB_TAG):
            store.delete_tag(parent_run_id, tag)
    return parent_run_id


def sweep_job(parent_run_id: str, tag: str, value: str) -> Optional[Run]:
    """The newest run under a sweep's parent whose `tag` is `value`."""
    store = client()
    experiment_id = store.get_run(parent_run_id).info.experiment_id
    query = f"tags.`{PARENT_TAG}` = '{parent_run_id}' and tags.`{tag}` = '{value}'"
    found = store.search_runs(
        [experiment_id], query, order_by=["attributes.start_time DESC"], max_results=1
    )
    return found[0] if found else None


def tag_run(run_id: str, tags: dict[str, str]) -> None:
    """Set tags on a run that is not this process's active one (a sweep's parent)."""
    client().log_batch(run_id, tags=[RunTag(k, v[:5000]) for k, v in tags.items()])


def log_table(run_id: str, table: pd.DataFrame, file: str) -> None:
    """A table as an artifact of a run that is not this process's active one, shown by the UI."""
    client().log_table(run_id, table, file)


def record_failed_job(parent_run_id: str, job_number: int, why: str) -> None:
    """Tell a sweep's parent that one of its jobs failed, and why (one line)."""
    client().set_tag(parent_run_id, f"{FAILED_JOB_TAG}{job_number}", why[:5000])


def failed_jobs(parent_run_id: str) -> list[str]:
    """What `record_failed_job` told the parent, in job order."""
    tags = client().get_run(parent_run_id).data.tags
    numbers = sorted(
        int(key[len(FAILED_JOB_TAG) :]) for key in tags if key.startswith(FAILED_JOB_TAG)
    )
    return [tags[f"{FAILED_JOB_TAG}{n}"] for n in numbers]


def finish_sweep(
    parent_run_id: str,
    results: pd.DataFrame,
    best: Optional[dict[str, object]],
    chart,
    failure: Optional[str],
) -> None:
    """Give the parent its results table, best run (`best`: run_id, run_name and the metric it
    was chosen by) and chart, then end it: FAILED with `failure` as the reason, or FINISHED."""
    store = client()
    if len(results):
        store.log_table(parent_run_id, results, "results.json")
    if best is not None:
        store.set_tag(parent_run_id, "echo.best_run_id", best["run_id"])
        store.set_tag(parent_run_id, "echo.best_run_name", best["run_name"])
        store.log_metric(parent_run_id, f"best_{best['metric']}", float(best["value"]))
    if chart is not None:
        store.log_figure(parent_run_id, chart, f"{best['metric']}_by_sweep.png")
    if failure:
        store.set_tag(parent_run_id, FAILURE_TAG, failure[:5000])
    _save_sweep_view(store, parent_run_id, results)
    status = RunStatus.FAILED if failure else RunStatus.FINISHED
    store.set_terminated(parent_run_id, RunStatus.to_string(status))


def _save_sweep_view(store: MlflowClient, parent_run_id: str, results: pd.DataFrame) -> None:
    """The sweep's view in the MLflow UI, opened by `sweep_view_id`: its jobs, best first, with
    the params its results table shows (the swept ones) and the scores as columns, and the
    charts of the exact-match scores."""
    parent = store.get_run(parent_run_id)
    experiment_id = parent.info.experiment_id
    query = f"tags.`{PARENT_TAG}` = '{parent_run_id}'"
    jobs = store.search_runs([experiment_id], query, max_results=1)
    logged = set(jobs[0].data.params) if jobs else set()
    swept = tuple(column for column in results.columns if column in logged)
    name = parent.info.run_name or parent_run_id
    view = sweep_view_id(parent_run_id)
    save_runs_view(
        store, experiment_id, view, name, swept, VIEW_METRICS, query, "val_exact", "_exact"
    )


def sweep_view_id(parent_run_id: str) -> str:
    """The id of a sweep's saved view in the MLflow UI (`?viewStateShareKey=`)."""
    return parent_run_id


def find_sweep(experiment: str, sweep_dir: str) -> Optional[str]:
    """The parent run of the sweep Hydra ran into `sweep_dir`, if it started."""
    runs = _search_sweeps(experiment, f"tags.`echo.hydra_sweep_dir` = '{sweep_dir}'")
    return runs[0].info.run_id if runs else None


def sweeps_of_this_process(experiments: set[str], since_ms: int) -> list[Run]:
    """The sweeps this process ran since `since_ms` (ms since the epoch), started or resumed:
    a resumed parent keeps its start time, but its heartbeat names this process from then."""
    me = this_process()
    query = f"tags.`echo.host` = '{me['echo.host']}' and tags.`echo.pid` = '{me['echo.pid']}'"
    found = [run for name in sorted(experiments) for run in _search_sweeps(name, query)]
    return [run for run in found if 1000 * _last_beat(run) >= since_ms]


def _last_beat(run: Run) -> float:
    """When a run's process was last known alive (its start, for runs logged before heartbeats)."""
    return float(run.data.tags.get(HEARTBEAT_TAG, run.info.start_time / 1000))


def _search_sweeps(experiment: str, query: str) -> list[Run]:
    store = client()
    found = store.get_experiment_by_name(experiment)
    if found is None:
        return []
    return store.search_runs(
        [found.experiment_id],
        filter_string=f"tags.`echo.role` = 'sweep' and {query}",
        order_by=["attributes.start_time DESC"],
    )


def run_tags(run_id: str, given: Optional[str] = None) -> dict[str, str]:
    """A run's tags; UnknownRun naming `given`, what the user typed (sweep=RUN_ID unless
    told), if there is no such run."""
    return _run(client(), run_id, given or f"sweep={run_id}").data.tags


def run_facts(run_id: str) -> tuple[str, datetime.datetime, Optional[float]]:
    """A run's experiment, when it started, and how many minutes it lasted (None while it runs)."""
    store = client()
    info = store.get_run(run_id).info
    minutes = (info.end_time - info.start_time) / 60000 if info.end_time else None
    experiment = store.get_experiment(info.experiment_id).name
    return experiment, datetime.datetime.fromtimestamp(info.start_time / 1000), minutes


def runs_frame(
    experiment: Optional[str] = None,
    parent_run_id: Optional[str] = None,
    vanished_after: Optional[float] = None,
) -> pd.DataFrame:
    """An experiment's runs, or one sweep's jobs, as MLflow's table: params.*, metrics.*, tags.*.
    Sweep parents are left out: they summarise runs, they are not runs of their own. With
    `vanished_after`, runs whose process vanished are marked so first."""
    store = client()
    where = without_credentials(tracking_uri())
    if parent_run_id:
        experiment_id = _run(store, parent_run_id, f"sweep={parent_run_id}").info.experiment_id
        query = f"tags.`{PARENT_TAG}` = '{parent_run_id}'"
    else:
        found = store.get_experiment_by_name(experiment)
        if found is None:
            raise UnknownRun(f"experiment={experiment}: no such experiment in {where}")
        experiment_id, query = found.experiment_id, ""
    if vanished_after is not None:
        mark_vanished([experiment_id], vanished_after)
    runs = mlflow.search_runs([experiment_id], filter_string=query, max_results=100000)
    if "tags.echo.role" in runs:
        runs = runs[runs["tags.echo.role"] != "sweep"]
    return runs


def _run(store: MlflowClient, run_id: str, given: str) -> Run:
    """The run `run_id`, or UnknownRun naming `given`, what the user typed."""
    try:
        return store.get_run(run_id)
    except Exception:  # noqa: BLE001 - MLflow's error for a missing run depends on the store
        where = without_credentials(tracking_uri())
        raise UnknownRun(f"{given}: no such run in {where}") from None


class RunLog:
    """Writes one run's records; whatever the store refuses is kept in `fallback_dir`."""

    def __init__(self, run_id: str, fallback_dir: Path):
        self.run_id = run_id
        self.client = MlflowClient()
        self.fallback_dir = fallback_dir
        self.curves: dict[str, list[pd.DataFrame]] = {}  # by the file they are kept in
        # One writer thread, so batches land in order while training goes on. Not MLflow's
        # asynchronous logging: its writer waits on its queue in one-second polls, and ending
        # the run waits for the current poll to run out (MLflow 3.17).
        self.writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="echo-curves")
        self.pending: list[Future] = []  # curve writes under way or done
        self.checkpoint_slot: Optional[str] = None  # where the newest checkpoint is

    def _keep(self, what: str, err: Exception) -> Path:
        self.fallback_dir.mkdir(parents=True, exist_ok=True)
        log.warning(
            "could not write %s to MLflow (%s); kept in %s",
            what,
            str(err).splitlines()[0],
            self.fallback_dir,
        )
        return self.fallback_dir

    def _write(self, what: str, write: Callable[[], object], keep: Callable[[Path], object]):
        """`write()` to the store; if it fails, `keep(folder)` a local copy instead."""
        try:
            write()
        except Exception as err:  # noqa: BLE001 - any store failure: keep it locally
            keep(self._keep(what, err))

    def log_history(self, curves: pd.DataFrame, file: str = "curves.csv") -> None:
        """Queue one batch of curve points: a row per recorded epoch, its `epoch` and a column
        per metric; kept in `file` if the store refuses them. One blocking write per point
        would cost ~6 ms each on sqlite, half a minute over the tutorial's 5,000 epochs; the
        writer thread takes the whole batch in one call while training goes on."""
        self.curves.setdefault(file, []).append(curves)
        now = int(time.time() * 1000)
        metrics = [
            Metric(key, float(value), now, int(epoch))
            for epoch, key, value in curves.melt(id_vars="epoch").itertuples(index=False)
        ]
        self.pending.append(self.writer.submit(self.client.log_batch, self.run_id, metrics=metrics))

    def flush(self) -> None:
        """Wait for the queued curve writes; if any failed, keep all curves locally."""
        failures = []
        for operation in self.pending:
            try:
                operation.result()
            except Exception as err:  # noqa: BLE001 - any store failure: keep the points locally
                failures.append(err)
        self.pending = []
        if failures and self.curves:
            folder = self._keep("the learning curves", failures[0])
            for file, frames in self.curves.items():
                pd.concat(frames).to_csv(folder / file, index=False)

    def close(self) -> None:
        """Flush, then end the writer thread, whatever the flush meets (a second Ctrl-C, a
        full disk for the fallback copy)."""
        try:
            self.flush()
        finally:
            self.writer.shutdown(cancel_futures=True)

    def log_metrics(self, metrics: dict[str, float]) -> None:
        self._write(
            "the summary metrics",
            lambda: mlflow.log_metrics(metrics),
            lambda folder: (folder / "metrics.json").write_text(json.dumps(metrics, indent=1)),
        )

    def set_tags(self, tags: dict[str, str]) -> None:
        self._write(
            "the tags",
            lambda: mlflow.set_tags(tags),
            lambda folder: (folder / "tags.json").write_text(json.dumps(tags, indent=1)),
        )

    def log_echoes(self, echoes: pd.DataFrame) -> None:
        self._write(
            "the echoes table",
            lambda: mlflow.log_table(echoes, artifact_file="echoes.json"),
            lambda folder: echoes.to_csv(folder / "echoes.csv", index=False),
        )

    def log_figure(self, figure, name: str) -> None:
        self._write(
            f"the figure {name}",
            lambda: mlflow.log_figure(figure, name),
            lambda folder: figure.savefig(folder / name),
        )

    def log_checkpoint(self, folder: Path, epochs: int) -> None:
        """Upload a checkpoint into the slot that does not hold the newest complete one, then
        name it: MLflow can neither replace nor delete artifacts, so a kill mid-upload leaves
        the previous checkpoint named, whole."""
        slot = "checkpoints/b" if self.checkpoint_slot == "checkpoints/a" else "checkpoints/a"

        def upload() -> None:
            mlflow.log_artifacts(str(folder), artifact_path=slot)
            mlflow.set_tags({CHECKPOINT_TAG: slot, CHECKPOINT_EPOCH_TAG: str(epochs)})

        self._write(
            "the checkpoint",
            upload,
            lambda kept: shutil.copytree(folder, kept / "checkpoint", dirs_exist_ok=True),
        )
        self.checkpoint_slot = slot

    def log_model(self, model, input_example) -> None:
        """Log the Keras model as the run's MLflow model `model`, with a signature and an input
        example, so that mlflow.keras.load_model and mlflow.pyfunc.load_model both take it."""
        self._write(
            "the model",
            lambda: _log_keras_model(self.client, self.run_id, model, input_example),
            lambda folder: model.save(folder / "model.keras"),
        )

    def log_echo_model(self, model, config_yaml: str) -> None:
        """Log the `echoes` model (echo.serving): windows in, integer echoes out, for
        `mlflow models serve`."""
        self._write(
            "the echoes model",
            lambda: _log_echo_model(model, config_yaml),
            lambda folder: (folder / "echoes-config.yaml").write_text(config_yaml),
        )


def _log_echo_model(model, config_yaml: str) -> None:
    import importlib.util

    import keras
    import tensorflow as tf

    from echo.environment import environment

    code = importlib.util.find_spec("echo.serving").origin  # logged as the model's code
    # Logging loads the model back once to check it, and MLflow would draw its download bars.
    quiet = environment(MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR="false")
    with quiet, tempfile.TemporaryDirectory() as tmp:
        config, weights = Path(tmp) / "config.yaml", Path(tmp) / "model.weights.h5"
        config.write_text(config_yaml)
        model.save_weights(weights)
        mlflow.pyfunc.log_model(
            name="echoes",
            python_model=code,
            artifacts={"config": str(config), "weights": str(weights)},
            pip_requirements=[f"tensorflow=={tf.__version__}", f"keras=={keras.__version__}"],
        )


def _log_keras_model(store: MlflowClient, run_id: str, model, input_example) -> None:
    """Saved first and logged second, rather than by mlflow.keras.log_model: with an input
    example that writes the example before making the folder it goes in, and fails (MLflow
    3.17 and 3.18). A model left half-logged is marked FAILED."""
    import keras
    import numpy as np
    import tensorflow as tf
    from mlflow.entities import LoggedModelStatus
    from mlflow.models import ModelSignature
    from mlflow.types import Schema, TensorSpec

    def spec(tensor):  # any number of rows, whatever batch size a stateful model was built for
        return Schema([TensorSpec(np.dtype(tensor.dtype), (-1, *tensor.shape[1:]))])

    # From the model's shapes: inferring it from a prediction would cost a traced call.
    signature = ModelSignature(inputs=spec(model.inputs[0]), outputs=spec(model.outputs[0]))
    logged = mlflow.initialize_logged_model(name="model", source_run_id=run_id)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            folder = Path(tmp) / "model"
            folder.mkdir()
            mlflow.keras.save_model(
                model,
                str(folder),
                signature=signature,
                input_example=input_example,
                # Naming the requirements spares MLflow from re-importing TensorFlow.
                pip_requirements=[f"tensorflow=={tf.__version__}", f"keras=={keras.__version__}"],
            )
            store.log_model_artifacts(logged.model_id, str(folder))
    except BaseException:
        try:
            mlflow.finalize_logged_model(logged.model_id, LoggedModelStatus.FAILED)
        except Exception:  # noqa: BLE001, S110 - the store is failing already
            pass
        raise
    mlflow.finalize_logged_model(logged.model_id, LoggedModelStatus.READY)


def run_config(run_id: str) -> str:
    """The resolved config YAML a run was started with."""
    _run(client(), run_id, f"run_id={run_id}")
    return mlflow.artifacts.load_text(f"runs:/{run_id}/config.yaml")


def load_model(run_id: str):
    """The Keras model a run logged, loaded in Keras' safe mode (no code from the artifact)."""
    try:
        return mlflow.keras.load_model(
            f"runs:/{run_id}/model", load_model_kwargs={"safe_mode": True}
        )
    except Exception as err:  # noqa: BLE001
        raise UnknownRun(f"run_id={run_id}: no model logged ({str(err).splitlines()[0]})") from None


def download_checkpoint(run_id: str) -> Path:
    """The run's newest complete checkpoint, whichever way it was saved, in a local folder."""
    tags = _run(client(), run_id, f"trainer.resume={run_id}").data.tags
    path = tags.get(CHECKPOINT_TAG, LEGACY_CHECKPOINT)
    try:
        uri = f"runs:/{run_id}/{path}"
        return Path(mlflow.artifacts.download_artifacts(uri, dst_path=tempfile.mkdtemp()))
    except Exception:  # noqa: BLE001 - MLflow's error for a missing artifact depends on the store
        raise UnknownRun(f"trainer.resume={run_id}: the run saved no checkpoint") from None


def last_step(run_id: str, key: str) -> int:
    """The last step logged for metric `key` of a run; -1 if none."""
    return max((m.step for m in client().get_metric_history(run_id, key)), default=-1)


def curves(run_id: str, keys: tuple[str, ...]) -> pd.DataFrame:
    """A run's logged curves `keys`: a row per step (`epoch`), a column per key."""
    store = client()
    points = [
        {"epoch": m.step, "key": key, "value": m.value}
        for key in keys
        for m in store.get_metric_history(run_id, key)
    ]
    frame = pd.DataFrame(points, columns=["epoch", "key", "value"])
    return frame.pivot_table(index="epoch", columns="key", values="value").reset_index()


@contextmanager
def start_run(
    experiment: str,
    run_name: Optional[str],
    params: dict,
    config_yaml: str,
    fallback_dir: Path,
    resume_run_id: Optional[str] = None,
    tags: Optional[dict[str, str]] = None,
    liveness: tuple[float, float] = (30.0, 600.0),
) -> Iterator[RunLog]:
    """One MLflow run (or `resume_run_id` reopened) that ends FINISHED, FAILED or KILLED, and
    beats every `liveness[0]` seconds while it runs. Runs of its experiment whose heartbeat is
    older than `liveness[1]` seconds are marked vanished first."""
    heartbeat_every, vanished_after = liveness
    store = client()
    if resume_run_id:
        run = _run(store, resume_run_id, f"trainer.resume={resume_run_id}")
        mark_vanished([run.info.experiment_id], vanished_after)
        run = mlflow.start_run(run_id=resume_run_id)
        for tag in {VANISHED_TAG, FAILURE_TAG} & set(run.data.tags):  # it runs again
            store.delete_tag(resume_run_id, tag)
        if tags:  # what this attempt is (a search's trial that took the run over)
            mlflow.set_tags(tags)
    else:
        experiment_id = ensure_experiment(store, experiment)
        mark_vanished([experiment_id], vanished_after)
        run = mlflow.start_run(experiment_id=experiment_id, run_name=run_name, tags=tags)
        drop_inferred_git_tags(run, tags or {})
    run_log = RunLog(run.info.run_id, fallback_dir)
    run_log.checkpoint_slot = run.data.tags.get(CHECKPOINT_TAG)
    status = RunStatus.FAILED
    try:
        with Heartbeat(run.info.run_id, heartbeat_every):
            if not resume_run_id:
                mlflow.log_params(params)
                mlflow.log_text(config_yaml, "config.yaml")
            yield run_log
        status = RunStatus.FINISHED
    except Interrupted:
        status = RunStatus.KILLED
        raise
    except BaseException as err:
        run_log.set_tags({FAILURE_TAG: f"{type(err).__name__}: {err}"[:5000]})
        raise
    finally:
        try:
            run_log.close()
        finally:
            _end_run(run.info.run_id, RunStatus.to_string(status))


def drop_inferred_git_tags(run: Run, given: dict[str, str]) -> None:
    """Delete the git tags MLflow gave a new run and echo did not. MLflow infers them from the
    repository around sys.argv[0]: for an installed echo, whichever repository its environment
    sits in. Which code ran is for echo's provenance to say (provenance.source_tags)."""
    for tag in run.data.tags:
        if tag.startswith(GIT_TAG_PREFIX) and tag not in given:
            mlflow.delete_tag(tag)


def _end_run(run_id: str, status: str) -> None:
    try:
        mlflow.end_run(status)
    except Exception as err:  # noqa: BLE001 - the store is gone; say so, keep the rest
        log.warning("could not mark run %s %s in MLflow (%s)", run_id, status, err)
