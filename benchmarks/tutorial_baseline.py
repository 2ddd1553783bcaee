"""The tutorial's programs as it runs them, ported to Keras 3: echo's baseline.

One `model.fit` per random sequence (verbose off), one-hot inputs framed with pandas shifts,
state reset by hand after each sequence. The sequences come from echo's seeded training stream
(echo.data), and the scores from echo's separate test stream: the same 100 held-out sequences
echo's run of the same seed is scored on, each predicted from a reset state as in training.
Prints one JSON line: train_seconds, eval_acc and eval_exact.

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

from echo import data  # noqa: E402
from echo.config import DataConfig  # noqa: E402
from echo.evaluation import score  # noqa: E402

N_UNIQUE, LENGTH, N_IN = 100, 25, 5
TEST_SEQUENCES = 100  # the tutorial presets' trainer.eval_sequences
PROGRAMS = {  # n_out, units, batch size, sequences: the tutorial's two settings
    "seq2seq": (5, 20, 7, 500),
    "encdec": (2, 150, 21, 5000),
}


def task(n_out: int) -> DataConfig:
    return DataConfig(
        n_unique=N_UNIQUE, length=LENGTH, n_in=N_IN, n_out=n_out, pad_incomplete=False
    )


def get_data(rng: np.random.Generator, n_out: int):
    sequence = data.generate_sequences(rng, 1, task(n_out))[0]
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
    streams = data.streams(args.seed)
    model = build(args.program)

    start = time.perf_counter()
    for _ in range(sequences):
        X, y = get_data(streams["train"], n_out)
        model.fit(X, y, epochs=1, batch_size=batch_size, verbose=0, shuffle=False)
        reset_states(model)
    train_seconds = time.perf_counter() - start

    X_test, y_test = data.sample_windows(streams["test"], TEST_SEQUENCES, task(n_out))
    echoed = []
    for windows in X_test:
        yhat = model.predict(np.eye(N_UNIQUE)[windows], batch_size=batch_size, verbose=0)
        reset_states(model)
        echoed.append(yhat.argmax(-1))
    scores = score(y_test, np.stack(echoed))
    print(
        json.dumps(
            {
                "train_seconds": train_seconds,
                "eval_acc": scores.eval_acc,
                "eval_exact": scores.eval_exact,
            }
        )
    )


if __name__ == "__main__":
    main()
