"""Keras 3 builders for the tutorial's models and for the extensions it leaves open.

Every model takes integer windows [batch, n_in] (PAD where a padded window has no value yet)
and returns, per echoed position, either probabilities over the n_unique values (the one-hot
representation) or one scaled value (the linear one): [batch, n_out, n_unique] or
[batch, n_out]. A `Readout` turns those outputs into losses and integer echoes. The input
encoding happens inside the model, so callers pass plain integers.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import keras
from keras import layers, ops

from echo.config import PAD, DataConfig, ModelConfig, ModelKind, Representation

# Cropping a masked sequence drops its mask, and Keras warns at every call. Nothing after the
# crop needs the mask: the loss and the scores leave PAD targets out themselves.
warnings.filterwarnings("ignore", message=r".*Cropping1D\) was passed an input with a mask")

# Kinds that read the window one value per timestep, so that a mask can skip padded steps.
# one_to_one sees the whole window as one timestep: a pad is just an all-zero part of it.
STEPWISE = {ModelKind.seq2seq, ModelKind.encdec, ModelKind.attention, ModelKind.many_to_one}


@dataclass(frozen=True)
class Readout:
    """How a model's outputs are scored in training and read as integers."""

    representation: Representation
    n_unique: int

    @property
    def scale(self) -> float:
        # The linear representation maps 0..n_unique-1 onto 0..1.
        return 1.0 / (self.n_unique - 1)

    def losses(self, targets, outputs):
        """Per-position losses [batch, n_out] for integer targets; PAD targets give finite
        values the caller weights out."""
        real = ops.maximum(targets, 0)
        if self.representation == Representation.linear:
            return ops.square(outputs - ops.cast(real, outputs.dtype) * self.scale)
        return keras.losses.sparse_categorical_crossentropy(real, outputs)

    def decode(self, outputs):
        """Integer echoes [batch, n_out]: the likeliest value, or the scaled value rounded."""
        if self.representation == Representation.linear:
            values = ops.clip(ops.round(outputs / self.scale), 0, self.n_unique - 1)
            return ops.cast(values, "int32")
        return ops.cast(ops.argmax(outputs, axis=-1), "int32")


def readout_for(model: ModelConfig, data: DataConfig) -> Readout:
    return Readout(model.representation, data.n_unique)


def build_model(model: ModelConfig, data: DataConfig, batch_size: int | None) -> keras.Model:
    """The model `model.kind` names, for windows of `data`.

    A stateful model carries each sample's state into the same row of the next batch, so its
    batch size is part of the graph (`batch_size`); a stateless one accepts any batch size.
    """
    batch_shape = (batch_size if model.stateful else None, data.n_in)
    windows = keras.Input(batch_shape=batch_shape, dtype="int32", name="window")
    linear = model.representation == Representation.linear
    if linear:
        x = layers.Reshape((data.n_in, 1), name="one_feature")(windows)
        x = layers.Rescaling(1.0 / (data.n_unique - 1), name="scaled")(x)
        pad_step = PAD / (data.n_unique - 1)
    else:
        # PAD (-1) encodes as an all-zero vector.
        x = layers.CategoryEncoding(data.n_unique, output_mode="one_hot", name="one_hot")(windows)
        pad_step = 0.0
    if data.pad_incomplete and model.kind in STEPWISE:
        x = layers.Masking(pad_step, name="skip_padding")(x)
    width = 1 if linear else data.n_unique  # features per echoed value

    lstm = dict(units=model.units, stateful=model.stateful, unroll=model.unroll)
    kind = model.kind
    if kind == ModelKind.seq2seq:
        x = layers.LSTM(return_sequences=True, name="lstm", **lstm)(x)
        if data.n_out < data.n_in:  # output t echoes input t: keep the n_out oldest
            x = layers.Cropping1D((0, data.n_in - data.n_out), name="oldest")(x)
    elif kind == ModelKind.encdec:
        x = layers.LSTM(name="encoder", **lstm)(x)
        x = layers.RepeatVector(data.n_out, name="repeat")(x)
        x = layers.LSTM(return_sequences=True, name="decoder", **lstm)(x)
    elif kind == ModelKind.attention:
        # encdec, with each decoder step also reading a weighted mix of the encoder's outputs:
        # the decoder need not squeeze the whole window through one vector.
        steps, last = layers.LSTM(return_sequences=True, return_state=True, name="encoder", **lstm)(
            x
        )[:2]
        x = layers.RepeatVector(data.n_out, name="repeat")(last)
        x = layers.LSTM(return_sequences=True, name="decoder", **lstm)(x)
        context = layers.Attention(name="attention")([x, steps])
        x = layers.Concatenate(name="with_context")([x, context])
    elif kind in (ModelKind.one_to_one, ModelKind.many_to_one):
        if kind == ModelKind.one_to_one:  # the window's timesteps become one step's features
            x = layers.Reshape((1, data.n_in * width), name="as_features")(x)
        x = layers.LSTM(name="lstm", **lstm)(x)
        # The whole echo as one output vector, cut into positions only to be read out.
        x = layers.Dense(data.n_out * width, name="echo_vector")(x)
        x = layers.Reshape((data.n_out, width), name="positions")(x)
    else:
        raise ValueError(f"model.kind={kind}: no builder for it")

    return keras.Model(windows, echo_head(x, model, data), name=kind.value)


def echo_head(x, model: ModelConfig, data: DataConfig):
    """The layer named `echo`: one value per position (linear), or probabilities over the
    n_unique values per position (one-hot), from per-position features or one echo vector."""
    vector_output = model.kind in (ModelKind.one_to_one, ModelKind.many_to_one)
    if model.representation == Representation.linear:
        if not vector_output:
            x = layers.TimeDistributed(layers.Dense(1), name="value")(x)
        return layers.Reshape((data.n_out,), name="echo")(x)
    if vector_output:
        return layers.Softmax(name="echo")(x)
    dense = layers.Dense(data.n_unique, activation="softmax")
    return layers.TimeDistributed(dense, name="echo")(x)


def state_variables(model: keras.Model) -> list:
    """The variables that carry a stateful model's memory from one batch to the next."""
    return [v for layer in model.layers if getattr(layer, "stateful", False) for v in layer.states]
