"""The speed table's pure pieces: what it prints from measured runs, and how tuning chooses."""

import pytest

from echo.config import SOURCE_TREE


@pytest.fixture
def speed_table(monkeypatch):
    """benchmarks/speed_table.py, which lives beside the scripts that import it."""
    monkeypatch.syspath_prepend(str(SOURCE_TREE / "benchmarks"))
    import speed_table

    return speed_table


def runs(train_seconds, exact, whole=10.0):
    return [
        {
            "whole_seconds": whole,
            "train_seconds": t,
            "peak_mb": 500.0,
            "eval_acc": e,
            "eval_exact": e,
        }
        for t, e in zip(train_seconds, exact, strict=True)
    ]


def test_the_table_gives_median_times_and_scores_over_seeds(speed_table):
    summaries = {
        "slow": speed_table.summarise(runs([10.0, 12.0, 30.0], [0.99, 0.98, 0.97], whole=20.0)),
        "fast": speed_table.summarise(runs([2.0, 3.0, 4.0], [1.0, 0.99, 0.98])),
    }
    rows = [speed_table.Row("slow"), speed_table.Row("fast", "slow", "batch 84")]
    table = speed_table.table(rows, summaries).splitlines()
    assert table[2].startswith("| slow | 3 | 20.0 | 12.0 |  |  |  | 0.9800 ± 0.0100 |")
    # Medians: 12 s against 3 s; a ratio only over the row it names.
    assert table[3].startswith("| fast (batch 84) | 3 | 10.0 | 3.0 | slow | 4.0x | 2.0x |")
    assert "0.9900 ± 0.0100" in table[3]


def test_a_ratio_is_printed_only_between_rows_that_both_ran(speed_table):
    summaries = {"a": speed_table.summarise(runs([2.0], [1.0]))}
    assert speed_table.headline(summaries, [("a", "b", "alike")]) == []
    summaries["b"] = speed_table.summarise(runs([5.0], [1.0]))
    (sentence,) = speed_table.headline(summaries, [("a", "b", "the same model")])
    assert sentence == "a trained in 2.0 s, b in 5.0 s: 2.5x as fast (the same model)."


def test_tuning_chooses_the_fastest_setting_that_met_the_target_every_time(speed_table):
    def trial(batch, seconds, reached=True):
        return {
            "batch_size": batch,
            "train_seconds": seconds,
            "epochs_to_target": 100 if reached else None,
        }

    trials = [trial(42, 1.0, reached=False), trial(42, 1.0), trial(84, 3.0), trial(84, 3.0)]
    trials += [trial(168, 2.0), trial(168, 5.0)]
    assert speed_table.choose(trials, ("batch_size",), target=True) == {"batch_size": 84}
    # Without a target, the fastest on average.
    assert speed_table.choose(trials, ("batch_size",), target=False) == {"batch_size": 42}
    with pytest.raises(SystemExit, match="no setting of batch_size met the target"):
        speed_table.choose([trial(42, 1.0, reached=False)], ("batch_size",), target=True)


@pytest.fixture
def keras_fit(monkeypatch):
    monkeypatch.syspath_prepend(str(SOURCE_TREE / "benchmarks"))
    import keras_fit

    return keras_fit


def test_the_fit_route_trains_a_stateful_preset_as_its_stateless_twin(keras_fit):
    """A stateful model whose batch is one whole sequence, reset after it, computes what its
    stateless twin does: every batch starts from a zero state. Not so without the reset."""
    import numpy as np
    from conftest import TINY, compose_config

    from echo.evaluation import reset_states
    from echo.models import build_model, state_variables

    cfg = compose_config([*TINY, "model=encdec", "trainer.batch_size=6"])  # 6 windows each
    stateful = build_model(cfg.model, cfg.data, cfg.trainer.batch_size)
    twin = keras_fit.fit_route_model(cfg)
    assert state_variables(stateful) and not state_variables(twin)
    twin.set_weights(stateful.get_weights())
    rng = np.random.default_rng(0)
    first, second = (rng.integers(0, 10, size=(6, 3)) for _ in range(2))
    stateful(first)
    carried = np.asarray(stateful(second))  # state carried over from the first batch
    reset_states(stateful)
    np.testing.assert_allclose(np.asarray(stateful(second)), np.asarray(twin(second)), atol=1e-6)
    assert not np.allclose(carried, np.asarray(twin(second)), atol=1e-6)

    split = compose_config([*TINY, "model=encdec", "trainer.batch_size=3"])  # half a sequence
    with pytest.raises(SystemExit, match="one whole sequence"):
        keras_fit.fit_route_model(split)
