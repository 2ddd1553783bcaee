"""Everything echo records in MLflow. No other module imports mlflow."""

from __future__ import annotations

import os
import time
from contextlib import contextmanager
from typing import TYPE_CHECKING, Iterator

import mlflow
import pandas as pd
from mlflow.entities import Metric
from mlflow.tracking import MlflowClient

if TYPE_CHECKING:
    from echo.trainer import History

# MLflow's embedded store: `mlflow ui` started in the same folder shows the runs.
DEFAULT_TRACKING_URI = "sqlite:///mlflow.db"


def tracking_uri() -> str:
    return os.environ.get("MLFLOW_TRACKING_URI") or DEFAULT_TRACKING_URI


class RunLog:
    """Writes one run's records. Curves go in batches: one blocking write per point would cost
    ~6 ms each on sqlite, half a minute over the tutorial's 5,000 epochs."""

    def __init__(self, run_id: str):
        self.run_id = run_id
        self.client = MlflowClient()

    def log_history(self, history: History) -> None:
        now = int(time.time() * 1000)
        metrics = [
            Metric(key, float(value), now, int(epoch))
            for key, values in (("loss", history.loss), ("acc", history.acc))
            for epoch, value in zip(history.epoch, values)
        ]
        self.client.log_batch(self.run_id, metrics=metrics, synchronous=False)

    def log_metrics(self, metrics: dict[str, float]) -> None:
        mlflow.log_metrics(metrics)

    def log_echoes(self, echoes: pd.DataFrame) -> None:
        mlflow.log_table(echoes, artifact_file="echoes.json")

    def log_model(self, model) -> None:
        import keras
        import tensorflow as tf

        # Naming the requirements spares MLflow from re-importing TensorFlow to infer them.
        mlflow.keras.log_model(
            model,
            name="model",
            pip_requirements=[f"tensorflow=={tf.__version__}", f"keras=={keras.__version__}"],
        )


@contextmanager
def start_run(experiment: str, run_name: str | None, params: dict, config_yaml: str) -> Iterator[RunLog]:
    """One MLflow run holding the config; it ends FINISHED, or FAILED if the body raises."""
    mlflow.set_tracking_uri(tracking_uri())
    mlflow.set_experiment(experiment)
    with mlflow.start_run(run_name=run_name) as run:
        mlflow.log_params(params)
        mlflow.log_text(config_yaml, "config.yaml")
        yield RunLog(run.info.run_id)
