"""Keras 3 builders for the tutorial's two models.

Both take integer windows [batch, n_in] and return probabilities [batch, n_out, n_unique]. The
first layer one-hot encodes inside the model: the tutorial's one-hot input, without shipping
100 floats per value through the data pipeline, and callers pass plain integers.
"""

from __future__ import annotations

import keras
from keras import layers

from echo.config import DataConfig, ModelConfig, ModelKind


def build_model(model: ModelConfig, data: DataConfig, batch_size: int | None) -> keras.Model:
    """The model `model.kind` names, for windows of `data`.

    A stateful model carries each sample's state into the same row of the next batch, so its
    batch size is part of the graph (`batch_size`); a stateless one accepts any batch size.
    """
    batch_shape = (batch_size if model.stateful else None, data.n_in)
    windows = keras.Input(batch_shape=batch_shape, dtype="int32", name="window")
    x = layers.CategoryEncoding(data.n_unique, output_mode="one_hot", name="one_hot")(windows)
    lstm = dict(units=model.units, stateful=model.stateful, unroll=model.unroll)
    if model.kind == ModelKind.seq2seq:
        x = layers.LSTM(return_sequences=True, name="lstm", **lstm)(x)
        # Output t echoes input t; the n_out oldest values are the first n_out outputs.
        x = layers.Cropping1D((0, data.n_in - data.n_out), name="oldest")(x)
    elif model.kind == ModelKind.encdec:
        x = layers.LSTM(name="encoder", **lstm)(x)
        x = layers.RepeatVector(data.n_out, name="repeat")(x)
        x = layers.LSTM(return_sequences=True, name="decoder", **lstm)(x)
    else:
        raise ValueError(f"model.kind={model.kind}: no builder for it")
    probabilities = layers.TimeDistributed(
        layers.Dense(data.n_unique, activation="softmax"), name="echo"
    )(x)
    return keras.Model(windows, probabilities, name=model.kind.value)


def state_variables(model: keras.Model) -> list:
    """The variables that carry a stateful model's memory from one batch to the next."""
    return [v for layer in model.layers if getattr(layer, "stateful", False) for v in layer.states]
