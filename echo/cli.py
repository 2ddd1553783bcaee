"""The command line of `python -m echo.train`: Hydra's arguments, `--help`, one-line errors and
exit codes. The work itself is echo.train's (one run) and echo.sweep's (a multirun)."""

from __future__ import annotations

import gc
import os
import re
import shlex
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.errors import HydraException, OverrideParseException
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from echo import quiet, sweep
from echo.config import CONF_DIR, CONFIG_PATH, ConfigError, check_tracking_uri, register_schema
from echo.environment import BACKEND, BACKEND_VARIABLE, environment
from echo.errors import EchoError, Interrupted, exit_with
from echo.provenance import version_text
from echo.store import tracking_uri

# Keras and MLflow import these whenever they are installed, for scikit-learn wrappers, image
# galleries and notebook checks: a second or two of every run's start, for nothing echo uses.
# Ray (a launcher) imports IPython too, so they are kept out of the jobs alone, not the launch.
UNUSED_IMPORTS = ("sklearn", "matplotlib.pyplot", "IPython")


def hydra_arguments(argv: list[str]):
    """Hydra's own reading of a command line (overrides, -m, --cfg, --help, ...).

    Hydra has no public API for this; `hydra.main` itself uses this parser. Checked against
    Hydra 1.3.8 (tests/test_architecture.py fails if it moves or changes its fields)."""
    from hydra._internal.utils import get_args_parser

    return get_args_parser().parse_args(argv)


@hydra.main(version_base="1.3", config_path=CONFIG_PATH, config_name="config")
def main(cfg: DictConfig) -> float | None:
    """Hydra's task function: one run, or one job of a sweep. Returns the job's objective."""
    from echo import progress, summary, train
    from echo.report import CHOOSE_BY

    hydra_cfg = HydraConfig.get()
    output_dir = Path(hydra_cfg.runtime.output_dir)
    with absent(*UNUSED_IMPORTS):  # in whichever process the launcher runs the job
        if "tensorflow" not in sys.modules:  # a launcher's worker process
            load_training_libraries()
        if hydra_cfg.mode == RunMode.MULTIRUN:
            return sweep.run_job(cfg, hydra_cfg, output_dir)
        echo_cfg, config_yaml = train.job_config(cfg)
        data, model_logged = echo_cfg.data, echo_cfg.mlflow.log_model
        try:
            metrics = train.train(echo_cfg, config_yaml, output_dir, progress=progress.display())
        except EchoError as err:
            if err.run_id:  # where the stopped or failed run is, then why (on stderr)
                status = "KILLED" if isinstance(err, Interrupted) else "FAILED"
                summary.show(summary.run_lines(err.run_id, status, data, model_logged))
            exit_with(err)  # here, before Hydra adds a line of its own
        summary.show(summary.run_lines(metrics.run_id, "FINISHED", data, model_logged))
        return metrics[CHOOSE_BY]


def one_line(err: BaseException) -> str:
    """A config error as one line that names the key and the value."""
    if isinstance(err, ConfigError):
        return str(err)
    if isinstance(err, OverrideParseException):
        return unreadable(err.override)
    options = getattr(err, "options", None)
    missing = getattr(err, "missing_cfg_file", None)
    if missing and options is not None:  # an unknown option of a config group
        group, _, name = missing.rpartition("/")
        return f"{group}={name}: no such option; choose from {', '.join(sorted(options))}"
    cause = err.__cause__ if isinstance(err.__cause__, OmegaConfBaseException) else err
    if isinstance(cause, OmegaConfBaseException) and getattr(cause, "full_key", None):
        given = next(
            (
                a.split("=", 1)[1]
                for a in sys.argv[1:]
                if a.lstrip("+~").split("=", 1)[0] == cause.full_key
            ),
            None,
        )
        key = f"{cause.full_key}={given}" if given is not None else cause.full_key
        return f"{key}: {str(cause.msg).splitlines()[0]}"
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    return " ".join(lines[:2])


def hydra_quoted(value: str) -> str:
    """`value` as a double-quoted string of Hydra's override grammar: a quote, and backslashes
    just before a quote or the end, escaped with a backslash."""
    escaped = re.sub(r'(\\*)("|$)', lambda m: m[1] * 2 + ("\\" + m[2] if m[2] else ""), value)
    return f'"{escaped}"'


def unreadable(override: str) -> str:
    """What to say of an override Hydra's grammar cannot read: how to quote its value."""
    key, equals, value = override.partition("=")
    if not equals or not re.fullmatch(r"[+~]{0,2}[\w.@/-]+", key):
        return f"{override}: not a key=value override Hydra can read"
    suggestion = shlex.quote(f"{key}={hydra_quoted(value)}")
    return (
        f"{override}: Hydra's override grammar cannot read this value; to give it as text, "
        f"quote it for Hydra inside the shell's quotes: {suggestion}"
    )


def app_help(overrides: list[str]) -> str:
    """What `--help` shows: echo's config groups with their options, and the config composed
    from `overrides`.

    Hydra's own help also walks every group of every installed Hydra plugin (launchers,
    sweepers, their samplers), over a second with the scale extra; `--hydra-help` still shows
    Hydra's."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    from echo import train

    with initialize_config_dir(str(CONF_DIR), version_base="1.3"):
        config = OmegaConf.to_yaml(compose("config", overrides=overrides))
        loader = GlobalHydra.instance().config_loader()
        groups = [g for g in sorted(loader.list_groups("")) if g != "hydra"]
        options = "\n".join(
            f"  {group}: {', '.join(loader.get_group_options(group))}" for group in groups
        )
    usage = "\n\n".join(train.__doc__.split("\n\n")[:2])  # what and how
    return (
        f"{usage}\n\n"
        f"Config groups (group=option):\n{options}\n\n"
        f"The config (override any key: key=value):\n{config}\n"
        "--version shows echo's version and its libraries'; --hydra-version, Hydra's.\n"
        "--hydra-help shows Hydra's own options; README.md has the config reference."
    )


@contextmanager
def absent(*modules: str) -> Iterator[None]:
    """Inside the block, importing `modules` fails as if they were not installed, unless they
    are loaded already. For libraries that use them only if they can. Only the command line
    uses it: a module first imported inside would go on believing them missing, so a notebook
    or script calling `train()` keeps them (see load_training_libraries)."""
    blocked = [name for name in modules if name not in sys.modules]
    for name in blocked:
        sys.modules[name] = None  # the import system's mark for "cannot be imported"
    try:
        yield
    finally:
        for name in blocked:
            if sys.modules.get(name, 0) is None:
                del sys.modules[name]


def load_training_libraries() -> None:
    """Import Keras, TensorFlow and MLflow once, for every run this process starts.

    They make millions of long-lived objects: collecting garbage while they load is slow, and
    so is walking them again at every later collection. So they load with the collector off,
    and what they made is moved out of its sight. Scikit-learn, pyplot and IPython are kept
    out of their imports, as out of the jobs (`main`), but not out of the launcher's: Ray
    needs IPython's absence to be a real one."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        with absent(*UNUSED_IMPORTS):
            quiet.start_tensorflow()  # without its notices on a machine without a GPU

            from echo import tracking  # noqa: F401 - MLflow
    finally:
        gc.freeze()
        if was_enabled:
            gc.enable()


def run(argv: list[str]) -> None:
    """Check every job `argv` would run, then hand over to Hydra; raise SweepFailed when a
    sweep's jobs failed."""
    if "--version" in argv:  # Hydra's parser would answer with Hydra's version alone
        print(version_text())
        return
    args = hydra_arguments(["--version" if arg == "--hydra-version" else arg for arg in argv])
    if args.help:
        print(app_help(args.overrides))
        return
    if not any(getattr(args, name, None) for name in sweep.ONLY_SHOWS):
        check_tracking_uri(tracking_uri())
    jobs = sweep.preflight(args, CONF_DIR)
    if jobs is None:  # a command that only shows something
        main()
        return
    started_ms = int(time.time() * 1000)
    load_training_libraries()
    main()
    if args.multirun:
        sweep.raise_if_failed({cfg.mlflow.experiment for cfg in jobs}, started_ms)


def cli() -> None:
    """`python -m echo.train`: config errors and run failures as one line instead of a
    traceback. HYDRA_FULL_ERROR=1 still shows Hydra's complete error and stack trace."""
    full_errors = os.environ.get("HYDRA_FULL_ERROR") == "1"
    register_schema()
    settings = {
        "HYDRA_FULL_ERROR": "1",  # errors reach this function instead of Hydra's printer
        # TensorFlow's C++ start-up chatter, unless the user asked for a level
        "TF_CPP_MIN_LOG_LEVEL": os.environ.get("TF_CPP_MIN_LOG_LEVEL", "2"),
        # Keras on TensorFlow whatever keras.json says; another value is refused before any
        # run (sweep.preflight), and it reaches the launcher's workers from here.
        BACKEND_VARIABLE: os.environ.get(BACKEND_VARIABLE, BACKEND),
    }
    try:
        with environment(**settings), quiet.store_notices_filtered():
            run(sys.argv[1:])
    except (ConfigError, HydraException, OmegaConfBaseException) as err:
        if full_errors:
            raise
        print(f"echo: bad config: {one_line(err)}", file=sys.stderr)
        sys.exit(2)
    except EchoError as err:
        exit_with(err)


def command() -> None:
    """`echo-train` and `python -m echo.train`: the command line, run once in a process."""
    cli()
    # TensorFlow leaves a vast object graph behind; collecting it at exit is slow and pointless.
    gc.freeze()


if __name__ == "__main__":
    command()
