"""The tutorial's programs as it runs them, ported to Keras 3: echo's baseline.

One `model.fit` per random sequence (verbose off), one-hot inputs framed with pandas shifts,
state reset by hand after each sequence. Prints one JSON line: train_seconds, eval_acc and
eval_exact on 100 fresh sequences (state reset per sequence, as in training).

    python benchmarks/tutorial_baseline.py seq2seq      # 500 sequences, 20 units, batch 7
    python benchmarks/tutorial_baseline.py encdec       # 5000 sequences, 150 units, batch 21
"""

from __future__ import annotations

import argparse
import json
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from keras import layers  # noqa: E402

N_UNIQUE, LENGTH, N_IN = 100, 25, 5
PROGRAMS = {  # n_out, units, batch size, sequences: the tutorial's two settings
    "seq2seq": (5, 20, 7, 500),
    "encdec": (2, 150, 21, 5000),
}


def get_data(rng: np.random.Generator, n_out: int):
    sequence = rng.integers(0, N_UNIQUE, size=LENGTH)
    encoded = np.eye(N_UNIQUE)[sequence]
    # The tutorial's framing: n_in shifted copies side by side, incomplete rows dropped.
    frame = pd.DataFrame(encoded)
    frame = pd.concat([frame.shift(N_IN - i - 1) for i in range(N_IN)], axis=1).dropna()
    values = frame.values
    X = values.reshape(len(values), N_IN, N_UNIQUE)
    y = values[:, : n_out * N_UNIQUE].reshape(len(values), n_out, N_UNIQUE)
    return X, y


def build(program: str):
    n_out, units, batch_size, _ = PROGRAMS[program]
    inputs = keras.Input(batch_shape=(batch_size, N_IN, N_UNIQUE))
    if program == "seq2seq":
        x = layers.LSTM(units, return_sequences=True, stateful=True)(inputs)
    else:
        x = layers.LSTM(units, stateful=True)(inputs)
        x = layers.RepeatVector(n_out)(x)
        x = layers.LSTM(units, return_sequences=True, stateful=True)(x)
    outputs = layers.TimeDistributed(layers.Dense(N_UNIQUE, activation="softmax"))(x)
    model = keras.Model(inputs, outputs)
    model.compile(loss="categorical_crossentropy", optimizer="adam", metrics=["acc"])
    return model


def reset_states(model) -> None:
    for layer in model.layers:
        if getattr(layer, "stateful", False):
            layer.reset_states()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("program", choices=sorted(PROGRAMS))
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--sequences", type=int, help="train on this many (default: the tutorial's)"
    )
    args = parser.parse_args()
    n_out, _, batch_size, sequences = PROGRAMS[args.program]
    sequences = args.sequences or sequences
    keras.utils.set_random_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    model = build(args.program)

    start = time.perf_counter()
    for _ in range(sequences):
        X, y = get_data(rng, n_out)
        model.fit(X, y, epochs=1, batch_size=batch_size, verbose=0, shuffle=False)
        reset_states(model)
    train_seconds = time.perf_counter() - start

    right = []
    for _ in range(100):
        X, y = get_data(rng, n_out)
        yhat = model.predict(X, batch_size=batch_size, verbose=0)
        reset_states(model)
        right.append(y.argmax(-1) == yhat.argmax(-1))
    right = np.concatenate(right)
    print(
        json.dumps(
            {
                "train_seconds": train_seconds,
                "eval_acc": right.mean(),
                "eval_exact": right.all(-1).mean(),
            }
        )
    )


if __name__ == "__main__":
    main()
