"""The compiled loop keeps the tutorial's semantics: it matches a plain Keras loop that calls
train_on_batch batch by batch and resets state after each sequence, update for update."""

import keras
import numpy as np
import pytest
import tensorflow as tf
from conftest import TINY, compose_config

from echo import data
from echo.config import PAD, windows_per_sequence
from echo.evaluation import Predictor, check_target, reset_states, score
from echo.models import build_model, readout_for, state_variables
from echo.trainer import Schedule, Trainer, make_optimizer


def tutorial_loop(model, cfg, rng):
    """The tutorial's loop in plain Keras: a fresh sequence per epoch, its windows in order,
    one train_on_batch per batch, state reset after each sequence."""
    model.compile(
        optimizer=keras.optimizers.Adam(cfg.trainer.learning_rate),
        loss="sparse_categorical_crossentropy",
    )
    B = cfg.trainer.batch_size
    for _ in range(cfg.trainer.epochs):
        X, y = data.sample_windows(rng, 1, cfg.data)
        for start in range(0, X.shape[1], B):
            model.train_on_batch(X[0, start : start + B], y[0, start : start + B])
        reset_states(model)


@pytest.mark.parametrize("model_name", ["seq2seq", "encdec"])
@pytest.mark.parametrize("jit", [False, True])
def test_compiled_loop_matches_the_tutorials_loop(model_name, jit):
    cfg = compose_config(
        [f"model={model_name}", *TINY, "trainer.epochs=5", f"trainer.jit_compile={jit}"]
    )
    keras.utils.set_random_seed(0)
    ours = build_model(cfg.model, cfg.data, cfg.trainer.batch_size)
    reference = build_model(cfg.model, cfg.data, cfg.trainer.batch_size)
    reference.set_weights(ours.get_weights())

    trainer = Trainer(ours, readout_for(cfg.model, cfg.data), cfg.data, cfg.trainer)
    fit = trainer.fit(np.random.default_rng(1))
    tutorial_loop(reference, cfg, np.random.default_rng(1))

    updates = cfg.trainer.epochs * windows_per_sequence(cfg.data) // cfg.trainer.batch_size
    assert (
        int(trainer.optimizer.iterations.numpy())
        == updates
        == int(reference.optimizer.iterations.numpy())
    )
    for mine, theirs in zip(ours.get_weights(), reference.get_weights(), strict=True):
        np.testing.assert_allclose(mine, theirs, atol=2e-5)
    assert fit.epochs == 5 and list(fit.history.epoch) == [0, 1, 2, 3, 4]


def test_state_is_reset_exactly_at_sequence_boundaries():
    cfg = compose_config([*TINY])
    keras.utils.set_random_seed(0)
    model = build_model(cfg.model, cfg.data, cfg.trainer.batch_size)
    X, _ = data.sample_windows(np.random.default_rng(0), 3, cfg.data)
    predict = Predictor(model, readout_for(cfg.model, cfg.data), jit_compile=False)
    # What a sequence is echoed as does not depend on the sequences before it...
    together = predict(X)
    alone = np.concatenate([predict(X[i : i + 1]) for i in range(3)])
    np.testing.assert_array_equal(together, alone)
    # ...while within a sequence the state carries over from batch to batch.
    reset_states(model)
    cold = model.predict(X[1, 3:6], verbose=0, batch_size=3)
    reset_states(model)
    model.predict(X[1, :3], verbose=0, batch_size=3)
    warm = model.predict(X[1, 3:6], verbose=0, batch_size=3)
    assert not np.allclose(cold, warm)


def test_schedule_records_per_epoch_or_per_update():
    tutorial = Schedule(windows=21, batch_size=7)
    assert (tutorial.steps_per_record, tutorial.epochs_per_record) == (3, 1)
    assert tutorial.epochs_per_call(100) == 100
    spanning = Schedule(windows=21, batch_size=84)
    assert (spanning.steps_per_record, spanning.epochs_per_record) == (1, 4)
    assert spanning.epochs_per_call(10) == 12


def test_stateless_batches_spanning_sequences():
    cfg = compose_config(
        [*TINY, "model.stateful=false", "trainer.batch_size=12", "trainer.epochs=7"]
    )
    keras.utils.set_random_seed(0)
    model = build_model(cfg.model, cfg.data, None)
    trainer = Trainer(model, readout_for(cfg.model, cfg.data), cfg.data, cfg.trainer)
    fit = trainer.fit(np.random.default_rng(0))
    # 12 windows = 2 sequences per update; 7 epochs round up to 8 = 4 updates, one record each.
    assert fit.epochs == 8 and int(trainer.optimizer.iterations.numpy()) == 4
    assert list(fit.history.epoch) == [1, 3, 5, 7]
    assert (
        np.isfinite(fit.history.loss).all()
        and ((fit.history.acc >= 0) & (fit.history.acc <= 1)).all()
    )
    assert not state_variables(model)


def test_target_exact_stops_training_early():
    cfg = compose_config(
        [*TINY, "trainer.epochs=40", "trainer.log_every=4", "trainer.target_exact=0.0001"]
    )
    keras.utils.set_random_seed(0)
    model = build_model(cfg.model, cfg.data, cfg.trainer.batch_size)
    validation = data.sample_windows(np.random.default_rng(5), 50, cfg.data)
    fit = Trainer(model, readout_for(cfg.model, cfg.data), cfg.data, cfg.trainer).fit(
        np.random.default_rng(0), validation
    )
    # Over 300 windows of 2 values in 0..9 at least one is echoed right by chance early on; the
    # first check after 4 epochs must already stop it.
    assert fit.epochs_to_target == 4 == fit.epochs
    assert len(fit.history.loss) == 4


def test_a_target_check_scores_the_first_fifth_alone_only_when_the_whole_cannot_reach_it():
    """check_target gives the verdict scoring everything would give, for any target, and
    stops at the first fifth of the sequences when that part's misses alone decide it."""
    cfg = compose_config(
        [
            *TINY,
            "trainer.epochs=20",
            "trainer.log_every=10",
            "trainer.learning_rate=0.02",
            "model.units=16",
        ]
    )
    keras.utils.set_random_seed(0)
    model = build_model(cfg.model, cfg.data, cfg.trainer.batch_size)
    Trainer(model, readout_for(cfg.model, cfg.data), cfg.data, cfg.trainer).fit(
        np.random.default_rng(0)
    )
    predictor = Predictor(model, readout_for(cfg.model, cfg.data), jit_compile=False)
    X, y = data.sample_windows(np.random.default_rng(5), 10, cfg.data)
    whole, first = score(y, predictor(X)), score(y[:2], predictor(X[:2]))
    assert 0 < first.misses and whole.misses < whole.windows  # half-trained: some right, some wrong
    exact = whole.eval_exact
    for target in sorted(
        {*np.linspace(0, 1, 21), exact, np.nextafter(exact, 1), np.nextafter(exact, 0)}
    ):
        checked = check_target(predictor, X, y, target)
        assert checked in (whole, first)
        assert (checked.eval_exact >= target) == (exact >= target), target
    assert check_target(predictor, X, y, 1.0) == first  # one miss among the first rules out 1.0
    assert check_target(predictor, X, y, exact) == whole
    # Scoring 10 sequences, then 2, then 10 again traced the prediction loop once.
    assert predictor._predict.experimental_get_tracing_count() == 1


def test_training_learns_the_tiny_echo():
    cfg = compose_config(
        [
            *TINY,
            "trainer.epochs=400",
            "trainer.log_every=100",
            "trainer.learning_rate=0.02",
            "model.units=16",
        ]
    )
    keras.utils.set_random_seed(0)
    model = build_model(cfg.model, cfg.data, cfg.trainer.batch_size)
    fit = Trainer(model, readout_for(cfg.model, cfg.data), cfg.data, cfg.trainer).fit(
        np.random.default_rng(0)
    )
    X, y = data.sample_windows(np.random.default_rng(9), 20, cfg.data)
    scores = score(y, Predictor(model, readout_for(cfg.model, cfg.data), jit_compile=False)(X))
    assert fit.history.loss[-1] < fit.history.loss[0]
    assert scores.eval_acc > 0.9, scores


def test_score_counts_values_and_whole_windows():
    expected = np.array([[[1, 2], [3, 4]]])
    echoed = np.array([[[1, 2], [3, 5]]])
    scores = score(expected, echoed)
    assert (
        scores.eval_acc == 0.75 and scores.eval_exact == 0.5 and scores.position_acc == (1.0, 0.5)
    )


def test_padded_positions_are_not_scored():
    expected = np.array([[[PAD, PAD], [PAD, 4], [5, 6]]])
    echoed = np.array([[[0, 0], [9, 4], [5, 7]]])
    scores = score(expected, echoed)
    # Three real values, two right; the all-PAD window is not a window to echo.
    assert scores.eval_acc == pytest.approx(2 / 3) and scores.eval_exact == 0.5
    assert scores.position_acc == (1.0, 0.5)


def test_padded_targets_weigh_nothing_in_training():
    """Training a masked model on padded windows moves the weights exactly as training it on the
    real targets alone would: PAD targets add neither loss nor gradient."""
    cfg = compose_config(
        [
            *TINY,
            "data.pad_incomplete=true",
            "model.stateful=false",
            "trainer.batch_size=8",
            "trainer.epochs=1",
            "trainer.log_every=1",
        ]
    )
    keras.utils.set_random_seed(0)
    model = build_model(cfg.model, cfg.data, None)
    trainer = Trainer(model, readout_for(cfg.model, cfg.data), cfg.data, cfg.trainer)
    X, y = data.sample_windows(np.random.default_rng(3), 1, cfg.data)
    X, y = X[0], y[0]
    real = y != PAD
    assert (~real).any() and real.any()
    with_pad = keras.ops.convert_to_numpy(
        keras.losses.sparse_categorical_crossentropy(np.maximum(y, 0), model(X))
    )
    expected_loss = with_pad[real].mean()
    # The same model and optimizer, updated by hand on the real targets alone.
    reference = build_model(cfg.model, cfg.data, None)
    reference.set_weights(model.get_weights())
    optimizer = make_optimizer(cfg.trainer)
    optimizer.build(reference.trainable_variables)
    with tf.GradientTape() as tape:
        losses = keras.losses.sparse_categorical_crossentropy(
            np.maximum(y, 0), reference(X, training=True)
        )
        real_loss = tf.reduce_mean(tf.boolean_mask(losses, real))
    weights = reference.trainable_variables
    optimizer.apply(tape.gradient(real_loss, weights), weights)

    loss, _ = trainer._train_steps(X[None], y[None], np.zeros(1, np.float32), 1)
    assert float(loss.numpy()[0]) == pytest.approx(float(expected_loss), rel=1e-5)
    for ours, theirs in zip(model.get_weights(), reference.get_weights(), strict=True):
        np.testing.assert_allclose(ours, theirs, atol=1e-6)
