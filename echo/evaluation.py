"""Echoes from a trained model, and how right they are."""

from __future__ import annotations

from dataclasses import dataclass

import keras
import numpy as np
import tensorflow as tf

from echo.models import state_variables


def reset_states(model: keras.Model) -> None:
    # Keras 3 has no Model.reset_states(): zero each stateful layer's memory ourselves.
    for variable in state_variables(model):
        variable.assign(tf.zeros_like(variable))


class Predictor:
    """Echoes whole sequences' windows in order, resetting a stateful model per sequence.

    Windows go through one compiled call per set of sequences, not one Keras `predict` per
    batch: a stateful model runs its fixed batch size, a stateless one takes all at once.
    """

    def __init__(self, model: keras.Model, jit_compile: bool = True):
        self.model = model
        self.states = state_variables(model)
        self.batch_size = model.inputs[0].shape[0] if self.states else None
        self._predict = tf.function(self._predict_batches, jit_compile=jit_compile)

    def _predict_batches(self, batches, keep):
        n = tf.shape(batches)[0]
        echoes = tf.TensorArray(tf.int32, size=n)
        for i in tf.range(n):
            for variable in self.states:
                variable.assign(variable * keep[i])
            probabilities = self.model(batches[i], training=False)
            echoes = echoes.write(i, tf.argmax(probabilities, axis=-1, output_type=tf.int32))
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


def score(expected: np.ndarray, echoed: np.ndarray) -> Scores:
    right = expected == echoed
    per_window = right.reshape(-1, right.shape[-1])
    return Scores(
        eval_acc=float(per_window.mean()),
        eval_exact=float(per_window.all(axis=-1).mean()),
        position_acc=tuple(float(a) for a in per_window.mean(axis=0)),
    )
