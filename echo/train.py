"""`python -m echo.train`: compose the config, train an echo model, score it, log it to MLflow.

    python -m echo.train                                  # the tutorial's first program
    python -m echo.train model=encdec data.n_out=3        # its second, echoing 3 values
    python -m echo.train -m model.units=20,50 trainer.batch_size=7,21
    python -m echo.train trainer.resume=RUN_ID            # continue a stopped run

TensorFlow and MLflow are imported inside `train`, so `--help`, `--cfg job` and config errors
answer without paying for them.
"""

from __future__ import annotations

import gc
import logging
import os
import signal
import subprocess
import sys
import tempfile
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import hydra
from hydra._internal.utils import get_args_parser
from hydra.core.config_store import ConfigStore
from hydra.core.hydra_config import HydraConfig
from hydra.errors import HydraException
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from echo.callbacks import FAILED_MARKER, EchoCallback, preflight, sweep_parent
from echo.config import ConfigError, EchoConfig, flat_params, to_echo_config
from echo.errors import EchoError, Interrupted, RunFailed, SweepFailed, exit_with
from echo.store import PARENT_TAG

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
    X, expected, echoed = (
        X.reshape(-1, n_in)[:count],
        expected.reshape(-1, n_out)[:count],
        echoed.reshape(-1, n_out)[:count],
    )
    return pd.DataFrame(
        {
            "window": [str(w.tolist()) for w in X],
            "expected": [str(e.tolist()) for e in expected],
            "echoed": [str(p.tolist()) for p in echoed],
            "right": (expected == echoed).all(axis=1),
        }
    )


@contextmanager
def absent(*modules: str) -> Iterator[None]:
    """Inside the block, importing `modules` fails as if they were not installed, unless they
    are loaded already (in a notebook, say). For libraries that use them only if they can."""
    blocked = [name for name in modules if name not in sys.modules]
    for name in blocked:
        sys.modules[name] = None  # the import system's mark for "cannot be imported"
    try:
        yield
    finally:
        for name in blocked:
            if sys.modules.get(name, 0) is None:
                del sys.modules[name]


class StopRequests:
    """SIGINT and SIGTERM (Ctrl-C, schedulers, Ray) ask training to stop at the next boundary
    between compiled calls, where a checkpoint is exact. A second Ctrl-C stops at once."""

    def __init__(self):
        self.signal_name: str | None = None

    def __call__(self) -> bool:
        return self.signal_name is not None

    def _handle(self, signum, frame):
        if self.signal_name is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.signal_name = signal.Signals(signum).name
        log.warning(
            "%s received: stopping after the current call, then saving a checkpoint",
            self.signal_name,
        )

    @contextmanager
    def installed(self) -> Iterator[StopRequests]:
        if threading.current_thread() is not threading.main_thread():
            yield self  # signals reach the main thread only; nothing to install here
            return
        previous = {
            sig: signal.signal(sig, self._handle) for sig in (signal.SIGINT, signal.SIGTERM)
        }
        try:
            yield self
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)


def provenance_tags(cfg: EchoConfig, output_dir: Path) -> dict[str, str]:
    """What a user needs to find a run and trust it: what ran, from which code, with what."""
    from importlib.metadata import version

    import tensorflow as tf  # loaded by now

    tags = {
        "echo.model_kind": cfg.model.kind.value,
        "echo.command": " ".join(["python -m echo.train", *sys.argv[1:]])[:5000],
        "echo.output_dir": str(output_dir),
        "echo.data_seed": str(cfg.trainer.seed),
        "echo.weight_seed": str(cfg.trainer.seed),
        # Timings mean little without the machine they were taken on.
        "echo.cpu_count": str(os.cpu_count()),
        "echo.gpus": str(len(tf.config.list_physical_devices("GPU"))),
    }
    for package in ("echo", "tensorflow", "keras", "mlflow", "hydra-core", "numpy"):
        tags[f"echo.version.{package}"] = version(package)
    commit = subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=CONF_DIR.parent, capture_output=True, text=True
    )
    if commit.returncode == 0:
        tags["mlflow.source.git.commit"] = commit.stdout.strip()
    return tags


def train(
    cfg: EchoConfig,
    config_yaml: str = "",
    output_dir: Path | None = None,
    tags: dict[str, str] | None = None,
) -> dict[str, float]:
    """Train and score the model `cfg` describes, recording everything in one MLflow run.

    Returns the run's summary metrics (eval_acc, eval_exact, train_seconds, ...). Whatever the
    tracking store refuses is kept under `output_dir` (Hydra's output folder when run as the CLI).
    `tags` are added to the run's own (a sweep's parent, say). Raises RunFailed when the loss
    diverges, Interrupted when a signal stops training.
    """
    # Keras and MLflow import these whenever they are installed, for scikit-learn wrappers, image
    # galleries and notebook checks: a second or two of every run's start, for nothing echo uses.
    with absent("sklearn", "matplotlib.pyplot", "IPython"):
        return _train(cfg, config_yaml, output_dir, tags)


def _train(
    cfg: EchoConfig, config_yaml: str, output_dir: Path | None, tags: dict[str, str] | None
) -> dict[str, float]:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TensorFlow's C++ start-up chatter
    output_dir = Path(output_dir or tempfile.mkdtemp(prefix="echo-"))
    # Importing TensorFlow and MLflow makes millions of long-lived objects: collecting garbage
    # while they load is slow, and so is walking them again at every later collection and at
    # exit. Load them with the collector off, then move them out of its sight.
    gc.disable()
    import keras
    import tensorflow as tf

    from echo import data, figures, tracking
    from echo.evaluation import score
    from echo.models import build_model, readout_for
    from echo.trainer import Diverged, Trainer

    gc.freeze()
    gc.enable()

    streams = data.streams(cfg.trainer.seed)
    validation = data.sample_windows(streams["validation"], cfg.trainer.eval_sequences, cfg.data)
    X_test, y_test = data.sample_windows(streams["test"], cfg.trainer.eval_sequences, cfg.data)
    train_rng, start_epoch = streams["train"], 0

    config_yaml = config_yaml or OmegaConf.to_yaml(OmegaConf.structured(cfg))
    params = flat_params(cfg)
    run_tags = {**provenance_tags(cfg, output_dir), **(tags or {})}
    with tracking.start_run(
        cfg.mlflow.experiment,
        cfg.mlflow.run_name,
        params,
        config_yaml,
        output_dir / "unlogged",
        cfg.trainer.resume,
        run_tags,
    ) as run:
        # Same seed, same metrics: seed Python, NumPy and Keras, and make TensorFlow's kernels
        # deterministic (no measurable cost for these models here).
        keras.utils.set_random_seed(cfg.trainer.seed)
        tf.config.experimental.enable_op_determinism()
        model = build_model(cfg.model, cfg.data, cfg.trainer.batch_size)
        readout = readout_for(cfg.model, cfg.data)
        trainer = Trainer(model, readout, cfg.data, cfg.trainer)
        if cfg.trainer.resume:
            train_rng, start_epoch = trainer.load_checkpoint(
                tracking.download_checkpoint(cfg.trainer.resume)
            )
            log.info("resuming run %s at epoch %d", cfg.trainer.resume, start_epoch)

        stop = StopRequests()
        try:
            with stop.installed():
                fit = trainer.fit(
                    train_rng, validation, run.log_history, start_epoch, should_stop=stop
                )
        except Diverged as err:
            raise RunFailed(f"run {run.run_id} failed: {err}") from err
        if fit.interrupted:
            checkpoint = output_dir / "checkpoint"
            trainer.save_checkpoint(checkpoint, train_rng, fit.epochs)
            run.log_checkpoint(checkpoint)
            raise Interrupted(
                f"run {run.run_id} stopped by {stop.signal_name} after epoch {fit.epochs}; "
                f"continue it with: python -m echo.train trainer.resume={run.run_id}"
            )

        echoed = trainer.predictor(X_test)
        scores = score(y_test, echoed)
        metrics = {
            "eval_acc": scores.eval_acc,
            "eval_exact": scores.eval_exact,
            "train_seconds": fit.train_seconds,
            "epochs_trained": float(fit.epochs),
            "parameters": float(model.count_params()),
        }
        if fit.epochs_to_target is not None:
            metrics["epochs_to_target"] = float(fit.epochs_to_target)
        run.log_metrics(metrics)

        echoes = echoes_table(X_test, y_test, echoed, cfg.trainer.sample_echoes)
        for row in echoes.itertuples():
            log.info(
                "Expected: %s  Echoed: %s  %s",
                row.expected,
                row.echoed,
                "right" if row.right else "WRONG",
            )
        run.log_echoes(echoes)
        log.info(
            "held-out: eval_acc %.4f  eval_exact %.4f  (%d sequences)  trained %d epochs in %.1f s",
            scores.eval_acc,
            scores.eval_exact,
            cfg.trainer.eval_sequences,
            fit.epochs,
            fit.train_seconds,
        )
        run.log_figure(
            figures.learning_curves(fit.history.epoch, fit.history.loss, fit.history.acc),
            "learning_curves.png",
        )
        run.log_figure(figures.position_accuracy(scores.position_acc), "position_accuracy.png")
        if cfg.mlflow.log_model:
            # A stateful model takes exactly its batch size, so the example is one batch.
            run.log_model(model, X_test.reshape(-1, cfg.data.n_in)[: cfg.trainer.batch_size])
    return metrics


def resumed_config(cfg: EchoConfig) -> tuple[EchoConfig, str]:
    """The config a run to be resumed was started with: resuming continues that run as it was."""
    from echo import tracking

    saved = OmegaConf.create(tracking.run_config(cfg.trainer.resume))
    saved.trainer.resume = cfg.trainer.resume
    resumed = to_echo_config(OmegaConf.merge(OmegaConf.structured(EchoConfig), saved))
    return resumed, OmegaConf.to_yaml(saved)


@hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name="config")
def main(cfg: DictConfig) -> float | None:
    hydra_cfg = HydraConfig.get()
    output_dir = Path(hydra_cfg.runtime.output_dir)
    if hydra_cfg.mode != RunMode.MULTIRUN:
        echo_cfg, config_yaml = job_config(cfg)
        try:
            return train(echo_cfg, config_yaml, output_dir)["eval_exact"]
        except EchoError as err:
            exit_with(err)  # here, before Hydra adds a line of its own
    # In a sweep one failed job must not stop the others: record why it failed, where the
    # sweep's end (echo.callbacks) will find it, and give sweepers no objective. That
    # includes a config error, since a sweeper that draws values (Optuna) is checked per job.
    try:
        echo_cfg, config_yaml = job_config(cfg)
        # A launcher's worker (joblib's, Ray's) has its own command line: name the one that
        # reruns this job alone instead.
        tags = {
            "echo.command": " ".join(["python -m echo.train", *hydra_cfg.overrides.task])[:5000]
        }
        parent = sweep_parent()
        if parent:
            parent_run_id, keys = parent
            tags[PARENT_TAG] = parent_run_id
            swept = [o for o in hydra_cfg.overrides.task if o.split("=", 1)[0].lstrip("+~") in keys]
            if echo_cfg.mlflow.run_name is None and swept:
                tags["mlflow.runName"] = ",".join(swept)  # the run's name says what it varied
        return train(echo_cfg, config_yaml, output_dir, tags)["eval_exact"]
    except Interrupted as err:
        exit_with(err)  # the user stopped the sweep, not one job
    except Exception as err:  # noqa: BLE001 - any failure of one job
        if isinstance(err, ConfigError):
            log.error("job refused: %s", err)
        else:
            log.exception("job failed")
        overrides = ",".join(hydra_cfg.overrides.task)
        reason = str(err).splitlines()[0] if str(err) else type(err).__name__
        (output_dir / FAILED_MARKER).write_text(f"#{hydra_cfg.job.num} {overrides}: {reason}\n")
        # No objective: the Optuna sweeper records the trial as FAILED (a NaN it would take as a
        # value and then fail on), and the basic sweeper ignores what jobs return.
        return None


def job_config(cfg: DictConfig) -> tuple[EchoConfig, str]:
    """The validated config of this job and its YAML; a resumed run's own, when resuming."""
    echo_cfg = to_echo_config(cfg)
    if echo_cfg.trainer.resume:
        return resumed_config(echo_cfg)
    return echo_cfg, OmegaConf.to_yaml(cfg, resolve=True)


def one_line(err: BaseException) -> str:
    """A config error as one line that names the key and the value."""
    if isinstance(err, ConfigError):
        return str(err)
    options = getattr(err, "options", None)
    missing = getattr(err, "missing_cfg_file", None)
    if missing and options is not None:  # an unknown option of a config group
        group, _, name = missing.rpartition("/")
        return f"{group}={name}: no such option; choose from {', '.join(sorted(options))}"
    cause = err.__cause__ if isinstance(err.__cause__, OmegaConfBaseException) else err
    if isinstance(cause, OmegaConfBaseException) and getattr(cause, "full_key", None):
        given = next(
            (
                a.split("=", 1)[1]
                for a in sys.argv[1:]
                if a.lstrip("+~").split("=", 1)[0] == cause.full_key
            ),
            None,
        )
        key = f"{cause.full_key}={given}" if given is not None else cause.full_key
        return f"{key}: {str(cause.msg).splitlines()[0]}"
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    return " ".join(lines[:2])


def app_help(overrides: list[str]) -> str:
    """What `--help` shows: echo's config groups with their options, and the config composed
    from `overrides`.

    Hydra's own help also walks every group of every installed Hydra plugin (launchers,
    sweepers, their samplers), over a second with the scale extra; `--hydra-help` still shows
    Hydra's."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    with initialize_config_dir(str(CONF_DIR), version_base="1.3"):
        config = OmegaConf.to_yaml(compose("config", overrides=overrides))
        loader = GlobalHydra.instance().config_loader()
        groups = [g for g in sorted(loader.list_groups("")) if g != "hydra"]
        options = "\n".join(
            f"  {group}: {', '.join(loader.get_group_options(group))}" for group in groups
        )
    usage = "\n\n".join(__doc__.split("\n\n")[:2])  # the module's first lines: what and how
    return (
        f"{usage}\n\n"
        f"Config groups (group=option):\n{options}\n\n"
        f"The config (override any key: key=value):\n{config}\n"
        "--hydra-help shows Hydra's own options; README.md has the config reference."
    )


def cli() -> None:
    """Hydra's main, with config errors and run failures as one line instead of a traceback.

    HYDRA_FULL_ERROR=1 still shows Hydra's complete error and stack trace.
    """
    full_errors = os.environ.get("HYDRA_FULL_ERROR") == "1"
    os.environ["HYDRA_FULL_ERROR"] = (
        "1"  # let errors reach this function instead of Hydra's printer
    )
    try:
        args = get_args_parser().parse_args(sys.argv[1:])
        if args.help:
            print(app_help(args.overrides))
            return
        preflight(sys.argv[1:], CONF_DIR)
        main()
        if EchoCallback.failed_jobs:
            jobs = EchoCallback.failed_jobs
            raise SweepFailed(f"{len(jobs)} job(s) of the sweep failed: {'; '.join(jobs)}")
    except (ConfigError, HydraException, OmegaConfBaseException) as err:
        if full_errors:
            raise
        print(f"echo: bad config: {one_line(err)}", file=sys.stderr)
        sys.exit(2)
    except EchoError as err:
        exit_with(err)


if __name__ == "__main__":
    cli()
    # TensorFlow leaves a vast object graph behind; collecting it at exit is slow and pointless.
    gc.freeze()
