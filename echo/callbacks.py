"""Checks that run once, in the process Hydra starts in, whatever the launcher.

`preflight` composes and validates every job of a run or sweep before Hydra launches any, and
creates the tracking store and experiments that parallel jobs would otherwise race to create.
`EchoCallback` (registered in conf/config.yaml) makes a sweep's parent run and, at the end,
its summary, and collects the failed jobs. Before the launcher starts, it also gives the jobs
what they need wherever they run (`job_environment`).
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
from omegaconf import DictConfig, OmegaConf, open_dict

from echo.config import to_echo_config
from echo.errors import BadRequest
from echo.store import anchored, check_reachable, tracking_uri

FAILED_MARKER = "FAILED"  # what a failed job leaves in its output folder, with the reason
SWEEP_ENV = "ECHO_SWEEP"  # the sweep's parent run id and swept keys, for its jobs
ONLY_SHOWS = (
    "help",
    "hydra_help",
    "version",
    "cfg",
    "info",
    "shell_completion",
    "experimental_rerun",
)
# TensorFlow's thread pools, read once when its runtime starts in a process.
TF_THREADS = ("TF_NUM_INTRAOP_THREADS", "TF_NUM_INTEROP_THREADS")
# Ray's switch for a single-machine runtime: every Ray process on 127.0.0.1 (Ray otherwise
# resolves 127.0.0.1 to the machine's network address and listens there).
RAY_LOOPBACK_ENV = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"


def preflight(argv: list[str], conf_dir: Path) -> None:
    """Raise the first config error of any job the command line would run, or
    TrackingUnavailable; then, for a sweep, make the tracking store and the jobs' experiments.
    Commands that only show something pass through."""
    args = get_args_parser().parse_args(argv)
    modes = [
        f"--{name}"
        for name in ("run", "multirun", "cfg", "info", "shell_completion")
        if getattr(args, name, None)
    ]
    if len(modes) > 1:  # Hydra would refuse this with a traceback
        raise BadRequest(
            f"{' and '.join(modes)}: give only one of --run, --multirun, --cfg, --info, "
            "--shell-completion"
        )
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
        configs = [
            to_echo_config(compose(args.config_name or "config", overrides=job)) for job in jobs
        ]
    if args.multirun:
        from echo import tracking

        tracking.prepare({cfg.mlflow.experiment for cfg in configs})


def swept_keys(config: DictConfig) -> list[str]:
    """The keys a sweep varies: its sweep overrides on the command line, and the search space
    in `hydra.sweeper.params` (where the Optuna sweeper and presets keep it)."""
    overrides = OverridesParser.create().parse_overrides(list(config.hydra.overrides.task))
    keys = [o.key_or_group for o in overrides if o.is_sweep_override()]
    params = OmegaConf.select(config, "hydra.sweeper.params")
    return keys + [key for key in (params or {}) if key not in keys]


def job_environment(config: DictConfig, job_env: dict[str, str]) -> None:
    """Give the sweep's jobs `job_env` and TensorFlow thread counts that fit the launcher.

    Local launchers' workers inherit this process's environment; Ray's do not (they are
    started by the Ray runtime, in its directory), so for Ray the variables go into the job's
    runtime_env, with the tracking URI made absolute. Thread counts the user set are kept.
    """
    launcher = config.hydra.launcher
    target = str(launcher.get("_target_", ""))
    cores = os.cpu_count() or 1
    if target.endswith("JoblibLauncher"):
        # One job per core, one TensorFlow thread per job: these small models gain less from
        # a second thread than a second job gains from a core of its own.
        n_jobs = int(launcher.get("n_jobs") or -1)
        parallel = (
            n_jobs if n_jobs > 0 else max(1, cores + 1 + n_jobs)
        )  # joblib's reading of -1, -2, ...
        threads = str(max(1, cores // parallel))
        for name in TF_THREADS:
            os.environ.setdefault(name, threads)
    elif target.endswith("RayLauncher"):
        init = launcher.ray.init
        address = init.get("address") or os.environ.get("RAY_ADDRESS")
        if not address or address.split(":")[0] in ("127.0.0.1", "localhost"):
            os.environ.setdefault(RAY_LOOPBACK_ENV, "0")
        cpus = OmegaConf.select(launcher, "ray.remote.num_cpus") or 1
        env = {name: os.environ.get(name, str(int(cpus))) for name in TF_THREADS}
        env.update(job_env, MLFLOW_TRACKING_URI=anchored(tracking_uri()))
        given = OmegaConf.select(init, "runtime_env.env_vars") or {}
        with open_dict(init):
            init.runtime_env = {**(init.get("runtime_env") or {}), "env_vars": {**env, **given}}
            # The launcher sets a small object store unless told; Ray refuses any size when
            # joining a running runtime, and echo's jobs return one number each.
            init.setdefault("object_store_memory", None)


def sweep_parent() -> tuple[str, list[str]] | None:
    """In a sweep's job: the parent run's id and the swept keys, as EchoCallback left them."""
    sweep = os.environ.get(SWEEP_ENV)
    if not sweep:
        return None
    found = json.loads(sweep)
    return found["parent_run_id"], found["keys"]


class EchoCallback(Callback):
    """Makes a sweep one tree of MLflow runs: a parent run made once, here, before any job
    (jobs find it through an environment variable, which `job_environment` hands to whatever
    workers the launcher starts), and given the results table, the best job and a chart when
    the sweep ends."""

    # Read by echo.train.cli after the sweep: this callback runs in the same process.
    failed_jobs: list[str] = []

    def on_multirun_start(self, config: DictConfig, **kwargs) -> None:
        from echo import tracking

        overrides = list(config.hydra.overrides.task)
        parent = tracking.start_sweep(
            config.mlflow.experiment,
            overrides,
            {"echo.hydra_sweep_dir": str(config.hydra.sweep.dir)},
        )
        os.environ[SWEEP_ENV] = json.dumps({"parent_run_id": parent, "keys": swept_keys(config)})
        # Hydra makes the launcher from this same config after this callback returns.
        job_environment(config, {SWEEP_ENV: os.environ[SWEEP_ENV]})

    def on_multirun_end(self, config: DictConfig, **kwargs) -> None:
        markers = sorted(Path(config.hydra.sweep.dir).glob(f"*/{FAILED_MARKER}"))
        EchoCallback.failed_jobs = [path.read_text().strip() for path in markers]
        parent = sweep_parent()
        if parent:
            from echo import tracking

            tracking.finish_sweep(*parent, EchoCallback.failed_jobs)
            del os.environ[SWEEP_ENV]
