"""One run: prepare the data and model, fit, then score on the test set and record.

    python -m echo.train                                  # the tutorial's first program
    python -m echo.train model=encdec data.n_out=3        # its second, echoing 3 values
    python -m echo.train -m model.units=20,50 trainer.batch_size=7,21
    python -m echo.train trainer.resume=RUN_ID            # continue a stopped run

The command line is echo.cli's; `train(cfg)` is the same run for a notebook or a script.
TensorFlow and MLflow are imported inside `train`, so `--help`, `--cfg job` and config errors
answer without paying for them.
"""

from __future__ import annotations

import dataclasses
import logging
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional

from omegaconf import DictConfig, OmegaConf

from echo.config import EchoConfig, flat_params, from_saved, to_echo_config
from echo.environment import keras_on_tensorflow
from echo.errors import Interrupted, RunFailed, in_run

log = logging.getLogger("echo.train")


@dataclass
class Job:
    """What `prepare` makes and the later steps use."""

    cfg: EchoConfig
    run: Any  # echo.tracking.RunLog
    model: Any  # keras.Model
    trainer: Any  # echo.trainer.Trainer
    streams: dict  # the seeded random streams, by name (echo.data.STREAMS)
    start_epoch: int  # 0, or where a checkpoint left off
    output_dir: Path
    validation: Any = None  # the validation windows (X, y), drawn once for the whole run
    seconds_before: float = 0.0  # training the checkpoint resumed from took
    # The last steps logged of the loss and val_exact curves: a run resumed from a periodic
    # checkpoint trains again through epochs it may have logged before it was killed.
    logged_through: tuple[int, int] = (-1, -1)
    # Asked at each validation with the epoch and the val_* scores; true stops training there.
    prune: Optional[Callable[[int, dict[str, float]], bool]] = None


class Trained(dict):
    """What `train` returns: the run's summary metrics, a dict as ever, `run_id`, and whether
    a search pruned it."""

    run_id: str = ""
    pruned: bool = False


def train(
    cfg: EchoConfig,
    config_yaml: str = "",
    output_dir: Optional[Path] = None,
    tags: Optional[dict[str, str]] = None,
    progress=None,
    prune: Optional[Callable[[int, dict[str, float]], bool]] = None,
) -> Trained:
    """Train and score the model `cfg` describes, recording everything in one MLflow run.

    Returns the run's summary metrics (val_exact, eval_exact, train_seconds, ...): validation
    scores to choose by, test scores to report; their `run_id` names the run. Whatever the
    tracking store refuses is kept under `output_dir` (Hydra's output folder when run as the CLI).
    `tags` are added to the run's own (a sweep's parent, say). `progress` shows training's
    progress (echo.progress: log lines unless given a bar). `prune(epoch, scores)` is asked at
    each validation (a search's pruner): when it answers true, training stops there, the test
    set is scored as usual, and the run ends FINISHED, tagged `echo.pruned`. Raises RunFailed
    when the loss diverges, Interrupted when a signal stops training; either names the run in
    `run_id`.
    Raises WrongBackend before anything starts when Keras is asked for a backend other than
    TensorFlow.
    """
    with keras_on_tensorflow():  # before MLflow or the provenance tags import Keras
        from echo import tracking
        from echo.progress import Lines
        from echo.provenance import provenance_tags

        output_dir = Path(output_dir or tempfile.mkdtemp(prefix="echo-"))
        config_yaml = config_yaml or OmegaConf.to_yaml(OmegaConf.structured(cfg))
        run_tags = {**provenance_tags(cfg, output_dir), **(tags or {})}
        with tracking.start_run(
            cfg.mlflow.experiment,
            cfg.mlflow.run_name,
            flat_params(cfg),
            config_yaml,
            output_dir / "unlogged",
            cfg.trainer.resume,
            run_tags,
            (cfg.mlflow.heartbeat_every, cfg.mlflow.vanished_after),
        ) as run:
            with in_run(run.run_id), progress or Lines() as shown:
                job = prepare(cfg, run, output_dir)
                job.trainer.progress = shown
                job.prune = prune
                result = fit(job)
                trained = Trained(score_and_record(job, result))
                trained.run_id, trained.pruned = run.run_id, result.pruned
                return trained


def prepare(cfg: EchoConfig, run, output_dir: Path) -> Job:
    """Seed everything, build the model and its trainer, and restore a checkpoint when
    resuming."""
    import keras
    import tensorflow as tf

    from echo import data, tracking
    from echo.models import build_model, readout_for
    from echo.trainer import Trainer

    # Same seed, same metrics: seed Python, NumPy and Keras, and make TensorFlow's kernels
    # deterministic (no measurable cost for these models here).
    keras.utils.set_random_seed(cfg.trainer.seed)
    tf.config.experimental.enable_op_determinism()
    model = build_model(cfg.model, cfg.data, cfg.trainer.batch_size)
    trainer = Trainer(model, readout_for(cfg.model, cfg.data), cfg.data, cfg.trainer)
    streams = data.streams(cfg.trainer.seed)
    validation = data.sample_windows(streams["validation"], cfg.trainer.eval_sequences, cfg.data)
    job = Job(cfg, run, model, trainer, streams, 0, output_dir, validation)
    if cfg.trainer.resume:
        checkpoint = tracking.download_checkpoint(cfg.trainer.resume)
        job.streams["train"], job.start_epoch, job.seconds_before = trainer.load_checkpoint(
            checkpoint
        )
        job.logged_through = tuple(
            tracking.last_step(cfg.trainer.resume, key) for key in ("loss", "val_exact")
        )
        log.info("resuming run %s at epoch %d", cfg.trainer.resume, job.start_epoch)
    return job


def save_checkpoint(job: Job, epochs: int, seconds: float) -> None:
    """Save what resuming needs into the run: by a signal, or every trainer.checkpoint_every."""
    started = time.perf_counter()
    folder = job.output_dir / "checkpoint"
    job.trainer.save_checkpoint(folder, job.streams["train"], epochs, job.seconds_before + seconds)
    job.run.log_checkpoint(folder, epochs)
    log.info(
        "checkpoint after epoch %d saved in %.0f ms", epochs, 1000 * (time.perf_counter() - started)
    )


def fit(job: Job):
    """Train on the training stream, checking the validation stream; never the test stream.
    A stop request saves a checkpoint and raises Interrupted."""
    import pandas as pd

    from echo import tracking
    from echo.stopping import StopRequests
    from echo.trainer import Diverged

    run = job.run
    validation = job.validation

    loss_through, val_through = job.logged_through

    def record(history) -> None:
        curves = pd.DataFrame(dataclasses.asdict(history))
        run.log_history(curves[curves["epoch"] > loss_through])

    def validated(epoch: int, scores) -> bool:  # the val_* curves; their last point is the run's
        point = {"val_acc": scores.eval_acc, "val_exact": scores.eval_exact}
        if epoch > val_through:
            run.log_history(pd.DataFrame([{"epoch": epoch, **point}]), "validation.csv")
        return job.prune is not None and job.prune(epoch, point)

    def checkpoint(epochs: int, seconds: float) -> None:
        save_checkpoint(job, epochs, seconds)

    stop = StopRequests()
    try:
        with stop.installed():
            result = job.trainer.fit(
                job.streams["train"],
                validation,
                record,
                job.start_epoch,
                stop,
                validated,
                checkpoint,
            )
    except Diverged as err:
        raise RunFailed(f"run {run.run_id} failed: {err}") from err
    if result.interrupted:
        save_checkpoint(job, result.epochs, result.train_seconds)
        raise Interrupted(
            f"run {run.run_id} stopped by {stop.signal_name} after epoch {result.epochs}; "
            f"continue it with: python -m echo.train trainer.resume={run.run_id}"
        )
    if result.pruned:
        run.set_tags({tracking.PRUNED_TAG: "true"})
    return result


def score_and_record(job: Job, result) -> dict[str, float]:
    """Score the trained model once on windows of the test stream, drawn now that training is
    over, and record the scores beside validation's, the sample echoes, the figures and the
    model."""
    from echo import data, figures
    from echo.evaluation import echoes_table, score

    cfg, run = job.cfg, job.run
    X_test, y_test = data.sample_windows(job.streams["test"], cfg.trainer.eval_sequences, cfg.data)
    echoed = job.trainer.predictor(X_test)
    scores = score(y_test, echoed)
    metrics = {
        "eval_acc": scores.eval_acc,
        "eval_exact": scores.eval_exact,
        "train_seconds": job.seconds_before + result.train_seconds,  # the whole run's
        "epochs_trained": float(result.epochs),
        "parameters": float(job.model.count_params()),
    }
    if result.epochs_to_target is not None:
        metrics["epochs_to_target"] = float(result.epochs_to_target)
    if cfg.data.pad_incomplete:
        metrics.update(full_window_scores(job, X_test, y_test, echoed))
    run.log_metrics(metrics)
    # Logged as the last points of their curves already.
    metrics.update(val_acc=result.validation.eval_acc, val_exact=result.validation.eval_exact)

    echoes = echoes_table(X_test, y_test, echoed, cfg.trainer.sample_echoes)
    for row in echoes.itertuples():
        verdict = "right" if row.right else "WRONG"
        log.info("Expected: %s  Echoed: %s  %s", row.expected, row.echoed, verdict)
    run.log_echoes(echoes)
    log.info(
        "validation: val_acc %.4f  val_exact %.4f  held-out test: eval_acc %.4f  eval_exact %.4f"
        "  (%d sequences each)  trained %d epochs in %.1f s",
        result.validation.eval_acc,
        result.validation.eval_exact,
        scores.eval_acc,
        scores.eval_exact,
        cfg.trainer.eval_sequences,
        result.epochs,
        metrics["train_seconds"],
    )
    run.log_figure(learning_curves(job, result.history), "learning_curves.png")
    run.log_figure(figures.position_accuracy(scores.position_acc), "position_accuracy.png")
    if cfg.mlflow.log_model:
        # A stateful model takes exactly its batch size, so the example is one batch.
        run.log_model(job.model, X_test.reshape(-1, cfg.data.n_in)[: cfg.trainer.batch_size])
        run.log_echo_model(job.model, OmegaConf.to_yaml(OmegaConf.structured(cfg)))
    return metrics


def full_window_scores(job: Job, X_test, y_test, echoed_test) -> dict[str, float]:
    """A padded run's scores on its full windows only, of validation and test: the windows an
    unpadded run of the same data is scored on, so that the two compare on equal terms."""
    from echo.evaluation import full_windows, score

    X_val, y_val = job.validation
    echoed_val = job.trainer.predictor(X_val)
    val = score(y_val[full_windows(X_val)], echoed_val[full_windows(X_val)])
    test = score(y_test[full_windows(X_test)], echoed_test[full_windows(X_test)])
    return {
        "val_full_acc": val.eval_acc,
        "val_full_exact": val.eval_exact,
        "eval_full_acc": test.eval_acc,
        "eval_full_exact": test.eval_exact,
    }


def learning_curves(job: Job, history):
    """The loss and acc curves of the whole run: a resumed run's earlier epochs come from its
    store, this segment's from `history`."""
    from echo import figures, tracking

    if job.start_epoch:
        job.run.flush()  # this segment's points are in the store too
        logged = tracking.curves(job.run.run_id, ("loss", "acc"))
        return figures.learning_curves(logged["epoch"], logged["loss"], logged["acc"])
    return figures.learning_curves(history.epoch, history.loss, history.acc)


def job_config(cfg: DictConfig) -> tuple[EchoConfig, str]:
    """The validated config of this job and its YAML; a resumed run's own, when resuming."""
    echo_cfg = to_echo_config(cfg)
    if echo_cfg.trainer.resume:
        return resumed_config(echo_cfg)
    return echo_cfg, OmegaConf.to_yaml(cfg, resolve=True)


def resumed_config(cfg: EchoConfig) -> tuple[EchoConfig, str]:
    """The config a run to be resumed was started with: resuming continues that run as it was."""
    from echo import tracking

    saved = tracking.run_config(cfg.trainer.resume)
    resumed = from_saved(saved)
    resumed.trainer.resume = cfg.trainer.resume
    return resumed, OmegaConf.to_yaml(OmegaConf.structured(resumed))


if __name__ == "__main__":
    from echo.cli import command

    command()
