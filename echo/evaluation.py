"""Echoes from a trained model, and how right they are."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Callable

import keras
import numpy as np
import tensorflow as tf

from echo.config import PAD
from echo.models import Readout, state_variables


def reset_states(model: keras.Model) -> None:
    """Zero the memory of every stateful layer (Keras 3 has no Model.reset_states())."""
    for layer in model.layers:
        if getattr(layer, "stateful", False):
            layer.reset_state()


def of_this_instance(method: Callable) -> Callable:
    """`method`, for tf.function to trace once per object. TensorFlow counts traces by a
    method's code, across all objects: every run's new model would add to one count, and
    after five runs in a process (a sweep, a notebook) it warns of retracing that is not."""
    return functools.partial(method)


class Predictor:
    """Echoes whole sequences' windows in order, resetting a stateful model per sequence.

    Windows go through one compiled call per set of sequences, not one Keras `predict` per
    batch: a stateful model runs its fixed batch size, a stateless one takes all at once.
    """

    def __init__(self, model: keras.Model, readout: Readout, jit_compile: bool = True):
        self.model, self.readout = model, readout
        self.states = state_variables(model)
        self.batch_size = model.inputs[0].shape[0] if self.states else None
        # Any number of sequences, traced once: tracing costs more than scoring thousands of
        # windows.
        signature = (
            tf.TensorSpec([None, self.batch_size, model.inputs[0].shape[-1]], tf.int32),
            tf.TensorSpec([None], tf.float32),
        )
        # Graph ops rather than Python for AutoGraph to rewrite, as in Trainer: faster to trace.
        self._predict = tf.function(
            of_this_instance(self._predict_batches),
            input_signature=signature,
            jit_compile=jit_compile,
            autograph=False,
        )

    def _predict_batches(self, batches, keep):
        def step(i, echoes):
            for variable in self.states:
                variable.assign(variable * keep[i])
            return i + 1, echoes.write(
                i, self.readout.decode(self.model(batches[i], training=False))
            )

        n = tf.shape(batches)[0]
        _, echoes = tf.while_loop(
            lambda i, _: i < n, step, (tf.constant(0), tf.TensorArray(tf.int32, size=n))
        )
        return echoes.stack()

    def __call__(self, X: np.ndarray) -> np.ndarray:
        """X [sequences, windows, n_in] -> echoed integers [sequences, windows, n_out]."""
        sequences, windows, n_in = X.shape
        batch_size = self.batch_size or sequences * windows
        batches = X.reshape(-1, batch_size, n_in)
        # keep = 0 zeroes the state before the first batch of each sequence.
        keep = (np.arange(len(batches)) * batch_size % windows != 0).astype(np.float32)
        echoes = self._predict(tf.constant(batches, tf.int32), tf.constant(keep)).numpy()
        return echoes.reshape(sequences, windows, -1)


@dataclass(frozen=True)
class Scores:
    eval_acc: float  # fraction of echoed values that are right
    eval_exact: float  # fraction of windows echoed wholly right
    position_acc: tuple[float, ...]  # accuracy of each echoed position, oldest first
    windows: int  # windows scored
    misses: int  # scored windows not echoed wholly right


def has_echo(expected: np.ndarray) -> np.ndarray:
    """Which windows of expected echoes [..., n_out] have a value to echo: a padded window
    whose targets are all PAD has none, and is not scored."""
    return (expected != PAD).any(axis=-1)


def full_windows(X: np.ndarray) -> np.ndarray:
    """Which windows of X [..., n_in] hold no PAD: the windows the tutorial's framing keeps,
    on which a padded run can be scored like an unpadded one."""
    return (X != PAD).all(axis=-1)


def score(expected: np.ndarray, echoed: np.ndarray) -> Scores:
    """Scores of echoes [..., n_out] against what they should be. Positions whose expected
    value is PAD (padded windows) are not scored, nor windows with nothing to echo."""
    n_out = expected.shape[-1]
    expected, echoed = expected.reshape(-1, n_out), echoed.reshape(-1, n_out)
    real = expected != PAD
    right = (expected == echoed) & real
    scored = has_echo(expected)
    exact = (right == real).all(axis=-1)
    return Scores(
        eval_acc=float(right.sum() / real.sum()),
        eval_exact=float(exact[scored].mean()),
        position_acc=tuple(float(a) for a in right.sum(axis=0) / np.maximum(real.sum(axis=0), 1)),
        windows=int(scored.sum()),
        misses=int((scored & ~exact).sum()),
    )


def check_target(
    predict: Callable[[np.ndarray], np.ndarray], X: np.ndarray, y: np.ndarray, target: float
) -> Scores:
    """Scores of `predict`'s echoes of sequences X [sequences, windows, n_in], computed only as
    far as deciding whether their eval_exact reaches `target`.

    The first fifth of the sequences goes first. If its misses alone keep the whole below
    `target`, those are the scores returned: far from the target, a check costs a fifth. Else
    the whole is scored, so the answer is always the one scoring everything gives."""
    part = len(X) // 5
    if part:
        first = score(y[:part], predict(X[:part]))
        windows = int(has_echo(y).sum())
        if (
            windows - first.misses
        ) / windows < target:  # the whole's best case, computed as eval_exact is
            return first
    return score(y, predict(X))


def echoes_table(X: np.ndarray, expected: np.ndarray, echoed: np.ndarray, count: int):
    """The first `count` windows of X with their expected and echoed values, as a pandas table."""
    import pandas as pd

    n_in, n_out = X.shape[-1], expected.shape[-1]
    X = X.reshape(-1, n_in)[:count]
    expected = expected.reshape(-1, n_out)[:count]
    echoed = echoed.reshape(-1, n_out)[:count]
    return pd.DataFrame(
        {
            "window": [str(w.tolist()) for w in X],
            "expected": [str(e.tolist()) for e in expected],
            "echoed": [str(p.tolist()) for p in echoed],
            "right": (expected == echoed).all(axis=1),
        }
    )
