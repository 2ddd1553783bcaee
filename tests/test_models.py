"""The two models, built from the real config: the tutorial's shapes and parameter counts."""

import numpy as np
import pytest

from echo.models import build_model, state_variables

from conftest import compose_config


@pytest.mark.parametrize(
    "overrides, params",
    [
        # LSTM(20) on 100 one-hot inputs + TimeDistributed Dense(100): the tutorial's first model.
        (["model=seq2seq"], 4 * (20 * (100 + 20) + 20) + (20 * 100 + 100)),
        # LSTM(150) encoder, RepeatVector, LSTM(150) decoder, Dense(100): its second.
        (["model=encdec"], 4 * (150 * (100 + 150) + 150) + 4 * (150 * (150 + 150) + 150) + (150 * 100 + 100)),
    ],
)
def test_tutorial_models_have_the_tutorials_parameters(overrides, params):
    cfg = compose_config(overrides)
    model = build_model(cfg.model, cfg.data, cfg.trainer.batch_size)
    assert model.count_params() == params  # one-hot inside the model adds no weights


@pytest.mark.parametrize("kind, n_out", [("seq2seq", 3), ("encdec", 2)])
@pytest.mark.parametrize("stateful", [True, False])
def test_shapes_and_state(kind, n_out, stateful):
    cfg = compose_config([f"model={kind}", f"data.n_out={n_out}", f"model.stateful={stateful}", "trainer.batch_size=7"])
    model = build_model(cfg.model, cfg.data, cfg.trainer.batch_size)
    windows = np.random.default_rng(0).integers(0, 100, size=(7, 5)).astype(np.int32)
    probabilities = model.predict(windows, verbose=0, batch_size=7)
    assert probabilities.shape == (7, n_out, 100)
    np.testing.assert_allclose(probabilities.sum(-1), 1, rtol=1e-5)
    assert model.inputs[0].shape == ((7, 5) if stateful else (None, 5))
    assert len(state_variables(model)) == (0 if not stateful else 2 if kind == "seq2seq" else 4)
