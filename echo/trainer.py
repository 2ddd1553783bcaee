"""The tutorial's training loop, compiled.

The tutorial calls `model.fit` once per random sequence and resets state after it. Each call
costs ~100 ms of Keras overhead for a few ms of work, so here one compiled TensorFlow function
runs many weight updates per call, over windows drawn ahead by numpy, and resets stateful
layers in-graph at each sequence boundary. The semantics stay the tutorial's: a fresh sequence
per epoch, its windows in order, unshuffled, the same batch size and the same number of updates.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

import keras
import numpy as np
import tensorflow as tf

from echo import data as echo_data
from echo.config import PAD, DataConfig, TrainerConfig, windows_per_sequence
from echo.evaluation import (
    Predictor,
    Scores,
    check_target,
    of_this_instance,
    reset_states,
    score,
)
from echo.models import Readout, state_variables
from echo.progress import Lines, Point

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Schedule:
    """How a stream of sequences maps onto weight updates and metric records.

    A batch either divides a sequence's windows (the tutorial: 21 windows, batch 7, 3 updates
    per epoch, one record per epoch) or spans whole sequences (batch 42: one update per 2
    epochs, one record per update).
    """

    windows: int  # windows per sequence
    batch_size: int

    @property
    def steps_per_record(self) -> int:
        return max(1, self.windows // self.batch_size)

    @property
    def epochs_per_record(self) -> int:
        return max(1, self.batch_size // self.windows)

    def epochs_per_call(self, log_every: int) -> int:
        # Whole records per call, so that no update straddles two calls.
        return -(-log_every // self.epochs_per_record) * self.epochs_per_record


@dataclass
class History:
    """Training metrics, one row per record; `epoch` is the last epoch (0-based) each covers."""

    epoch: np.ndarray
    loss: np.ndarray
    acc: np.ndarray


@dataclass
class FitResult:
    history: History  # this call's records only, when resumed from a checkpoint
    epochs: int  # epochs done (fewer than asked when the target was met or it was stopped)
    epochs_to_target: Optional[int]  # epochs trained when validation first met target_exact
    train_seconds: float
    interrupted: bool = False  # stopped on request before the last epoch
    validation: Optional[Scores] = None  # the whole validation set at the last epoch trained
    pruned: bool = False  # on_validation asked to stop there (a search pruning the run)


class Diverged(RuntimeError):
    """The training loss became NaN or infinite."""

    def __init__(self, epoch: int, loss: float):
        super().__init__(f"loss became {loss} at epoch {epoch}")
        self.epoch = epoch


# Called after every compiled call with that call's records: a place to log them as they come.
ProgressCallback = Callable[[History], None]
# Called with the (0-based) epoch and the whole validation set's scores, at each validation;
# a true answer stops training there (a search pruning an unpromising run).
ValidationCallback = Callable[[int, Scores], Optional[bool]]
# Called with the epochs done and the seconds trained so far, when a checkpoint is due.
CheckpointCallback = Callable[[int, float], None]


def make_optimizer(trainer: TrainerConfig) -> keras.optimizers.Optimizer:
    return keras.optimizers.get(
        {"class_name": trainer.optimizer.value, "config": {"learning_rate": trainer.learning_rate}}
    )


class Trainer:
    def __init__(
        self, model: keras.Model, readout: Readout, data: DataConfig, trainer: TrainerConfig
    ):
        self.model, self.readout, self.data, self.cfg = model, readout, data, trainer
        self.schedule = Schedule(windows_per_sequence(data), trainer.batch_size)
        self.optimizer = make_optimizer(trainer)
        self.optimizer.build(model.trainable_variables)
        self.states = state_variables(model)
        # The loop is written as graph ops (tf.while_loop), not as Python for AutoGraph to
        # rewrite: that rewriting is paid at every run's start, in tracing.
        self._train = tf.function(
            of_this_instance(self._train_steps), jit_compile=trainer.jit_compile, autograph=False
        )
        # Scores validation for target_exact, and then the held-out test set: one traced
        # function for both, as they have the same shape.
        self.predictor = Predictor(model, readout, trainer.jit_compile)
        # Where `fit` shows its progress between calls (echo.progress): log lines unless the
        # caller gives a bar.
        self.progress: Lines = Lines()

    def _train_steps(self, batches, targets, keep, n_steps):
        """Run the first `n_steps` of the (padded) batches; return each step's loss and acc."""
        weights = self.model.trainable_variables

        def step(i, losses, accs):
            for variable in self.states:  # keep = 0 at the start of each sequence
                variable.assign(variable * keep[i])
            # Padded windows' PAD targets are not values to echo: they weigh nothing.
            real = tf.cast(targets[i] != PAD, tf.float32)
            n_real = tf.maximum(tf.reduce_sum(real), 1.0)
            with tf.GradientTape() as tape:
                outputs = self.model(batches[i], training=True)
                loss = tf.reduce_sum(self.readout.losses(targets[i], outputs) * real) / n_real
            self.optimizer.apply(tape.gradient(loss, weights), weights)
            right = tf.cast(self.readout.decode(outputs) == targets[i], tf.float32)
            return i + 1, losses.write(i, loss), accs.write(i, tf.reduce_sum(right * real) / n_real)

        empty = (tf.TensorArray(tf.float32, size=n_steps), tf.TensorArray(tf.float32, size=n_steps))
        _, losses, accs = tf.while_loop(lambda i, *_: i < n_steps, step, (tf.constant(0), *empty))
        return losses.stack(), accs.stack()

    def _batches(self, X: np.ndarray, y: np.ndarray, n_steps: int):
        """Windows of consecutive sequences, in order, cut into `n_steps` padded batches."""
        B = self.schedule.batch_size
        flat_X = X.reshape(-1, B, self.data.n_in)
        flat_y = y.reshape(-1, B, self.data.n_out)
        pad = n_steps - len(flat_X)
        if pad:  # the last call is shorter; pad it so the compiled function keeps one shape
            flat_X = np.concatenate([flat_X, np.zeros((pad, *flat_X.shape[1:]), flat_X.dtype)])
            flat_y = np.concatenate([flat_y, np.zeros((pad, *flat_y.shape[1:]), flat_y.dtype)])
        keep = (np.arange(n_steps) % self.schedule.steps_per_record != 0).astype(np.float32)
        return flat_X, flat_y, keep

    def fit(
        self,
        train_rng: np.random.Generator,
        validation: Optional[tuple[np.ndarray, np.ndarray]] = None,
        on_progress: Optional[ProgressCallback] = None,
        start_epoch: int = 0,
        should_stop: Callable[[], bool] = lambda: False,
        on_validation: Optional[ValidationCallback] = None,
        on_checkpoint: Optional[CheckpointCallback] = None,
    ) -> FitResult:
        """Train from `start_epoch` (0, or where a checkpoint left off) to trainer.epochs,
        scoring the `validation` windows (when given) every trainer.validate_every epochs and
        at the end.

        Stops early when validation meets trainer.target_exact, when `on_validation` answers
        true (FitResult.pruned), or between two calls when `should_stop()` says so
        (FitResult.interrupted). Raises Diverged on a NaN or inf loss.
        Between calls, once trainer.checkpoint_every seconds have passed since the last, asks
        `on_checkpoint` to save one.
        """
        total, per_call = self._plan()
        records: list[History] = []
        done, epochs_to_target, last, pruned = start_epoch, None, None, False
        start = saved = time.perf_counter()
        while done < total and not should_stop():
            record = self._train_call(train_rng, done, min(per_call, total - done), per_call)
            records.append(record)
            previous, done = done, done + len(record.epoch) * self.schedule.epochs_per_record
            if on_progress is not None:
                on_progress(record)
            bad = ~np.isfinite(record.loss)
            if bad.any():
                raise Diverged(int(record.epoch[bad][0]), float(record.loss[bad][0]))
            last = self._validate(validation, previous, done, total)
            reached = self._reached(validation, last)
            if reached is not None and reached.eval_exact >= self.cfg.target_exact:
                epochs_to_target, last = done, reached  # a met target was scored in full
            if last is not None and on_validation is not None:  # pruning stops a run early only
                pruned = on_validation(done - 1, last) and done < total and not epochs_to_target
            self._report(record, done, total, last if last is not None else reached, start)
            if epochs_to_target is not None:
                log.info("validation reached trainer.target_exact=%s", self.cfg.target_exact)
                break
            if pruned:
                log.info("stopped after epoch %d: pruned on validation", done)
                break
            if self._checkpoint_due(saved) and on_checkpoint is not None and done < total:
                on_checkpoint(done, time.perf_counter() - start)
                saved = time.perf_counter()
        interrupted = done < total and epochs_to_target is None and not pruned
        if not interrupted and last is None and validation is not None:  # nothing was left
            last = self._full_validation(validation)
            if on_validation is not None:
                on_validation(done - 1, last)
        fields = ("epoch", "loss", "acc")
        history = History(
            *(np.concatenate([getattr(r, f) for r in records] or [np.zeros(0)]) for f in fields)
        )
        train_seconds = time.perf_counter() - start
        return FitResult(history, done, epochs_to_target, train_seconds, interrupted, last, pruned)

    def _checkpoint_due(self, saved: float) -> bool:
        every = self.cfg.checkpoint_every
        return every is not None and time.perf_counter() - saved >= every

    def _plan(self) -> tuple[int, int]:
        """The epochs to train in all (whole records) and per compiled call."""
        cfg, per_record = self.cfg, self.schedule.epochs_per_record
        total = -(-cfg.epochs // per_record) * per_record
        if total != cfg.epochs:
            log.info(
                "training %d epochs: a batch of %d spans %d whole sequences",
                total,
                cfg.batch_size,
                per_record,
            )
        return total, min(self.schedule.epochs_per_call(cfg.log_every), total)

    def _train_call(self, train_rng, done: int, epochs: int, per_call: int) -> History:
        """One compiled call over `epochs` fresh sequences; their records."""
        schedule = self.schedule
        X, y = echo_data.sample_windows(train_rng, epochs, self.data)
        n_steps = epochs // schedule.epochs_per_record * schedule.steps_per_record
        steps_per_call = per_call // schedule.epochs_per_record * schedule.steps_per_record
        batches, targets, keep = self._batches(X, y, steps_per_call)
        loss, acc = self._train(batches, targets, keep, tf.constant(n_steps))
        reset_states(self.model)  # the next call starts a fresh sequence
        return self._records(done, loss.numpy()[:n_steps], acc.numpy()[:n_steps])

    def _validate(self, validation, previous: int, done: int, total: int) -> Optional[Scores]:
        """Full validation scores when this call crossed a multiple of validate_every or ended
        training; None otherwise."""
        every = self.cfg.validate_every
        if validation is None:
            return None
        if done // every > previous // every or done >= total:
            return self._full_validation(validation)
        return None

    def _full_validation(self, validation) -> Scores:
        scores = score(validation[1], self.predictor(validation[0]))
        reset_states(self.model)
        return scores

    def _reached(self, validation, scored: Optional[Scores]) -> Optional[Scores]:
        """Scores enough to tell whether trainer.target_exact is met (the full ones when they
        exist), or None without a target. A partial check is for stopping only."""
        if self.cfg.target_exact is None or validation is None:
            return None
        if scored is not None:
            return scored
        checked = check_target(self.predictor, *validation, self.cfg.target_exact)
        reset_states(self.model)
        return checked

    def _report(self, record: History, done: int, total: int, scores, start: float) -> None:
        began = done - len(record.epoch) * self.schedule.epochs_per_record
        self.progress.show(
            Point(
                began,
                done,
                total,
                float(record.loss[-1]),
                float(record.acc[-1]),
                None if scores is None else scores.eval_exact,
                None if scores is None else scores.windows,
                time.perf_counter() - start,
                self.cfg.target_exact,
            )
        )

    def save_checkpoint(
        self,
        folder: Path,
        train_rng: np.random.Generator,
        epochs_done: int,
        train_seconds: float = 0.0,
    ) -> None:
        """What resuming needs to continue exactly where training stopped: weights, optimizer
        moments, the training data stream's position, the epochs done and the seconds they took.
        Saved only between calls, where every sequence is complete and stateful layers are
        reset."""
        folder.mkdir(parents=True, exist_ok=True)
        self.model.save_weights(folder / "model.weights.h5")
        np.savez(folder / "optimizer.npz", *[v.numpy() for v in self.optimizer.variables])
        state = {
            "epochs_done": epochs_done,
            "train_rng": train_rng.bit_generator.state,
            "train_seconds": train_seconds,
        }
        (folder / "state.json").write_text(json.dumps(state))

    def load_checkpoint(self, folder: Path) -> tuple[np.random.Generator, int, float]:
        """Restore a checkpoint; return the training stream positioned where it was, the
        epochs already done and the seconds they took (0 in checkpoints saved before echo
        recorded them)."""
        self.model.load_weights(folder / "model.weights.h5")
        with np.load(folder / "optimizer.npz") as saved:
            for variable, value in zip(
                self.optimizer.variables,
                (saved[f"arr_{i}"] for i in range(len(saved.files))),
                strict=True,
            ):
                variable.assign(value)
        state = json.loads((folder / "state.json").read_text())
        train_rng = np.random.default_rng()
        train_rng.bit_generator.state = state["train_rng"]
        return train_rng, state["epochs_done"], state.get("train_seconds", 0.0)

    def _records(self, first_epoch: int, loss: np.ndarray, acc: np.ndarray) -> History:
        # Per record, the mean over its equal-sized batches: what Keras reports for an epoch.
        per_step, per_record = self.schedule.steps_per_record, self.schedule.epochs_per_record
        loss, acc = loss.reshape(-1, per_step).mean(axis=1), acc.reshape(-1, per_step).mean(axis=1)
        epoch = first_epoch + per_record * np.arange(1, len(loss) + 1) - 1
        return History(epoch, loss, acc)
