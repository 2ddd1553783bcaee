"""`python -m echo.predict`: echo windows or whole sequences with a logged run's model.

    python -m echo.predict run_id=RUN 'sequences=[[1,2,3,4,5],[9,8,7,6,5]]'   # one echo per window
    python -m echo.predict run_id=RUN 'sequence=[4,8,15,16,23,42,7]'          # every window's echo

Prints one JSON list per window. A stateful model is rebuilt for its training batch size and
run as in training: each sequence's windows in order, state reset between sequences. Arguments
are OmegaConf's key=value form, checked against a typed schema.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import List, Optional

from omegaconf import MISSING

from echo import quiet
from echo.config import EchoConfig, check_tracking_uri, from_saved, parse_key_values
from echo.environment import keras_on_tensorflow
from echo.errors import BadRequest, run_command
from echo.store import tracking_uri


@dataclass
class PredictConfig:
    run_id: str = MISSING
    sequences: Optional[List[List[int]]] = None  # each one window of n_in values
    sequence: Optional[List[int]] = None  # one sequence of at least n_in values: all its windows


def parse(argv: list[str]) -> PredictConfig:
    request = parse_key_values(PredictConfig, argv)
    if (request.sequences is None) == (request.sequence is None):
        raise BadRequest(
            "give either sequences=[[...], ...] (windows) or sequence=[...] (one sequence)"
        )
    return request


def check(request: PredictConfig, cfg: EchoConfig) -> list[list[int]]:
    """The sequences to echo, each checked against the run's data config."""
    n_in, n_unique = cfg.data.n_in, cfg.data.n_unique
    if request.sequence is not None:
        sequences, key = [request.sequence], "sequence"
        if len(request.sequence) < n_in:
            raise BadRequest(f"sequence={request.sequence}: needs at least data.n_in={n_in} values")
    else:
        sequences, key = request.sequences, "sequences"
        for window in sequences:
            if len(window) != n_in:
                raise BadRequest(
                    f"sequences: window {window} has {len(window)} values; the model takes "
                    f"data.n_in={n_in}"
                )
    for values in sequences:
        for value in values:
            if not 0 <= value < n_unique:
                raise BadRequest(
                    f"{key}: value {value} is outside 0..{n_unique - 1} (data.n_unique={n_unique})"
                )
    return sequences


def echo_sequences(
    model, cfg: EchoConfig, sequences: list[list[int]], pad: bool = False
) -> list[list[int]]:
    """Every window's echo, sequence by sequence, in order; with `pad` (a model trained with
    data.pad_incomplete), also the padded windows that end at each sequence's first values."""
    import numpy as np

    from echo.data import frame_windows
    from echo.evaluation import Predictor
    from echo.models import readout_for

    echoes = []
    predict = Predictor(model, readout_for(cfg.model, cfg.data), jit_compile=False)
    batch_size = predict.batch_size or 1
    for sequence in sequences:
        X, _ = frame_windows(
            np.asarray(sequence, dtype=np.int32),
            cfg.data.n_in,
            cfg.data.n_out,
            pad,
        )
        windows = len(X)
        # A stateful model takes whole batches: pad the windows at the end, where the padding
        # cannot reach the real windows' state, and drop its echoes.
        padded = -(-len(X) // batch_size) * batch_size
        X = np.concatenate([X, np.zeros((padded - len(X), X.shape[1]), X.dtype)])
        echoes.extend(predict(X[None])[0, :windows].tolist())
    return echoes


def main(argv: list[str]) -> None:
    request = parse(argv)
    with keras_on_tensorflow():  # MLflow's Keras flavour and the model import Keras
        echo_request(request)


def echo_request(request: PredictConfig) -> None:
    check_tracking_uri(tracking_uri())
    from echo import tracking

    cfg = from_saved(tracking.run_config(request.run_id))
    sequences = check(request, cfg)
    quiet.start_tensorflow()  # once the request is known to be good; no GPU notices
    from echo.models import build_model

    # Rebuilt from the run's config, with the logged weights: the same model, whatever Keras
    # version saved it, and nothing in the artifact is run as code.
    model = build_model(cfg.model, cfg.data, cfg.trainer.batch_size)
    model.set_weights(tracking.load_model(request.run_id).get_weights())
    # Given windows, each is a sequence of its own, with fresh state, and has one echo; given a
    # sequence, its windows run in order, as in training, padded ones too when it was.
    pad = request.sequence is not None and cfg.data.pad_incomplete
    for echo in echo_sequences(model, cfg, sequences, pad):
        print(json.dumps(echo))


def command() -> None:
    """`echo-predict` and `python -m echo.predict`."""
    run_command(main, __doc__)


if __name__ == "__main__":
    command()
