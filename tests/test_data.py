import numpy as np
import pandas as pd
import pytest

from echo import data
from echo.config import PAD, DataConfig


def tutorial_to_supervised(encoded: np.ndarray, n_in: int, n_out: int):
    """The tutorial's pandas framing, restated as the reference: shifted copies side by side,
    rows the shift left incomplete dropped, and y taken from the leftmost (oldest) columns."""
    frame = pd.DataFrame(encoded)
    frame = pd.concat([frame.shift(n_in - i - 1) for i in range(n_in)], axis=1).dropna()
    values = frame.values
    width = encoded.shape[1]
    return values.reshape(len(values), n_in, width), values[:, : n_out * width].reshape(
        len(values), n_out, width
    )


@pytest.mark.parametrize("seed", range(5))
def test_framing_equals_tutorial_pandas_framing(seed):
    rng = np.random.default_rng(seed)
    n_unique = int(rng.integers(2, 30))
    length = int(rng.integers(1, 30))
    n_in = int(rng.integers(1, length + 1))
    n_out = int(rng.integers(1, n_in + 1))
    sequence = rng.integers(0, n_unique, size=length)

    expected_X, expected_y = tutorial_to_supervised(
        data.one_hot_encode(sequence, n_unique), n_in, n_out
    )
    X, y = data.frame_windows(sequence, n_in, n_out)

    assert X.shape == (length - n_in + 1, n_in)
    np.testing.assert_array_equal(data.one_hot_encode(X, n_unique), expected_X)
    np.testing.assert_array_equal(data.one_hot_encode(y, n_unique), expected_y)


def test_tutorial_shapes_and_oldest_values_as_target():
    cfg = DataConfig(n_unique=100, length=25, n_in=5, n_out=2, pad_incomplete=False)
    X, y = data.sample_windows(np.random.default_rng(0), 3, cfg)
    assert X.shape == (3, 21, 5) and y.shape == (3, 21, 2)
    np.testing.assert_array_equal(y, X[..., :2])
    # Consecutive windows of one sequence overlap by n_in - 1 values.
    np.testing.assert_array_equal(X[:, 1:, :-1], X[:, :-1, 1:])


def test_padded_framing_keeps_the_rows_the_tutorial_drops():
    cfg = DataConfig(n_unique=100, length=25, n_in=5, n_out=2, pad_incomplete=True)
    X, y = data.sample_windows(np.random.default_rng(0), 3, cfg)
    assert X.shape == (3, 25, 5) and y.shape == (3, 25, 2)
    # One window ends at each value: the first holds only the sequence's first value...
    np.testing.assert_array_equal(X[:, 0, :4], PAD)
    sequences = data.generate_sequences(np.random.default_rng(0), 3, cfg)
    np.testing.assert_array_equal(X[:, :, -1], sequences)  # window t ends at value t
    # ...and the last 21 are the tutorial's windows.
    unpadded = DataConfig(n_unique=100, length=25, n_in=5, n_out=2, pad_incomplete=False)
    X_tutorial, y_tutorial = data.sample_windows(np.random.default_rng(0), 3, unpadded)
    np.testing.assert_array_equal(X[:, 4:], X_tutorial)
    np.testing.assert_array_equal(y[:, 4:], y_tutorial)
    np.testing.assert_array_equal(y, X[..., :2])


def test_one_hot_round_trip():
    values = np.array([[0, 3, 9], [9, 9, 1]])
    encoded = data.one_hot_encode(values, 10)
    assert encoded.shape == (2, 3, 10) and encoded.sum() == 6
    np.testing.assert_array_equal(data.one_hot_decode(encoded), values)


def test_sequences_do_not_depend_on_how_they_are_drawn():
    cfg = DataConfig(n_unique=100, length=25, n_in=5, n_out=5, pad_incomplete=False)
    at_once = data.generate_sequences(np.random.default_rng(7), 10, cfg)
    rng = np.random.default_rng(7)
    in_parts = np.concatenate([data.generate_sequences(rng, n, cfg) for n in (3, 3, 4)])
    np.testing.assert_array_equal(at_once, in_parts)
    assert at_once.min() >= 0 and at_once.max() < 100


def test_streams_are_seeded_and_independent():
    cfg = DataConfig(n_unique=100, length=25, n_in=5, n_out=5, pad_incomplete=False)
    first, second = data.streams(3), data.streams(3)
    draws = {name: data.generate_sequences(rng, 4, cfg) for name, rng in first.items()}
    for name, rng in second.items():
        np.testing.assert_array_equal(draws[name], data.generate_sequences(rng, 4, cfg))
    assert not np.array_equal(draws["train"], draws["test"])
    assert not np.array_equal(draws["validation"], draws["test"])
    # Independent: however much training draws first, validation and test draw the same.
    third = data.streams(3)
    data.generate_sequences(third["train"], 1000, cfg)
    for name in ("validation", "test"):
        np.testing.assert_array_equal(draws[name], data.generate_sequences(third[name], 4, cfg))
