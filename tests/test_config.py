"""The real conf/ composes into the typed config, and bad values are refused up front."""

import pytest
from conftest import TINY, compose_config, run_cli
from hydra.errors import ConfigCompositionException
from omegaconf.errors import ValidationError

from echo.config import CONF_DIR, ConfigError, ModelKind, flat_params, validate


def test_defaults_are_the_tutorials_first_program():
    cfg = compose_config()
    assert cfg.model.kind == ModelKind.seq2seq
    assert (cfg.model.units, cfg.model.stateful) == (20, True)
    assert (cfg.trainer.batch_size, cfg.trainer.epochs) == (7, 500)
    assert (cfg.data.n_unique, cfg.data.length, cfg.data.n_in, cfg.data.n_out) == (100, 25, 5, 5)
    assert cfg.trainer.eval_sequences == 100


def test_model_encdec_is_the_tutorials_second_program():
    cfg = compose_config(["model=encdec"])
    assert cfg.model.kind == ModelKind.encdec
    assert (cfg.model.units, cfg.model.stateful) == (150, True)
    assert (cfg.trainer.batch_size, cfg.trainer.epochs, cfg.data.n_out) == (21, 5000, 2)


def test_command_line_overrides_win_over_the_model_preset():
    cfg = compose_config(["model=encdec", "data.n_out=3", "trainer.batch_size=7"])
    assert (cfg.data.n_out, cfg.trainer.batch_size, cfg.trainer.epochs) == (3, 7, 5000)


def test_every_option_of_every_group_composes():
    # conf/hydra/ holds Hydra's own groups (a launcher preset), composed in tests/test_scale.py.
    groups = {
        path.name: sorted(p.stem for p in path.glob("*.yaml"))
        for path in CONF_DIR.iterdir()
        if path.is_dir() and path.name != "hydra"
    }
    assert set(groups) == {"data", "model", "trainer", "experiment", "debug", "hparams_search"}
    for group, options in groups.items():
        assert options, group
        for option in options:
            cfg = compose_config([f"{group}={option}"])
            assert validate(cfg) is cfg


@pytest.mark.parametrize(
    "name, kind, units, batch_size, epochs, n_out",
    [
        ("tutorial_seq2seq", "seq2seq", 20, 7, 500, 5),
        ("tutorial_encdec", "encdec", 150, 21, 5000, 2),
    ],
)
def test_tutorial_presets(name, kind, units, batch_size, epochs, n_out):
    cfg = compose_config([f"experiment={name}"])
    assert cfg.model.kind.value == kind and cfg.model.stateful
    assert (cfg.model.units, cfg.trainer.batch_size, cfg.trainer.epochs, cfg.data.n_out) == (
        units,
        batch_size,
        epochs,
        n_out,
    )
    assert cfg.mlflow.run_name == name


def test_flat_params_are_dotted_and_complete():
    params = flat_params(compose_config(["model=encdec"]))
    assert (
        params["data.n_out"] == 2
        and params["model.units"] == 150
        and params["trainer.batch_size"] == 21
    )
    assert params["model.kind"] == "encdec" and params["trainer.optimizer"] == "adam"
    assert {key.split(".")[0] for key in params} == {"data", "model", "trainer", "mlflow"}


@pytest.mark.parametrize(
    "overrides, key, value",
    [
        (["data.n_out=6"], "data.n_out", "6"),
        (["data.n_out=0"], "data.n_out", "0"),
        (["data.n_in=26"], "data.n_in", "26"),
        (["data.n_unique=1"], "data.n_unique", "1"),
        (["model.units=0"], "model.units", "0"),
        (["trainer.epochs=0"], "trainer.epochs", "0"),
        (["trainer.batch_size=5"], "trainer.batch_size", "5"),
        (["trainer.learning_rate=0"], "trainer.learning_rate", "0.0"),
        (["trainer.target_exact=1.5"], "trainer.target_exact", "1.5"),
        (["model.stateful=false", "trainer.batch_size=5"], "trainer.batch_size", "5"),
    ],
)
def test_rules_a_type_cannot_express(overrides, key, value):
    with pytest.raises(ConfigError) as caught:
        compose_config(overrides)
    assert str(caught.value).startswith(f"{key}={value}: ")


def test_stateless_batches_may_span_whole_sequences():
    cfg = compose_config(["model.stateful=false", "trainer.batch_size=42"])
    assert cfg.trainer.batch_size == 42


def test_types_and_unknown_keys_fail_at_composition():
    with pytest.raises(ConfigCompositionException):
        compose_config(["data.n_ot=3"])
    with pytest.raises((ConfigCompositionException, ValidationError)):
        compose_config(["model.units=many"])
    with pytest.raises((ConfigCompositionException, ValidationError)):
        compose_config(["model.kind=transformer"])


def test_cli_refuses_bad_config_in_one_line_before_any_run(tmp_path):
    result = run_cli(
        ["model=encdec", "data.n_out=9"], tmp_path, f"sqlite:///{tmp_path / 'mlflow.db'}"
    )
    assert result.returncode == 2
    assert result.stderr.strip() == "echo: bad config: data.n_out=9: must be <= data.n_in (5)"
    assert "Traceback" not in result.stdout + result.stderr
    assert not (tmp_path / "mlflow.db").exists()


@pytest.mark.parametrize(
    "args, returncode",
    [(["--help"], 0), (["--version"], 0), (["--cfg", "job"], 0), (["trainer.epochs=0"], 2)],
)
def test_cli_answers_without_importing_tensorflow_or_mlflow(tmp_path, args, returncode):
    result = run_cli(args, tmp_path, python_flags=["-X", "importtime"])
    assert result.returncode == returncode
    imported = {
        line.split("|")[-1].strip().split(".")[0]
        for line in result.stderr.splitlines()
        if line.startswith("import time:")
    }
    assert "omegaconf" in imported  # the import log was read
    assert not imported & {"tensorflow", "keras", "mlflow"}


@pytest.mark.parametrize("module", ["echo.predict", "echo.report", "echo.study"])
def test_commands_answer_help_with_their_usage_at_once(tmp_path, module):
    result = run_cli(["--help"], tmp_path, module=module, python_flags=["-X", "importtime"])
    assert result.returncode == 0, result.stderr[-2000:]
    assert (
        result.stdout.startswith(f"`python -m {module}`")
        and f"python -m {module} " in result.stdout
    )
    imported = {
        line.split("|")[-1].strip().split(".")[0]
        for line in result.stderr.splitlines()
        if line.startswith("import time:")
    }
    assert "omegaconf" in imported and not imported & {"tensorflow", "keras", "mlflow"}
    assert list(tmp_path.iterdir()) == []  # nothing run, no store made


def test_a_run_loads_neither_scikit_learn_nor_pyplot_nor_ipython(tmp_path):
    """Keras and MLflow would import them all: a second or two of each run's start, for nothing
    echo uses."""
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    result = run_cli(TINY, tmp_path, uri, python_flags=["-X", "importtime"])
    assert result.returncode == 0, result.stderr[-2000:]
    microseconds: dict[str, int] = {}
    for line in result.stderr.splitlines():
        if line.startswith("import time:") and "|" in line:
            _, cumulative, name = line.split("|")
            if cumulative.strip().isdigit():
                microseconds[name.strip()] = max(int(cumulative), microseconds.get(name.strip(), 0))
    assert microseconds["keras"] > 100_000 and "mlflow" in microseconds  # the import log was read
    # A refused import still leaves a line of a few microseconds; loading one takes far longer.
    for name in ("sklearn", "matplotlib.pyplot", "IPython"):
        assert microseconds.get(name, 0) < 1000, (name, microseconds[name])


def test_help_lists_groups_options_and_the_composed_config(tmp_path):
    result = run_cli(["--help", "experiment=attention"], tmp_path)
    assert result.returncode == 0, result.stderr
    assert "  model: encdec, seq2seq" in result.stdout
    assert "attention, encdec_fast," in result.stdout and "  hydra" not in result.stdout
    assert "kind: attention" in result.stdout  # the config as the overrides compose it
