"""The models, built from the real config: the tutorial's shapes and parameter counts, and the
extensions' outputs, readouts and masks."""

import numpy as np
import pytest
from conftest import compose_config
from omegaconf import OmegaConf

from echo.config import PAD, ModelKind
from echo.models import build_model, readout_for, state_variables


@pytest.mark.parametrize(
    "overrides, params",
    [
        # LSTM(20) on 100 one-hot inputs + TimeDistributed Dense(100): the tutorial's first model.
        (["model=seq2seq"], 4 * (20 * (100 + 20) + 20) + (20 * 100 + 100)),
        # LSTM(150) encoder, RepeatVector, LSTM(150) decoder, Dense(100): its second.
        (
            ["model=encdec"],
            4 * (150 * (100 + 150) + 150) + 4 * (150 * (150 + 150) + 150) + (150 * 100 + 100),
        ),
    ],
)
def test_tutorial_models_have_the_tutorials_parameters(overrides, params):
    cfg = compose_config(overrides)
    model = build_model(cfg.model, cfg.data, cfg.trainer.batch_size)
    assert model.count_params() == params  # one-hot inside the model adds no weights


@pytest.mark.parametrize("kind, n_out", [("seq2seq", 3), ("encdec", 2)])
@pytest.mark.parametrize("stateful", [True, False])
def test_shapes_and_state(kind, n_out, stateful):
    cfg = compose_config(
        [
            f"model={kind}",
            f"data.n_out={n_out}",
            f"model.stateful={stateful}",
            "trainer.batch_size=7",
        ]
    )
    model = build_model(cfg.model, cfg.data, cfg.trainer.batch_size)
    windows = np.random.default_rng(0).integers(0, 100, size=(7, 5)).astype(np.int32)
    probabilities = model.predict(windows, verbose=0, batch_size=7)
    assert probabilities.shape == (7, n_out, 100)
    np.testing.assert_allclose(probabilities.sum(-1), 1, rtol=1e-5)
    assert model.inputs[0].shape == ((7, 5) if stateful else (None, 5))
    assert len(state_variables(model)) == (0 if not stateful else 2 if kind == "seq2seq" else 4)


@pytest.mark.parametrize(
    "experiment", ["linear", "one_to_one", "many_to_one", "attention", "masked", "stateless"]
)
def test_extension_presets_build_and_read_out_integers(experiment):
    cfg = compose_config([f"experiment={experiment}"])
    model = build_model(cfg.model, cfg.data, cfg.trainer.batch_size)
    readout = readout_for(cfg.model, cfg.data)
    batch = cfg.trainer.batch_size
    windows = (
        np.random.default_rng(0).integers(0, 100, size=(batch, cfg.data.n_in)).astype(np.int32)
    )
    outputs = model.predict(windows, verbose=0, batch_size=batch)
    linear = cfg.model.representation.value == "linear"
    assert outputs.shape == ((batch, cfg.data.n_out) if linear else (batch, cfg.data.n_out, 100))
    echoes = np.asarray(readout.decode(outputs))
    assert echoes.shape == (batch, cfg.data.n_out) and echoes.min() >= 0 and echoes.max() <= 99
    if not linear:
        np.testing.assert_allclose(outputs.sum(-1), 1, rtol=1e-5)
        np.testing.assert_array_equal(echoes, outputs.argmax(-1))


def test_linear_readout_rounds_the_scaled_value_back():
    cfg = compose_config(["experiment=linear"])
    readout = readout_for(cfg.model, cfg.data)
    scaled = np.array([[0.0, 1.0], [50 / 99 + 0.004, 50 / 99 - 0.006], [-0.3, 1.7]], np.float32)
    np.testing.assert_array_equal(np.asarray(readout.decode(scaled)), [[0, 99], [50, 49], [0, 99]])
    losses = np.asarray(readout.losses(np.array([[0, 99]]), np.array([[0.0, 1.0]], np.float32)))
    np.testing.assert_allclose(losses, 0, atol=1e-12)


@pytest.mark.parametrize("kind", ["many_to_one", "encdec", "attention"])
@pytest.mark.parametrize("representation", ["one_hot", "linear"])
def test_masked_padding_is_skipped(kind, representation):
    """A padded window echoes as if its PAD steps were not there: the same weights, given only
    the real values, give the same outputs."""
    overrides = [
        f"model.kind={kind}",
        f"model.representation={representation}",
        "model.units=6",
        "model.stateful=false",
        "data.n_out=2",
        "trainer.batch_size=5",
    ]
    padded_cfg = compose_config([*overrides, "data.pad_incomplete=true"])
    padded = build_model(padded_cfg.model, padded_cfg.data, None)
    short_data = OmegaConf.to_object(
        OmegaConf.merge(OmegaConf.structured(padded_cfg.data), {"n_in": 3})
    )
    short = build_model(padded_cfg.model, short_data, None)
    short.set_weights(padded.get_weights())  # recurrent weights do not depend on the window length
    values = np.array([[7, 8, 9], [1, 50, 99]], np.int32)
    with_pad = np.concatenate([np.full((2, 2), PAD, np.int32), values], axis=1)
    np.testing.assert_allclose(
        padded.predict(with_pad, verbose=0), short.predict(values, verbose=0), atol=1e-6
    )
    assert padded_cfg.model.kind == ModelKind(kind)
