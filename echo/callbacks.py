"""Checks that run once, in the process Hydra starts in, whatever the launcher.

`preflight` composes and validates every job of a run or sweep before Hydra launches any, and
creates the tracking store and experiments that parallel jobs would otherwise race to create.
`EchoCallback` (registered in conf/config.yaml) collects a sweep's failed jobs at its end.
Hydra turns exceptions raised in callbacks into warnings, so refusals happen in `preflight`.
"""

from __future__ import annotations

from pathlib import Path

from hydra import compose, initialize_config_dir
from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
from hydra._internal.utils import get_args_parser
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from echo.config import EchoConfig, to_echo_config
from echo.store import check_reachable, tracking_uri

FAILED_MARKER = "FAILED"  # what a failed job leaves in its output folder, with the reason
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
    # A sweep over explicit values can be checked job by job; other sweepers (Optuna, say)
    # draw their values as they go, so only the first composition is checked.
    jobs = BasicSweeper.split_arguments(overrides, None)[0] if args.multirun else [args.overrides]
    configs: list[EchoConfig] = []
    with initialize_config_dir(str(conf_dir), version_base="1.3"):
        for job in jobs:
            try:
                configs.append(to_echo_config(compose(args.config_name or "config", overrides=job)))
            except Exception:
                if args.multirun and any(o.is_sweep_override() and not o.is_discrete_sweep() for o in overrides):
                    break
                raise
    if args.multirun:
        from echo import tracking

        tracking.prepare({cfg.mlflow.experiment for cfg in configs})


class EchoCallback(Callback):
    # Read by echo.train.cli after the sweep: this callback runs in the same process.
    failed_jobs: list[str] = []

    def on_multirun_end(self, config: DictConfig, **kwargs) -> None:
        markers = sorted(Path(config.hydra.sweep.dir).glob(f"*/{FAILED_MARKER}"))
        EchoCallback.failed_jobs = [path.read_text().strip() for path in markers]
