"""Everything echo records in MLflow. No other module imports mlflow.

Two promises shape it. A run always ends in a true state: FINISHED, FAILED with the reason in
the `echo.failure` tag, or KILLED with a checkpoint to resume from. And nothing is lost when the
store fails mid-run: whatever could not be written is kept in a local folder, and the log says
where.
"""

from __future__ import annotations

import json
import logging
import shutil
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Iterator, Optional

import mlflow
import pandas as pd
from mlflow.entities import Metric, RunStatus
from mlflow.tracking import MlflowClient

from echo.errors import Interrupted
from echo.store import check_reachable, tracking_uri

if TYPE_CHECKING:
    from echo.trainer import History

log = logging.getLogger(__name__)

FAILURE_TAG = "echo.failure"


def prepare(experiments: set[str]) -> None:
    """Create the store's tables and the experiments once, before parallel jobs start: several
    processes creating a fresh sqlite store at once trip over each other's migrations."""
    uri = tracking_uri()
    check_reachable(uri)
    client = MlflowClient(uri)
    for name in sorted(experiments):
        if client.get_experiment_by_name(name) is None:
            client.create_experiment(name)


class RunLog:
    """Writes one run's records; whatever the store refuses is kept in `fallback_dir`."""

    def __init__(self, run_id: str, fallback_dir: Path):
        self.run_id = run_id
        self.client = MlflowClient()
        self.fallback_dir = fallback_dir
        self.curves: list[History] = []
        self.pending = []  # MLflow's futures for the curve writes still under way

    def _keep(self, what: str, err: Exception) -> Path:
        self.fallback_dir.mkdir(parents=True, exist_ok=True)
        log.warning("could not write %s to MLflow (%s); kept in %s", what, str(err).splitlines()[0], self.fallback_dir)
        return self.fallback_dir

    def log_history(self, history: History) -> None:
        """Queue one batch of curve points. One blocking write per point would cost ~6 ms each
        on sqlite, half a minute over the tutorial's 5,000 epochs; MLflow's background writer
        takes the whole batch while training goes on."""
        self.curves.append(history)
        now = int(time.time() * 1000)
        metrics = [
            Metric(key, float(value), now, int(epoch))
            for key, values in (("loss", history.loss), ("acc", history.acc))
            for epoch, value in zip(history.epoch, values)
        ]
        try:
            self.pending.append(self.client.log_batch(self.run_id, metrics=metrics, synchronous=False))
        except Exception as err:  # noqa: BLE001 - any store failure: keep the points locally
            self.pending.append(err)

    def flush(self) -> None:
        """Wait for the queued curve writes; if any failed, keep all curves locally."""
        failures = []
        for operation in self.pending:
            try:
                if isinstance(operation, Exception):
                    raise operation
                operation.wait()
            except Exception as err:  # noqa: BLE001
                failures.append(err)
        self.pending = []
        if failures and self.curves:
            folder = self._keep("the loss and acc curves", failures[0])
            frame = pd.concat(
                [pd.DataFrame({"epoch": h.epoch, "loss": h.loss, "acc": h.acc}) for h in self.curves]
            )
            frame.to_csv(folder / "curves.csv", index=False)

    def log_metrics(self, metrics: dict[str, float]) -> None:
        try:
            mlflow.log_metrics(metrics)
        except Exception as err:  # noqa: BLE001
            (self._keep("the summary metrics", err) / "metrics.json").write_text(json.dumps(metrics, indent=1))

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

    def log_model(self, model) -> None:
        import keras
        import tensorflow as tf

        try:
            # Naming the requirements spares MLflow from re-importing TensorFlow to infer them.
            mlflow.keras.log_model(
                model,
                name="model",
                pip_requirements=[f"tensorflow=={tf.__version__}", f"keras=={keras.__version__}"],
            )
        except Exception as err:  # noqa: BLE001
            model.save(self._keep("the model", err) / "model.keras")

    def log_checkpoint(self, folder: Path) -> None:
        try:
            mlflow.log_artifacts(str(folder), artifact_path="checkpoint")
        except Exception as err:  # noqa: BLE001
            shutil.copytree(folder, self._keep("the checkpoint", err) / "checkpoint", dirs_exist_ok=True)


def run_config(run_id: str) -> str:
    """The resolved config YAML a run was started with."""
    mlflow.set_tracking_uri(tracking_uri())
    return mlflow.artifacts.load_text(f"runs:/{run_id}/config.yaml")


def download_checkpoint(run_id: str) -> Path:
    return Path(mlflow.artifacts.download_artifacts(f"runs:/{run_id}/checkpoint", dst_path=tempfile.mkdtemp()))


@contextmanager
def start_run(
    experiment: str,
    run_name: Optional[str],
    params: dict,
    config_yaml: str,
    fallback_dir: Path,
    resume_run_id: Optional[str] = None,
) -> Iterator[RunLog]:
    """One MLflow run (or `resume_run_id` reopened) that ends FINISHED, FAILED or KILLED."""
    uri = tracking_uri()
    check_reachable(uri)
    mlflow.set_tracking_uri(uri)
    if resume_run_id:
        run = mlflow.start_run(run_id=resume_run_id)
    else:
        mlflow.set_experiment(experiment)
        run = mlflow.start_run(run_name=run_name)
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
        run_log.flush()
        try:
            mlflow.end_run(RunStatus.to_string(status))
        except Exception as err:  # noqa: BLE001 - the store is gone; say so, keep the rest
            log.warning("could not mark run %s %s in MLflow (%s)", run.info.run_id, RunStatus.to_string(status), err)
