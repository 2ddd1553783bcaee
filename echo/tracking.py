"""Everything echo records in MLflow. No other module imports mlflow.

Two promises shape it. A run always ends in a true state: FINISHED, FAILED with the reason in
the `echo.failure` tag, or KILLED with a checkpoint to resume from. And nothing is lost when the
store fails mid-run: whatever could not be written is kept in a local folder, and the log says
where.
"""

from __future__ import annotations

import datetime
import json
import logging
import shutil
import tempfile
import time
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Iterator, Optional

import mlflow
import pandas as pd
from mlflow.entities import Metric, RunStatus
from mlflow.tracking import MlflowClient

from echo.errors import Interrupted, UnknownRun
from echo.store import (
    PARENT_TAG,
    RESULT_METRICS,
    check_reachable,
    tracking_uri,
    without_credentials,
)

if TYPE_CHECKING:
    from echo.trainer import History

log = logging.getLogger(__name__)

FAILURE_TAG = "echo.failure"
# MLflow 3's mark of a model-training experiment, as opposed to a GenAI one. (The 3.17 UI still
# opens on its GenAI / Model training switch; ?workflowType=machine_learning in the URL sets it.)
EXPERIMENT_TAGS = {"mlflow.experimentKind": "custom_model_development"}


def ensure_experiment(client: MlflowClient, name: str) -> str:
    found = client.get_experiment_by_name(name)
    if found is not None:
        return found.experiment_id
    return client.create_experiment(name, tags=EXPERIMENT_TAGS)


def prepare(experiments: set[str]) -> None:
    """Create the store's tables and the experiments once, before parallel jobs start: several
    processes creating a fresh sqlite store at once trip over each other's migrations. The
    caller (echo.callbacks.preflight) has checked that the store answers."""
    client = MlflowClient(tracking_uri())
    for name in sorted(experiments):
        ensure_experiment(client, name)


def start_sweep(experiment: str, overrides: list[str], tags: dict[str, str]) -> str:
    """The parent run of a sweep; its jobs' runs name it in their mlflow.parentRunId tag."""
    client = MlflowClient(tracking_uri())
    run = client.create_run(
        ensure_experiment(client, experiment),
        run_name="sweep " + " ".join(overrides),
        tags={"echo.role": "sweep", "echo.sweep_overrides": " ".join(overrides), **tags},
    )
    return run.info.run_id


def finish_sweep(
    parent_run_id: str, swept_keys: list[str], failed_jobs: list[str] = ()
) -> pd.DataFrame:
    """Give the parent run the sweep's results table, its best job and a chart; end it, FAILED
    if any job failed (`failed_jobs`: why, one line each, for jobs that may have no run)."""
    from echo import figures

    client = MlflowClient(tracking_uri())
    parent = client.get_run(parent_run_id)
    children = client.search_runs(
        [parent.info.experiment_id],
        filter_string=f"tags.`{PARENT_TAG}` = '{parent_run_id}'",
        max_results=10000,
    )
    results = pd.DataFrame(
        [
            {
                "run_id": child.info.run_id,
                "run_name": child.info.run_name,
                "status": child.info.status,
                **{key: child.data.params.get(key) for key in swept_keys},
                **{key: child.data.metrics.get(key) for key in RESULT_METRICS},
            }
            for child in children
        ]
    )
    status = RunStatus.FINISHED
    if len(results):
        client.log_table(parent_run_id, results, "results.json")
        finished = results[results["status"] == "FINISHED"].dropna(subset=["eval_exact"])
        if len(finished):
            best = finished.loc[finished["eval_exact"].idxmax()]
            client.set_tag(parent_run_id, "echo.best_run_id", best["run_id"])
            client.set_tag(parent_run_id, "echo.best_run_name", best["run_name"])
            client.log_metric(parent_run_id, "best_eval_exact", float(best["eval_exact"]))
            numeric = {k: pd.to_numeric(finished[k]) for k in swept_keys if _numeric(finished[k])}
            figure = figures.sweep_chart(finished.assign(**numeric), swept_keys)
            client.log_figure(parent_run_id, figure, "eval_exact_by_sweep.png")
        if (results["status"] != "FINISHED").any():
            status = RunStatus.FAILED
    if failed_jobs:
        client.set_tag(parent_run_id, FAILURE_TAG, "; ".join(failed_jobs)[:5000])
        status = RunStatus.FAILED
    client.set_terminated(parent_run_id, RunStatus.to_string(status))
    return results


def find_sweep(experiment: str, sweep_dir: str) -> Optional[str]:
    """The parent run of the sweep Hydra ran into `sweep_dir`, if it started."""
    client = MlflowClient(tracking_uri())
    found = client.get_experiment_by_name(experiment)
    if found is None:
        return None
    runs = client.search_runs(
        [found.experiment_id],
        filter_string=f"tags.`echo.role` = 'sweep' and tags.`echo.hydra_sweep_dir` = '{sweep_dir}'",
        max_results=1,
    )
    return runs[0].info.run_id if runs else None


def run_facts(run_id: str) -> tuple[str, datetime.datetime, Optional[float]]:
    """A run's experiment, when it started, and how many minutes it lasted (None while it runs)."""
    client = MlflowClient(tracking_uri())
    info = client.get_run(run_id).info
    minutes = (info.end_time - info.start_time) / 60000 if info.end_time else None
    experiment = client.get_experiment(info.experiment_id).name
    return experiment, datetime.datetime.fromtimestamp(info.start_time / 1000), minutes


def runs_frame(
    experiment: Optional[str] = None, parent_run_id: Optional[str] = None
) -> pd.DataFrame:
    """An experiment's runs, or one sweep's jobs, as MLflow's table: params.*, metrics.*, tags.*.
    Sweep parents are left out: they summarise runs, they are not runs of their own."""
    uri = tracking_uri()
    check_reachable(uri)
    client = MlflowClient(uri)
    if parent_run_id:
        try:
            experiment_id = client.get_run(parent_run_id).info.experiment_id
        except Exception:  # noqa: BLE001
            raise UnknownRun(
                f"sweep={parent_run_id}: no such run in {without_credentials(uri)}"
            ) from None
        query = f"tags.`{PARENT_TAG}` = '{parent_run_id}'"
    else:
        found = client.get_experiment_by_name(experiment)
        if found is None:
            raise UnknownRun(
                f"experiment={experiment}: no such experiment in {without_credentials(uri)}"
            )
        experiment_id, query = found.experiment_id, ""
    mlflow.set_tracking_uri(uri)
    runs = mlflow.search_runs([experiment_id], filter_string=query, max_results=100000)
    if "tags.echo.role" in runs:
        runs = runs[runs["tags.echo.role"] != "sweep"]
    return runs


def _numeric(column: pd.Series) -> bool:
    return pd.to_numeric(column, errors="coerce").notna().all()


class RunLog:
    """Writes one run's records; whatever the store refuses is kept in `fallback_dir`."""

    def __init__(self, run_id: str, fallback_dir: Path):
        self.run_id = run_id
        self.client = MlflowClient()
        self.fallback_dir = fallback_dir
        self.curves: list[History] = []
        # One writer thread, so batches land in order while training goes on. Not MLflow's
        # asynchronous logging: its writer waits on its queue in one-second polls, and ending
        # the run waits for the current poll to run out (MLflow 3.17).
        self.writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="echo-curves")
        self.pending: list[Future] = []  # curve writes under way or done

    def _keep(self, what: str, err: Exception) -> Path:
        self.fallback_dir.mkdir(parents=True, exist_ok=True)
        log.warning(
            "could not write %s to MLflow (%s); kept in %s",
            what,
            str(err).splitlines()[0],
            self.fallback_dir,
        )
        return self.fallback_dir

    def log_history(self, history: History) -> None:
        """Queue one batch of curve points. One blocking write per point would cost ~6 ms each
        on sqlite, half a minute over the tutorial's 5,000 epochs; the writer thread takes the
        whole batch in one call while training goes on."""
        self.curves.append(history)
        now = int(time.time() * 1000)
        metrics = [
            Metric(key, float(value), now, int(epoch))
            for key, values in (("loss", history.loss), ("acc", history.acc))
            for epoch, value in zip(history.epoch, values, strict=True)
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
            folder = self._keep("the loss and acc curves", failures[0])
            frame = pd.concat(
                [
                    pd.DataFrame({"epoch": h.epoch, "loss": h.loss, "acc": h.acc})
                    for h in self.curves
                ]
            )
            frame.to_csv(folder / "curves.csv", index=False)

    def close(self) -> None:
        """Flush, then end the writer thread, whatever the flush meets (a second Ctrl-C, a
        full disk for the fallback copy)."""
        try:
            self.flush()
        finally:
            self.writer.shutdown(cancel_futures=True)

    def log_metrics(self, metrics: dict[str, float]) -> None:
        try:
            mlflow.log_metrics(metrics)
        except Exception as err:  # noqa: BLE001
            (self._keep("the summary metrics", err) / "metrics.json").write_text(
                json.dumps(metrics, indent=1)
            )

    def set_tags(self, tags: dict[str, str]) -> None:
        try:
            mlflow.set_tags(tags)
        except Exception as err:  # noqa: BLE001
            (self._keep("the tags", err) / "tags.json").write_text(json.dumps(tags, indent=1))

    def log_echoes(self, echoes: pd.DataFrame) -> None:
        try:
            mlflow.log_table(echoes, artifact_file="echoes.json")
        except Exception as err:  # noqa: BLE001
            echoes.to_csv(self._keep("the echoes table", err) / "echoes.csv", index=False)

    def log_figure(self, figure, name: str) -> None:
        try:
            mlflow.log_figure(figure, name)
        except Exception as err:  # noqa: BLE001
            figure.savefig(self._keep(f"the figure {name}", err) / name)

    def log_model(self, model, input_example) -> None:
        """Log the Keras model as the run's MLflow model `model`, with a signature and an input
        example, so that mlflow.keras.load_model and mlflow.pyfunc.load_model both take it.

        Saved first and logged second, rather than by mlflow.keras.log_model: with an input
        example that writes the example before making the folder it goes in, and fails (MLflow
        3.17 and 3.18)."""
        import keras
        import numpy as np
        import tensorflow as tf
        from mlflow.entities import LoggedModelStatus
        from mlflow.models import ModelSignature
        from mlflow.types import Schema, TensorSpec

        def spec(tensor):  # any number of rows, whatever batch size a stateful model was built for
            return Schema([TensorSpec(np.dtype(tensor.dtype), (-1, *tensor.shape[1:]))])

        logged = None
        try:
            # From the model's shapes: inferring it from a prediction would cost a traced call.
            signature = ModelSignature(inputs=spec(model.inputs[0]), outputs=spec(model.outputs[0]))
            logged = mlflow.initialize_logged_model(name="model", source_run_id=self.run_id)
            with tempfile.TemporaryDirectory() as tmp:
                folder = Path(tmp) / "model"
                folder.mkdir()
                mlflow.keras.save_model(
                    model,
                    str(folder),
                    signature=signature,
                    input_example=input_example,
                    # Naming the requirements spares MLflow from re-importing TensorFlow.
                    pip_requirements=[
                        f"tensorflow=={tf.__version__}",
                        f"keras=={keras.__version__}",
                    ],
                )
                self.client.log_model_artifacts(logged.model_id, str(folder))
            mlflow.finalize_logged_model(logged.model_id, LoggedModelStatus.READY)
        except Exception as err:  # noqa: BLE001
            if logged is not None:
                try:
                    mlflow.finalize_logged_model(logged.model_id, LoggedModelStatus.FAILED)
                except Exception:  # noqa: BLE001, S110 - the store is failing already
                    pass
            model.save(self._keep("the model", err) / "model.keras")

    def log_checkpoint(self, folder: Path) -> None:
        try:
            mlflow.log_artifacts(str(folder), artifact_path="checkpoint")
        except Exception as err:  # noqa: BLE001
            shutil.copytree(
                folder, self._keep("the checkpoint", err) / "checkpoint", dirs_exist_ok=True
            )


def run_config(run_id: str) -> str:
    """The resolved config YAML a run was started with."""
    uri = tracking_uri()
    check_reachable(uri)
    mlflow.set_tracking_uri(uri)
    try:
        MlflowClient(uri).get_run(run_id)
    except Exception:  # noqa: BLE001 - MLflow's error for a missing run depends on the store
        raise UnknownRun(f"run_id={run_id}: no such run in {without_credentials(uri)}") from None
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
    return Path(
        mlflow.artifacts.download_artifacts(
            f"runs:/{run_id}/checkpoint", dst_path=tempfile.mkdtemp()
        )
    )


@contextmanager
def start_run(
    experiment: str,
    run_name: Optional[str],
    params: dict,
    config_yaml: str,
    fallback_dir: Path,
    resume_run_id: Optional[str] = None,
    tags: Optional[dict[str, str]] = None,
) -> Iterator[RunLog]:
    """One MLflow run (or `resume_run_id` reopened) that ends FINISHED, FAILED or KILLED."""
    uri = tracking_uri()
    check_reachable(uri)
    mlflow.set_tracking_uri(uri)
    if resume_run_id:
        run = mlflow.start_run(run_id=resume_run_id)
    else:
        experiment_id = ensure_experiment(MlflowClient(uri), experiment)
        run = mlflow.start_run(experiment_id=experiment_id, run_name=run_name, tags=tags)
    run_log = RunLog(run.info.run_id, fallback_dir)
    status = RunStatus.FAILED
    try:
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
            try:
                mlflow.end_run(RunStatus.to_string(status))
            except Exception as err:  # noqa: BLE001 - the store is gone; say so, keep the rest
                log.warning(
                    "could not mark run %s %s in MLflow (%s)",
                    run.info.run_id,
                    RunStatus.to_string(status),
                    err,
                )
