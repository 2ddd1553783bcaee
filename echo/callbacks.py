"""Checks that run once, in the process Hydra starts in, whatever the launcher.

`preflight` composes and validates every job of a run or sweep before Hydra launches any, and
creates the tracking store and experiments that parallel jobs would otherwise race to create.
`EchoCallback` (registered in conf/config.yaml) makes a sweep's parent run and, at the end,
its summary, and collects the failed jobs.
Hydra turns exceptions raised in callbacks into warnings, so refusals happen in `preflight`.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from hydra import compose, initialize_config_dir
from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
from hydra._internal.utils import get_args_parser
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from echo.config import to_echo_config
from echo.store import check_reachable, tracking_uri

FAILED_MARKER = "FAILED"  # what a failed job leaves in its output folder, with the reason
SWEEP_ENV = "ECHO_SWEEP"  # the sweep's parent run id and swept keys, for its jobs
ONLY_SHOWS = ("help", "hydra_help", "version", "cfg", "info", "shell_completion", "experimental_rerun")


def preflight(argv: list[str], conf_dir: Path) -> None:
    """Raise the first config error of any job the command line would run, or
    TrackingUnavailable; then, for a sweep, make the tracking store and the jobs' experiments.
    Commands that only show something pass through."""
    args = get_args_parser().parse_args(argv)
    if any(getattr(args, name, None) for name in ONLY_SHOWS):
        return
    check_reachable(tracking_uri())
    overrides = OverridesParser.create().parse_overrides(args.overrides)
    if not args.multirun:
        jobs = [args.overrides]
    elif all(o.is_discrete_sweep() or not o.is_sweep_override() for o in overrides):
        jobs = BasicSweeper.split_arguments(overrides, None)[0]  # every job, as Hydra will run them
    else:
        # A sweeper that draws from intervals (Optuna, say) picks values as it goes: check what
        # is fixed, and leave the drawn values to each job's own check.
        jobs = [[o.input_line for o in overrides if not o.is_sweep_override()]]
    with initialize_config_dir(str(conf_dir), version_base="1.3"):
        configs = [to_echo_config(compose(args.config_name or "config", overrides=job)) for job in jobs]
    if args.multirun:
        from echo import tracking

        tracking.prepare({cfg.mlflow.experiment for cfg in configs})


def sweep_parent() -> tuple[str, list[str]] | None:
    """In a sweep's job: the parent run's id and the swept keys, as EchoCallback left them."""
    sweep = os.environ.get(SWEEP_ENV)
    if not sweep:
        return None
    found = json.loads(sweep)
    return found["parent_run_id"], found["keys"]


class EchoCallback(Callback):
    """Makes a sweep one tree of MLflow runs: a parent run made once, here, before any job
    (jobs find it through an environment variable, which local launchers' workers inherit), and
    given the results table, the best job and a chart when the sweep ends."""

    # Read by echo.train.cli after the sweep: this callback runs in the same process.
    failed_jobs: list[str] = []

    def on_multirun_start(self, config: DictConfig, **kwargs) -> None:
        from echo import tracking

        overrides = list(config.hydra.overrides.task)
        keys = [o.key_or_group for o in OverridesParser.create().parse_overrides(overrides) if o.is_sweep_override()]
        parent = tracking.start_sweep(config.mlflow.experiment, overrides, {"echo.hydra_sweep_dir": str(config.hydra.sweep.dir)})
        os.environ[SWEEP_ENV] = json.dumps({"parent_run_id": parent, "keys": keys})

    def on_multirun_end(self, config: DictConfig, **kwargs) -> None:
        markers = sorted(Path(config.hydra.sweep.dir).glob(f"*/{FAILED_MARKER}"))
        EchoCallback.failed_jobs = [path.read_text().strip() for path in markers]
        parent = sweep_parent()
        if parent:
            from echo import tracking

            tracking.finish_sweep(*parent)
            del os.environ[SWEEP_ENV]
