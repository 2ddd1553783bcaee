"""Runs started from Python, many to a process (a notebook, the study, a basic-launcher
sweep): each leaves nothing behind, and the process stays as it was for what comes next."""

import gc
import logging
import subprocess
import sys
import weakref

from conftest import TINY, compose_config

from echo import train as echo_train
from echo import trainer as echo_trainer


def test_runs_in_one_process_leave_no_model_alive_and_trace_without_warnings(
    tracking_uri, monkeypatch
):
    made = []
    build = echo_trainer.Trainer.__init__

    def remember(self, *args, **kwargs):
        build(self, *args, **kwargs)
        made.append((weakref.ref(self), weakref.ref(self.model)))

    monkeypatch.setattr(echo_trainer.Trainer, "__init__", remember)
    warnings = []
    handler = logging.Handler(logging.WARNING)
    handler.emit = lambda record: warnings.append(record.getMessage())
    tensorflow_log = logging.getLogger("tensorflow")
    tensorflow_log.addHandler(handler)
    try:
        cfg = compose_config([*TINY, "mlflow.log_model=false"])
        for _ in range(7):  # TensorFlow warns of retracing from its fifth trace of a function
            echo_train.train(cfg)
    finally:
        tensorflow_log.removeHandler(handler)
    gc.collect()
    assert len(made) == 7 and all(t() is None and m() is None for t, m in made)
    assert not [w for w in warnings if "retracing" in w], warnings


def test_a_notebook_can_use_scikit_learn_after_a_run(tmp_path):
    """A fresh interpreter, as a notebook's kernel: train(), then Keras' scikit-learn wrapper,
    which must find scikit-learn installed."""
    program = f"""
import os
os.environ["MLFLOW_TRACKING_URI"] = "sqlite:///{tmp_path / "mlflow.db"}"
from hydra import compose, initialize_config_dir
from echo.config import CONF_DIR, register_schema, to_echo_config
from echo.train import train
register_schema()
with initialize_config_dir(str(CONF_DIR), version_base="1.3"):
    cfg = to_echo_config(compose("config", overrides={[*TINY, "mlflow.log_model=false"]!r}))
train(cfg)
import keras
from keras.wrappers import SKLearnClassifier
SKLearnClassifier(model=lambda X, y: keras.Sequential([keras.layers.Dense(2)]))
print("wrapper made")
"""
    result = subprocess.run(
        [sys.executable, "-c", program], cwd=tmp_path, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0 and "wrapper made" in result.stdout, result.stderr[-3000:]
