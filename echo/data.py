"""Random integer sequences and their supervised framing, as pure numpy functions.

The tutorial's names are kept: a sequence of `length` integers in 0..n_unique-1 is framed into
windows of `n_in` consecutive values, and each window's target is its `n_out` OLDEST values.
Everything random comes from a `numpy.random.Generator` the caller seeds.
"""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from echo.config import PAD, DataConfig

# Independent random streams drawn from one seed, so that held-out data never overlaps training
# data and a change of trainer.epochs does not change what is evaluated.
STREAMS = ("train", "validation", "test")


def streams(seed: int) -> dict[str, np.random.Generator]:
    children = np.random.SeedSequence(seed).spawn(len(STREAMS))
    return {
        name: np.random.default_rng(child) for name, child in zip(STREAMS, children, strict=True)
    }


def generate_sequences(rng: np.random.Generator, count: int, data: DataConfig) -> np.ndarray:
    """`count` random sequences, shape [count, length]. Drawing 2 x k equals drawing 2k at once."""
    return rng.integers(0, data.n_unique, size=(count, data.length), dtype=np.int32)


def one_hot_encode(values: np.ndarray, n_unique: int) -> np.ndarray:
    """Integers of any shape -> float32 one-hot vectors along a new last axis."""
    return np.eye(n_unique, dtype=np.float32)[np.asarray(values)]


def one_hot_decode(encoded: np.ndarray) -> np.ndarray:
    """One-hot vectors or class probabilities -> the integers they stand for."""
    return np.asarray(encoded).argmax(axis=-1)


def frame_windows(
    sequences: np.ndarray, n_in: int, n_out: int, pad: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """Frame sequences [..., length] as X [..., windows, n_in] and y [..., windows, n_out].

    Window t is values t..t+n_in-1, oldest first; y is the oldest n_out of them. The tutorial's
    pandas framing drops the rows its shift leaves incomplete, so windows = length - n_in + 1.
    With `pad`, those rows stay, their missing values set to PAD: one window ends at each
    value, so windows = length.
    """
    sequences = np.asarray(sequences)
    if pad:
        widths = [(0, 0)] * (sequences.ndim - 1) + [(n_in - 1, 0)]
        sequences = np.pad(sequences, widths, constant_values=PAD)
    windows = sliding_window_view(sequences, n_in, axis=-1)
    return windows, windows[..., :n_out]


def sample_windows(
    rng: np.random.Generator, count: int, data: DataConfig
) -> tuple[np.ndarray, np.ndarray]:
    """`count` fresh sequences framed as X [count, windows, n_in], y [count, windows, n_out]."""
    X, y = frame_windows(
        generate_sequences(rng, count, data), data.n_in, data.n_out, data.pad_incomplete
    )
    # Contiguous copies: the views share memory with the sequences and cannot be reshaped.
    return np.ascontiguousarray(X), np.ascontiguousarray(y)
