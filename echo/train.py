"""`python -m echo.train`: compose the config, train an echo model, score it, log it to MLflow.

    python -m echo.train                                  # the tutorial's first program
    python -m echo.train model=encdec data.n_out=3        # its second, echoing 3 values
    python -m echo.train -m model.units=20,50 trainer.batch_size=7,21

TensorFlow and MLflow are imported inside `train`, so `--help`, `--cfg job` and config errors
answer without paying for them.
"""

from __future__ import annotations

import gc
import logging
import os
import sys
from pathlib import Path

import hydra
from hydra.core.config_store import ConfigStore
from omegaconf import DictConfig, OmegaConf

from echo.config import ConfigError, EchoConfig, flat_params, to_echo_config

# echo runs from its source tree (installed editable), so conf/ sits beside the package and
# `python -m echo.train` finds it from any working directory.
CONF_DIR = Path(__file__).resolve().parent.parent / "conf"

# conf/config.yaml names this schema first in its defaults list; it must be stored before
# Hydra composes.
ConfigStore.instance().store(name="echo_schema", node=EchoConfig)

log = logging.getLogger("echo.train")


def echoes_table(X, expected, echoed, count: int):
    """The first `count` held-out windows with their expected and echoed values."""
    import pandas as pd

    n_in, n_out = X.shape[-1], expected.shape[-1]
    X, expected, echoed = X.reshape(-1, n_in)[:count], expected.reshape(-1, n_out)[:count], echoed.reshape(-1, n_out)[:count]
    return pd.DataFrame(
        {
            "window": [str(w.tolist()) for w in X],
            "expected": [str(e.tolist()) for e in expected],
            "echoed": [str(p.tolist()) for p in echoed],
            "right": (expected == echoed).all(axis=1),
        }
    )


def train(cfg: EchoConfig, config_yaml: str = "") -> dict[str, float]:
    """Train and score the model `cfg` describes, recording everything in one MLflow run.

    Returns the run's summary metrics (eval_acc, eval_exact, train_seconds, ...).
    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TensorFlow's C++ start-up chatter
    # Importing TensorFlow and MLflow makes millions of long-lived objects: collecting garbage
    # while they load costs about a second, and so does walking them again at every later
    # collection and at exit. Load them with the collector off, then move them out of its sight.
    gc.disable()
    import keras
    import tensorflow as tf

    from echo import data, tracking
    from echo.evaluation import Predictor, score
    from echo.models import build_model
    from echo.trainer import Trainer

    gc.freeze()
    gc.enable()

    streams = data.streams(cfg.trainer.seed)
    validation = data.sample_windows(streams["validation"], cfg.trainer.eval_sequences, cfg.data)
    X_test, y_test = data.sample_windows(streams["test"], cfg.trainer.eval_sequences, cfg.data)

    config_yaml = config_yaml or OmegaConf.to_yaml(OmegaConf.structured(cfg))
    with tracking.start_run(cfg.mlflow.experiment, cfg.mlflow.run_name, flat_params(cfg), config_yaml) as run:
        # Same seed, same metrics: seed Python, NumPy and Keras, and make TensorFlow's kernels
        # deterministic (no measurable cost for these models here).
        keras.utils.set_random_seed(cfg.trainer.seed)
        tf.config.experimental.enable_op_determinism()
        model = build_model(cfg.model, cfg.data, cfg.trainer.batch_size)
        fit = Trainer(model, cfg.data, cfg.trainer).fit(streams["train"], validation, on_progress=run.log_history)

        echoed = Predictor(model, cfg.trainer.jit_compile)(X_test)
        scores = score(y_test, echoed)
        metrics = {
            "eval_acc": scores.eval_acc,
            "eval_exact": scores.eval_exact,
            "train_seconds": fit.train_seconds,
            "epochs_trained": float(fit.epochs),
        }
        if fit.epochs_to_target is not None:
            metrics["epochs_to_target"] = float(fit.epochs_to_target)
        run.log_metrics(metrics)

        echoes = echoes_table(X_test, y_test, echoed, cfg.trainer.sample_echoes)
        for row in echoes.itertuples():
            log.info("Expected: %s  Echoed: %s  %s", row.expected, row.echoed, "right" if row.right else "WRONG")
        run.log_echoes(echoes)
        log.info(
            "held-out: eval_acc %.4f  eval_exact %.4f  (%d sequences)  trained %d epochs in %.1f s",
            scores.eval_acc,
            scores.eval_exact,
            cfg.trainer.eval_sequences,
            fit.epochs,
            fit.train_seconds,
        )
        if cfg.mlflow.log_model:
            run.log_model(model)
    return metrics


@hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name="config")
def main(cfg: DictConfig) -> float:
    try:
        echo_cfg = to_echo_config(cfg)
    except ConfigError as err:
        print(f"echo: bad config: {err}", file=sys.stderr)
        sys.exit(2)
    # The sweep objective, for Hydra's sweepers.
    return train(echo_cfg, OmegaConf.to_yaml(cfg, resolve=True))["eval_exact"]


if __name__ == "__main__":
    main()
