"""An echo preset trained the way a Keras user would: one `model.fit` over its whole stream.

    python benchmarks/keras_fit.py tutorial_encdec --seed 2 --steps-per-execution 50
    python benchmarks/keras_fit.py encdec_fast --jit-compile true
    python benchmarks/keras_fit.py encdec_fast --sweep 1,10,60 --seeds 101,102

The model is echo's (echo.models.build_model, from the preset's composed config), and so are
the data: the seed's training stream drawn as echo draws it, windows in order, unshuffled, and
the same validation and test windows (echo.data). Keras' own `fit` runs the updates,
`steps_per_execution` of them per compiled call, with the preset's optimizer, learning rate and
loss. A callback keeps echo's schedule: after every trainer.log_every sequences' updates it
checks validation against trainer.target_exact (stopping the fit once it is met) and it scores
all of validation whenever it passes a multiple of trainer.validate_every, with echo's own
Predictor. So training time compares with echo's: the same model, data and stopping rule.

A stateful preset can take this route only when each batch is one whole sequence, with state
reset after it (tutorial_encdec: batch 21 of 21 windows). Every batch then starts from a
zero state, which is what a stateless LSTM computes: the model is built stateless, and no reset
is needed between the batches of one compiled call.

Prints one JSON line per run: train_seconds, val_exact, eval_acc, eval_exact, epochs_trained
and epochs_to_target; with --sweep, one per steps_per_execution and jit_compile, in this process.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import time


def compose(preset: str, overrides: list[str]):
    """The preset's config, composed from conf/ as `python -m echo.train` composes it."""
    from echo.config import composed, to_echo_config

    return to_echo_config(composed([f"experiment={preset}", *overrides]))


def fit_route_model(cfg):
    """The Keras model `fit` trains: the preset's own, or for a stateful preset whose batch is
    one whole sequence, its stateless twin (the same maths: state is zero at every batch)."""
    from echo.config import windows_per_sequence
    from echo.models import build_model

    model_cfg = cfg.model
    if model_cfg.stateful:
        if cfg.trainer.batch_size != windows_per_sequence(cfg.data):
            raise SystemExit(
                f"trainer.batch_size={cfg.trainer.batch_size}: model.fit resets no state between "
                "the batches of a compiled call; a stateful preset takes this route only with "
                f"one whole sequence ({windows_per_sequence(cfg.data)} windows) per batch"
            )
        model_cfg = dataclasses.replace(model_cfg, stateful=False)
    return build_model(model_cfg, cfg.data, cfg.trainer.batch_size)


def every(epochs: int, batch_size: int, windows: int) -> int:
    """Updates in `epochs` sequences' worth of windows."""
    return max(1, epochs * windows // batch_size)


def echo_schedule(t, windows: int, validation, predictor):
    """A Keras callback class that makes echo's validation checks and early stop at the
    updates where echo's Trainer makes them (trainer config `t`)."""
    import keras

    from echo.evaluation import check_target, score

    check = every(t.log_every, t.batch_size, windows)

    class EchoSchedule(keras.callbacks.Callback):
        def __init__(self, total: int):
            super().__init__()
            self.total, self.done, self.epochs_to_target = total, 0, None

        def on_train_batch_end(self, batch, logs=None):
            # `batch` is the last update of the compiled call that just ran.
            before, self.done = self.done, min(batch + 1, self.total)
            if self.done // check == before // check and self.done < self.total:
                return
            epochs = self.done * t.batch_size // windows
            previous = before * t.batch_size // windows
            full = None
            if epochs // t.validate_every > previous // t.validate_every or self.done >= self.total:
                full = score(validation[1], predictor(validation[0]))
            if t.target_exact is not None:
                scores = full or check_target(predictor, *validation, t.target_exact)
                if scores.eval_exact >= t.target_exact:
                    self.epochs_to_target = epochs
                    self.model.stop_training = True

    return EchoSchedule


def train(cfg, steps_per_execution: int, jit_compile: bool) -> dict:
    import keras

    from echo import data
    from echo.config import windows_per_sequence
    from echo.evaluation import Predictor, score
    from echo.models import readout_for
    from echo.trainer import make_optimizer

    t = cfg.trainer
    windows = windows_per_sequence(cfg.data)
    check = every(t.log_every, t.batch_size, windows)
    if check % steps_per_execution:
        raise SystemExit(
            f"--steps-per-execution={steps_per_execution}: must divide the {check} updates "
            "between validation checks, so that checks fall where echo's do"
        )
    keras.utils.set_random_seed(t.seed)
    streams = data.streams(t.seed)
    validation = data.sample_windows(streams["validation"], t.eval_sequences, cfg.data)
    model = fit_route_model(cfg)
    readout = readout_for(cfg.model, cfg.data)
    predictor = Predictor(model, readout, jit_compile)
    model.compile(
        optimizer=make_optimizer(t),
        loss=readout.losses,
        steps_per_execution=steps_per_execution,
        jit_compile=jit_compile,
    )

    start = time.perf_counter()
    # The whole stream as fit takes it: windows in order, unshuffled, batches of whole
    # sequences or of equal parts of one.
    X, y = data.sample_windows(streams["train"], t.epochs, cfg.data)
    X, y = X.reshape(-1, cfg.data.n_in), y.reshape(-1, cfg.data.n_out)
    schedule = echo_schedule(t, windows, validation, predictor)(len(X) // t.batch_size)
    model.fit(
        X, y, batch_size=t.batch_size, epochs=1, shuffle=False, verbose=0, callbacks=[schedule]
    )
    train_seconds = time.perf_counter() - start

    val = score(validation[1], predictor(validation[0]))
    X_test, y_test = data.sample_windows(streams["test"], t.eval_sequences, cfg.data)
    test = score(y_test, predictor(X_test))
    return {
        "train_seconds": train_seconds,
        "val_exact": val.eval_exact,
        "eval_acc": test.eval_acc,
        "eval_exact": test.eval_exact,
        "epochs_trained": schedule.done * t.batch_size // windows,
        "epochs_to_target": schedule.epochs_to_target,
        "steps_per_execution": steps_per_execution,
        "jit_compile": jit_compile,
        "seed": t.seed,
    }


def main() -> None:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # before TensorFlow is imported
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("preset", help="an echo preset: tutorial_encdec, encdec_fast, ...")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--steps-per-execution", type=int, default=1)
    parser.add_argument(
        "--jit-compile", choices=("true", "false"), help="default: the preset's trainer.jit_compile"
    )
    parser.add_argument(
        "--sweep",
        help="steps_per_execution values to try, comma-separated: each with jit_compile on and "
        "off, on every --seeds",
    )
    parser.add_argument("--seeds", default="1", help="the seeds of a --sweep, comma-separated")
    parser.add_argument("overrides", nargs="*", help="config overrides, e.g. trainer.epochs=100")
    args = parser.parse_intermixed_args()

    if args.sweep:
        import keras

        for seed in (int(s) for s in args.seeds.split(",")):
            cfg = compose(args.preset, [*args.overrides, f"trainer.seed={seed}"])
            for steps in (int(s) for s in args.sweep.split(",")):
                for jit in (False, True):
                    # Each setting starts from a clean Keras state, as a process of its own
                    # would: graphs kept from the settings before would weigh on its time.
                    keras.backend.clear_session()
                    print(json.dumps(train(cfg, steps, jit)), flush=True)
        return
    cfg = compose(args.preset, [*args.overrides, f"trainer.seed={args.seed}"])
    jit = cfg.trainer.jit_compile if args.jit_compile is None else args.jit_compile == "true"
    print(json.dumps(train(cfg, args.steps_per_execution, jit)))


if __name__ == "__main__":
    main()
