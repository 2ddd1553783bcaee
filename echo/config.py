"""The typed config: what `conf/` must compose into, and the rules a type cannot express.

`conf/config.yaml` starts from this schema (`register_schema`), so Hydra merges the YAML
onto these dataclasses and a misspelt key or a value of the wrong type fails at composition.
`validate` then checks the cross-field rules. Both happen
before TensorFlow or MLflow are imported and before any run exists.
"""

from __future__ import annotations

import math
import os
import re
import shlex
import urllib.parse
from dataclasses import dataclass, field
from enum import Enum
from operator import attrgetter
from pathlib import Path
from typing import Optional, Sequence, TypeVar

from omegaconf import MISSING, DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

T = TypeVar("T")

PACKAGE_DIR = Path(__file__).resolve().parent
# The repository echo runs from, when it runs from its source tree (an editable install, or the
# tree on the path); None when it runs installed from a wheel. A wheel carries conf/ inside the
# package, as echo/conf, and nothing beside it.
SOURCE_TREE: Optional[Path] = (
    PACKAGE_DIR.parent
    if (PACKAGE_DIR.parent / "pyproject.toml").is_file()
    and (PACKAGE_DIR.parent / "conf" / "config.yaml").is_file()
    else None
)
# The configs, whatever the working directory: conf/ of the source tree, or the installed copy.
CONF_DIR = SOURCE_TREE / "conf" if SOURCE_TREE else PACKAGE_DIR / "conf"
# Where Hydra's main reads them. Installed, by package name rather than by path: a launcher that
# composes a job again elsewhere (submitit on a SLURM node) finds them in that machine's install.
CONFIG_PATH = str(CONF_DIR) if SOURCE_TREE else "pkg://echo.conf"
# The name conf/config.yaml gives this schema, first in its defaults list.
SCHEMA_NAME = "echo_schema"


class ModelKind(str, Enum):
    seq2seq = "seq2seq"  # the tutorial's first program: one output per input step
    encdec = "encdec"  # the tutorial's second program: encoder, RepeatVector, decoder
    attention = "attention"  # encdec whose decoder also attends over the encoder's outputs
    one_to_one = "one_to_one"  # the whole window as one timestep's features, the echo as one vector
    many_to_one = "many_to_one"  # one value per timestep in, the echo as one output vector


class Representation(str, Enum):
    one_hot = "one_hot"  # the tutorial's: n_unique features in, softmax over n_unique out
    linear = "linear"  # values scaled to 0..1, a regression head with MSE, rounded back


class Optimizer(str, Enum):
    adam = "adam"
    adamw = "adamw"
    rmsprop = "rmsprop"
    sgd = "sgd"


# Fields carry types and meaning only; their values live once, in the YAML under conf/.
@dataclass
class DataConfig:
    n_unique: int = MISSING  # values are integers 0..n_unique-1
    length: int = MISSING  # values per random sequence; one sequence per epoch
    n_in: int = MISSING  # window length fed to the model
    n_out: int = MISSING  # how many of the window's OLDEST values to echo
    # Keep the n_in - 1 windows at each sequence's start that the tutorial drops, with the
    # missing values set to PAD and masked: every value of a sequence starts a window.
    pad_incomplete: bool = MISSING


@dataclass
class ModelConfig:
    kind: ModelKind = MISSING
    representation: Representation = MISSING
    units: int = MISSING
    stateful: bool = MISSING
    # Unrolling the few timesteps lets XLA fuse them: same maths, several times faster here.
    unroll: bool = MISSING


@dataclass
class TrainerConfig:
    epochs: int = MISSING  # one epoch = one fresh random sequence, as in the tutorial
    batch_size: int = MISSING
    seed: int = MISSING  # seeds the data streams and the initial weights
    optimizer: Optimizer = MISSING
    learning_rate: float = MISSING
    eval_sequences: int = MISSING  # fresh held-out sequences scored after training
    sample_echoes: int = MISSING  # echoes printed and logged as a table
    # Stop once this fraction of validation windows is echoed exactly (null: train all epochs).
    target_exact: Optional[float] = MISSING
    # Epochs per compiled training call: progress lines, metric flushes and target checks
    # happen between calls.
    log_every: int = MISSING
    # Score the whole validation set after the call that passes each multiple of this many
    # epochs, and at the end: the val_acc and val_exact curves.
    validate_every: int = MISSING
    jit_compile: bool = MISSING  # XLA-compile the training loop
    # Save a checkpoint into the run after the call that ends this many seconds of training
    # after the last one (null: only when stopped by a signal). A hard kill loses at most this
    # much training plus one call.
    checkpoint_every: Optional[float] = MISSING
    # Continue this MLflow run from its newest checkpoint, with the config it was started with.
    resume: Optional[str] = MISSING


@dataclass
class MlflowConfig:
    experiment: str = MISSING
    run_name: Optional[str] = MISSING
    log_model: bool = MISSING
    # Seconds between a running run's heartbeats (its `echo.heartbeat` tag), from a thread.
    heartbeat_every: float = MISSING
    # A RUNNING run whose heartbeat is older than this many seconds is marked FAILED, as
    # vanished, by the next echo command that opens its experiment.
    vanished_after: float = MISSING


@dataclass
class EchoConfig:
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    mlflow: MlflowConfig = field(default_factory=MlflowConfig)


def register_schema() -> None:
    """Store the schema in Hydra's ConfigStore, where conf/config.yaml names it, and make echo's
    sweeper known to Hydra: call before composing. A function, not an import side effect, so
    that the ML core can use these dataclasses without importing Hydra."""
    from hydra.core.config_store import ConfigStore
    from hydra.core.plugins import Plugins

    ConfigStore.instance().store(name=SCHEMA_NAME, node=EchoConfig)
    # echo's own sweeper (hydra/sweeper=echo_optuna): importing it stores its config node, and
    # registering it spares it Hydra's scan of hydra_plugins, which misses editable installs.
    from hydra_plugins.echo_optuna_sweeper.echo_optuna_sweeper import EchoOptunaSweeper

    Plugins.instance().register(EchoOptunaSweeper)


class ConfigError(ValueError):
    """A config value that cannot work; the message names the key, the value and the rule."""

    def __init__(self, key: str, value: object, rule: str):
        super().__init__(f"{key}={value}: {rule}")
        self.key, self.value, self.rule = key, value, rule

    def __reduce__(self):
        # Pickled as it was made: Ray sends a job's exception back to the launching process.
        return ConfigError, (self.key, self.value, self.rule)


# The value padded windows hold where the sequence has not started yet (the tutorial suggests
# -1): outside 0..n_unique-1, so it can never be mistaken for data.
PAD = -1


def windows_per_sequence(data: DataConfig) -> int:
    if data.pad_incomplete:
        return data.length  # 25
    # Framing drops the n_in - 1 rows the shift leaves incomplete: 25 - 5 + 1 = 21.
    return data.length - data.n_in + 1


# The least value each count may take.
MINIMUMS = {
    "data.n_unique": 2,
    "data.n_in": 1,
    "data.n_out": 1,
    "model.units": 1,
    "trainer.epochs": 1,
    "trainer.batch_size": 1,
    "trainer.eval_sequences": 1,
    "trainer.sample_echoes": 0,
    "trainer.log_every": 1,
    "trainer.validate_every": 1,
}


def validate(cfg: EchoConfig) -> EchoConfig:
    """Raise ConfigError for the first rule `cfg` breaks; return it unchanged otherwise."""
    for key, least in MINIMUMS.items():
        value = attrgetter(key)(cfg)
        if value < least:
            raise ConfigError(key, value, f"must be >= {least}")
    d, m, t = cfg.data, cfg.model, cfg.trainer
    if d.n_out > d.n_in:
        raise ConfigError("data.n_out", d.n_out, f"must be <= data.n_in ({d.n_in})")
    if d.n_in > d.length:
        raise ConfigError("data.n_in", d.n_in, f"must be <= data.length ({d.length})")
    if not t.learning_rate > 0 or not math.isfinite(t.learning_rate):
        raise ConfigError("trainer.learning_rate", t.learning_rate, "must be a finite number > 0")
    if t.target_exact is not None and not 0 < t.target_exact <= 1:
        raise ConfigError("trainer.target_exact", t.target_exact, "must be in (0, 1], or null")
    if t.checkpoint_every is not None and not t.checkpoint_every > 0:
        raise ConfigError("trainer.checkpoint_every", t.checkpoint_every, "must be > 0, or null")
    for key in ("mlflow.heartbeat_every", "mlflow.vanished_after"):
        if not attrgetter(key)(cfg) > 0:
            raise ConfigError(key, attrgetter(key)(cfg), "must be > 0")
    windows = windows_per_sequence(d)
    if m.stateful and windows % t.batch_size:
        raise ConfigError(
            "trainer.batch_size",
            t.batch_size,
            f"must divide the {windows_explained(d)} for a stateful model, "
            f"so that state resets fall between batches",
        )
    if windows % t.batch_size and t.batch_size % windows:
        raise ConfigError(
            "trainer.batch_size",
            t.batch_size,
            f"must divide, or be a multiple of, the {windows_explained(d)}",
        )
    return cfg


def windows_explained(data: DataConfig) -> str:
    """The windows per sequence and the keys they come from, which the user may have given
    rather than the batch size a rule names."""
    if data.pad_incomplete:
        return (
            f"{data.length} windows per sequence "
            f"(data.length={data.length}, with data.pad_incomplete=true)"
        )
    return (
        f"{windows_per_sequence(data)} windows per sequence "
        f"(data.length={data.length} - data.n_in={data.n_in} + 1)"
    )


# An interpolation that is one reference to another key: ${data.n_in}, ${.n_in}, ${..x.y}.
REFERENCE = re.compile(r"\$\{(\.*)([\w.]+)\}")


def source_of(cfg: DictConfig, key: str) -> Optional[str]:
    """The key whose value `key` takes through interpolations (`data.n_out: ${data.n_in}`),
    or None when `key` holds a value of its own."""
    current = key
    for _ in range(20):  # a chain of references; a longer one is not followed
        parent_key, _, leaf = current.rpartition(".")
        parent = OmegaConf.select(cfg, parent_key) if parent_key else cfg
        if not isinstance(parent, DictConfig) or not OmegaConf.is_interpolation(parent, leaf):
            break
        reference = REFERENCE.fullmatch(str(OmegaConf.to_container(parent)[leaf]))
        if reference is None:  # a resolver or a string with a value inside: no one key
            return None
        dots, target = reference.groups()
        if dots:  # relative: one dot is the node's own parent, each more goes one up
            base = parent_key.split(".") if parent_key else []
            target = ".".join([*base[: len(base) - len(dots) + 1], target])
        current = target
    return current if current != key else None


def to_echo_config(cfg: DictConfig) -> EchoConfig:
    """Turn Hydra's composed config into the validated, typed object the rest of echo takes."""
    # The groups are typed, so a stray key inside one fails at composition; one added at the
    # top level (+foo=1) would slip through to_object unnoticed.
    for key in set(cfg) - set(EchoConfig.__dataclass_fields__):
        raise ConfigError(
            key,
            cfg[key],
            f"no such key; the config has {', '.join(EchoConfig.__dataclass_fields__)}",
        )
    echo_cfg = OmegaConf.to_object(cfg)
    assert isinstance(echo_cfg, EchoConfig), "conf/config.yaml must start from echo_schema"
    try:
        return validate(echo_cfg)
    except ConfigError as err:
        given = source_of(cfg, err.key)
        if given is None:
            raise
        # The refused value came through an interpolation: name the key it came from.
        rule = f"{err.rule} ({err.key} follows it: ${{{given}}})"
        raise ConfigError(given, OmegaConf.select(cfg, given), rule) from None


def composed(overrides: Sequence[str] = ()) -> DictConfig:
    """conf/config.yaml composed with `overrides`, as `python -m echo.train OVERRIDES` composes
    it, unchecked. Inside a running Hydra app, with that app's own config search path."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    register_schema()
    if GlobalHydra.instance().is_initialized():
        return compose("config", overrides=list(overrides))
    with initialize_config_dir(str(CONF_DIR), version_base="1.3"):
        return compose("config", overrides=list(overrides))


def defaults() -> DictConfig:
    """The value of every key with no overrides, including keys added since a run was saved."""
    return composed()


def from_saved(config_yaml: str) -> EchoConfig:
    """The config a run saved (its config.yaml), validated. A key the run's version of echo
    did not have yet takes today's default, so runs logged before it still resume and
    predict."""
    saved = OmegaConf.create(config_yaml)
    return to_echo_config(OmegaConf.merge(defaults(), saved))


def flat_params(cfg: EchoConfig) -> dict[str, object]:
    """The whole config as dotted keys (`data.n_out`, `model.units`, ...) for logging."""
    container = OmegaConf.to_container(OmegaConf.structured(cfg), enum_to_str=True)

    def walk(node: object, prefix: str) -> dict[str, object]:
        if isinstance(node, dict):
            return {
                k: v
                for key, child in node.items()
                for k, v in walk(child, f"{prefix}{key}.").items()
            }
        return {prefix[:-1]: node}

    return walk(container, "")


def parse_key_values(schema: type[T], argv: list[str]) -> T:
    """`key=value` arguments (OmegaConf's form) checked against the dataclass `schema`; bad
    ones raise BadRequest naming the key."""
    from echo.errors import BadRequest

    try:
        given = OmegaConf.from_cli(argv)
    except Exception as err:  # noqa: BLE001 - YAML's own errors, for values it cannot read
        raise BadRequest(
            f"arguments {' '.join(argv)}: not key=value pairs ({str(err).splitlines()[0]})"
        ) from None
    try:
        return OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(schema), given))
    except OmegaConfBaseException as err:
        raise BadRequest(
            f"{getattr(err, 'full_key', '') or 'arguments'}: {str(err).splitlines()[0]}"
        ) from None


def check_tracking_uri(uri: str) -> None:
    """BadRequest for a folder of files as the tracking store (file:./mlruns, ./mlruns):
    MLflow 3 refuses to write one unless MLFLOW_ALLOW_FILE_STORE is set, with a traceback."""
    from echo.errors import BadRequest

    parts = urllib.parse.urlsplit(uri)
    allowed = os.environ.get("MLFLOW_ALLOW_FILE_STORE", "").lower() in ("true", "1")
    if parts.scheme not in ("", "file") or allowed:
        return
    folder = urllib.parse.unquote(parts.path) if parts.scheme else uri
    raise BadRequest(
        f"MLFLOW_TRACKING_URI={uri}: MLflow no longer records into a folder of files; unset "
        "MLFLOW_TRACKING_URI to record into sqlite:///mlflow.db (echo's default), and move the "
        f"runs already in {folder} there with: mlflow migrate-filestore --source "
        f"{shlex.quote(folder)} --target sqlite:///mlflow.db"
    )
