"""Sweeps: every job checked before any starts, one MLflow parent run, and a summary at the end.

The sweep's state travels one way each way, through public channels:
- out, to the jobs: `hydra.job.env_set`, Hydra's own field for a job's environment, carried in
  each job's config to wherever the launcher runs it (joblib's workers, Ray's, SLURM's nodes);
- back, from the jobs: MLflow. A job that fails tags the parent run (`record_failed_job`), the
  end of the sweep reads the children and those tags, and the command line reads the parent.

Hydra turns exceptions raised in callbacks into warnings, so refusals happen in `preflight`.
"""

from __future__ import annotations

import hashlib
import itertools
import logging
import os
from pathlib import Path
from typing import Optional

from hydra import compose, initialize_config_dir
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf, open_dict

from echo import resources
from echo.config import ConfigError, EchoConfig, to_echo_config
from echo.errors import BadRequest, Interrupted, RunFailed, SweepFailed, exit_with
from echo.store import PARENT_TAG, anchored, tracking_uri, without_credentials

log = logging.getLogger(__name__)

PARENT_ENV = "ECHO_SWEEP_PARENT"  # a job's parent run id
SWEPT_KEYS_ENV = "ECHO_SWEPT_KEYS"  # the keys the sweep varies, comma-separated
RESUMING_ENV = "ECHO_SWEEP_RESUMING"  # "1": the parent ran before; "rerun_failed": and more
# How a job of a sweep is known across attempts: a digest of its own overrides, sorted, or
# the name its sweeper gives it (a search names its trials: two may draw the same values).
JOB_TAG = "echo.sweep_job"
JOB_KEY_ENV = "ECHO_SWEEP_JOB"
ONLY_SHOWS = (
    "help",
    "hydra_help",
    "version",
    "cfg",
    "info",
    "shell_completion",
    "experimental_rerun",
)
MODES = ("run", "multirun", "cfg", "info", "shell_completion")
# TensorFlow's thread pools, read once when its runtime starts in a process.
TF_THREADS = ("TF_NUM_INTRAOP_THREADS", "TF_NUM_INTEROP_THREADS")
# Ray's switch for a single-machine runtime: every Ray process on 127.0.0.1 (Ray otherwise
# resolves 127.0.0.1 to the machine's network address and listens there).
RAY_LOOPBACK_ENV = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"
JOBLIB = "hydra_plugins.hydra_joblib_launcher.joblib_launcher.JoblibLauncher"
# The class of Hydra's own launcher (hydra/launcher=basic): one job after another, in this
# process, so each has the terminal to itself.
BASIC = "BasicLauncher"
RAY = "hydra_plugins.hydra_ray_launcher.ray_launcher.RayLauncher"
SEARCH_SWEEPER = "EchoOptunaSweeper"  # echo's Optuna search, hydra/sweeper=echo_optuna


def preflight(args, conf_dir: Path) -> Optional[list[EchoConfig]]:
    """The validated config of every job Hydra's `args` would run, having made the tracking
    store and the jobs' experiments for a sweep; None for commands that only show something.
    Raises the first job's config error, TrackingUnavailable, or WrongBackend."""
    from echo.environment import check_keras_backend
    from echo.store import check_reachable

    modes = [f"--{name}" for name in MODES if getattr(args, name, None)]
    if len(modes) > 1:  # Hydra would refuse this with a traceback
        raise BadRequest(
            f"{' and '.join(modes)}: give only one of --run, --multirun, --cfg, --info, "
            "--shell-completion"
        )
    if any(getattr(args, name, None) for name in ONLY_SHOWS):
        return None
    check_keras_backend()
    check_reachable(tracking_uri())
    jobs = job_overrides(args.overrides) if args.multirun else [args.overrides]
    name = args.config_name or "config"
    with initialize_config_dir(str(conf_dir), version_base="1.3"):
        configs = [to_echo_config(compose(name, overrides=job)) for job in jobs]
        launcher_config = compose(name, overrides=jobs[0], return_hydra_config=True).hydra
        launcher = launcher_config.launcher
    at_once, limit = memory_per_launcher(launcher, len(jobs)) if args.multirun else (1, None)
    for cfg in configs:
        resources.check_fits(cfg, at_once, limit)
    if args.multirun:
        from echo import tracking

        resume = OmegaConf.select(launcher_config, "callbacks.echo.resume")
        if resume:
            tracking.check_resumable_sweep(resume, configs[0].mlflow.vanished_after)
        if str(launcher_config.sweeper.get("_target_")).endswith(SEARCH_SWEEPER):
            from echo import search

            search.check(launcher_config.sweeper, args.overrides, resume, uses_cluster(launcher))
        # Parallel jobs creating a fresh store at once trip over each other's migrations.
        vanished_after = max(cfg.mlflow.vanished_after for cfg in configs)
        tracking.prepare({cfg.mlflow.experiment for cfg in configs}, vanished_after)
    return configs


def job_overrides(overrides: list[str]) -> list[list[str]]:
    """Every job of a grid sweep, as Hydra's basic sweeper will run them. A sweeper that draws
    from intervals (Optuna, say) picks values as it goes: then only what is fixed is known, and
    the drawn values are left to each job's own check."""
    parsed = OverridesParser.create().parse_overrides(overrides)
    if not all(o.is_discrete_sweep() or not o.is_sweep_override() for o in parsed):
        return [[o.input_line for o in parsed if not o.is_sweep_override()]]
    choices = [
        [f"{o.get_key_element()}={value}" for value in o.sweep_string_iterator()]
        if o.is_sweep_override()
        else [o.input_line]
        for o in parsed
    ]
    return [list(job) for job in itertools.product(*choices)]


def swept_keys(config: DictConfig) -> list[str]:
    """The keys a sweep varies: its sweep overrides on the command line, and the search space
    in `hydra.sweeper.params` (where the Optuna sweeper and presets keep it)."""
    overrides = OverridesParser.create().parse_overrides(list(config.hydra.overrides.task))
    keys = [o.key_or_group for o in overrides if o.is_sweep_override()]
    params = OmegaConf.select(config, "hydra.sweeper.params")
    return keys + [key for key in (params or {}) if key not in keys]


def joblib_parallel(launcher: DictConfig) -> int:
    """How many jobs Hydra's joblib launcher runs at once, as joblib reads n_jobs."""
    cores = os.cpu_count() or 1
    n_jobs = int(launcher.get("n_jobs") or -1)
    return n_jobs if n_jobs > 0 else max(1, cores + 1 + n_jobs)  # joblib's -1, -2, ...


def joblib_environment(launcher: DictConfig) -> dict[str, str]:
    """One job per core, one TensorFlow thread per job: these small models gain less from a
    second thread than a second job gains from a core of its own."""
    threads = max(1, (os.cpu_count() or 1) // joblib_parallel(launcher))
    return {name: str(threads) for name in TF_THREADS}


def memory_per_launcher(launcher: DictConfig, jobs: int) -> tuple[int, Optional[int]]:
    """How many of a sweep's jobs share this machine's memory at once, and the memory each may
    have when the launcher says (SLURM's mem_gb; None: what this machine has available)."""
    target = str(launcher.get("_target_", ""))
    if target == JOBLIB:
        return min(jobs, joblib_parallel(launcher)), None
    if launcher.get("mem_gb"):  # a cluster's job gets its own
        return 1, int(launcher.mem_gb * 2**30)
    return 1, None


def ray_environment(launcher: DictConfig) -> dict[str, str]:
    """As many TensorFlow threads as the CPUs each job asks Ray for. Ray's workers start in
    the Ray runtime's folder, so a relative sqlite store is made absolute by the caller."""
    init = launcher.ray.init
    with open_dict(init):
        # The launcher sets a small object store unless told; Ray refuses any size when
        # joining a running runtime, and echo's jobs return one number each.
        init.setdefault("object_store_memory", None)
    cpus = OmegaConf.select(launcher, "ray.remote.num_cpus") or 1
    return {name: str(int(cpus)) for name in TF_THREADS}


# What each launcher's jobs need beyond what its own config can say. Hydra's joblib config has
# no environment field, and the right values depend on the machine's cores.
LAUNCHER_ENVIRONMENTS = {JOBLIB: joblib_environment, RAY: ray_environment}


def uses_local_ray(launcher: DictConfig) -> bool:
    """A Ray sweep that starts or joins a runtime on this machine's loopback."""
    if launcher.get("_target_") != RAY:
        return False
    address = launcher.ray.init.get("address") or os.environ.get("RAY_ADDRESS")
    return not address or address.split(":")[0] in ("127.0.0.1", "localhost")


def uses_cluster(launcher: DictConfig) -> bool:
    """A launcher whose jobs may run on other machines: they cannot reach this one's files."""
    return launcher.get("_target_") == RAY and not uses_local_ray(launcher)


def tracking_environment() -> dict[str, str]:
    """The store the jobs record to: this process's, with a relative sqlite path made absolute
    for workers that start elsewhere. A URI with credentials in it is left to the workers'
    own environment, since each job's config (with its env_set) is saved in its folder."""
    uri = tracking_uri()
    if without_credentials(uri) != uri:
        return {}
    return {"MLFLOW_TRACKING_URI": anchored(uri)}


def quoted(value: str) -> str:
    """`value` as a quoted string in Hydra's override grammar."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


class EchoCallback(Callback):
    """Makes a sweep one tree of MLflow runs: a parent run made once, here, before any job, and
    given the results table, the best job and a chart when the sweep ends.
    Registered in conf/config.yaml."""

    def __init__(self, resume: Optional[str] = None, rerun_failed: bool = False) -> None:
        # resume: the parent run of an earlier attempt at this sweep, to finish it: set with
        # hydra.callbacks.echo.resume=PARENT_RUN_ID (rerun_failed=true also reruns the jobs
        # that failed, rather than keeping their verdict).
        self.resume, self.rerun_failed = resume, rerun_failed
        self.parent_run_id: Optional[str] = None
        self.heartbeat = None  # the parent's, while the sweep runs
        self.environment_before: dict[str, Optional[str]] = {}

    def __getstate__(self) -> dict:
        # Launchers pickle Hydra's context, callbacks included, to their workers (joblib): the
        # parent's heartbeat thread stays in this process.
        return {**self.__dict__, "heartbeat": None}

    def on_multirun_start(self, config: DictConfig, **kwargs) -> None:
        from echo import tracking

        overrides = list(config.hydra.overrides.task)
        if self.resume:
            self.parent_run_id = tracking.reopen_sweep(self.resume)
        else:
            self.parent_run_id = tracking.start_sweep(
                config.mlflow.experiment,
                overrides,
                {"echo.hydra_sweep_dir": str(config.hydra.sweep.dir)},
            )
        self.heartbeat = tracking.Heartbeat(self.parent_run_id, config.mlflow.heartbeat_every)
        self.heartbeat.__enter__()
        launcher = config.hydra.launcher
        tuning = LAUNCHER_ENVIRONMENTS.get(launcher.get("_target_"), lambda _: {})(launcher)
        job_env = {
            PARENT_ENV: self.parent_run_id,
            SWEPT_KEYS_ENV: ",".join(swept_keys(config)),
            **tracking_environment(),
            **({RESUMING_ENV: "rerun_failed" if self.rerun_failed else "1"} if self.resume else {}),
            **tuning,
            **{name: os.environ[name] for name in TF_THREADS if name in os.environ},
        }
        # Each job's config is composed again from these overrides, wherever it runs.
        config.hydra.overrides.hydra.extend(
            [f"++hydra.job.env_set.{name}={quoted(value)}" for name, value in job_env.items()]
        )
        if uses_local_ray(launcher):  # read by ray.init, in this process
            self.environment_before = {RAY_LOOPBACK_ENV: os.environ.get(RAY_LOOPBACK_ENV)}
            os.environ.setdefault(RAY_LOOPBACK_ENV, "0")

    def on_multirun_end(self, config: DictConfig, **kwargs) -> None:
        if self.heartbeat is not None:
            self.heartbeat.__exit__(None, None, None)
        for name, value in self.environment_before.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        if self.parent_run_id:
            summarise(self.parent_run_id, swept_keys(config))


def job_tags(task_overrides: list[str], echo_cfg: EchoConfig) -> dict[str, str]:
    """A sweep job's tags: the command that reruns it alone, its parent, and a run name that
    says what it varied."""
    # A launcher's worker (joblib's, Ray's) has its own command line: name this job's instead.
    tags = {"echo.command": " ".join(["python -m echo.train", *task_overrides])[:5000]}
    parent = os.environ.get(PARENT_ENV)
    if parent:
        tags[PARENT_TAG] = parent
        tags[JOB_TAG] = job_key(task_overrides)
        keys = set(filter(None, os.environ.get(SWEPT_KEYS_ENV, "").split(",")))
        swept = [o for o in task_overrides if o.split("=", 1)[0].lstrip("+~") in keys]
        if echo_cfg.mlflow.run_name is None and swept:
            tags["mlflow.runName"] = ",".join(swept)
    return tags


def job_key(task_overrides: list[str]) -> str:
    """The name its sweeper gave the job, or a digest of its overrides: quotes in a value cannot
    break a search for it."""
    if os.environ.get(JOB_KEY_ENV):
        return os.environ[JOB_KEY_ENV]
    return hashlib.sha1(",".join(sorted(task_overrides)).encode()).hexdigest()[:20]


def earlier_attempt(task_overrides: list[str]) -> tuple[Optional[object], bool]:
    """When resuming a sweep, this job's run from an earlier attempt: to keep (FINISHED, or
    FAILED unless rerun_failed) or to continue from its checkpoint (KILLED, vanished, or
    still marked RUNNING), with whether to keep it. (None, False) when the job is to run
    afresh: never started, rerun, or stopped before its first checkpoint. The summary keeps
    each job's newest run."""
    resuming = os.environ.get(RESUMING_ENV)
    if not resuming:
        return None, False
    from echo import tracking

    run = tracking.sweep_job(os.environ[PARENT_ENV], JOB_TAG, job_key(task_overrides))
    if run is None:
        return None, False
    tags = run.data.tags
    if run.info.status == "FINISHED":
        return run, True
    if run.info.status == "FAILED" and tags.get(tracking.VANISHED_TAG) != "true":
        return (None, False) if resuming == "rerun_failed" else (run, True)
    return (run, False) if tracking.CHECKPOINT_TAG in tags else (None, False)


def run_job(cfg: DictConfig, hydra_cfg: DictConfig, output_dir: Path) -> Optional[float]:
    """One job of a sweep. One failed job must not stop the others: it tells the parent why it
    failed and gives sweepers no objective. That includes a config error, since a sweeper that
    draws values (Optuna) is checked per job. A job of echo's search also tells its trial, at
    each validation and at the end (echo.search.TrialLink)."""
    from echo import progress, search, train
    from echo.report import CHOOSE_BY

    task = list(hydra_cfg.overrides.task)
    # Bars for jobs run one after another; lines for parallel ones, which share the terminal.
    launcher = str(hydra_cfg.launcher.get("_target_", ""))
    shown = progress.display(parallel=launcher.rpartition(".")[2] != BASIC)
    trial = None
    try:
        trial = search.TrialLink.of_this_job(hydra_cfg.sweeper)
        echo_cfg, config_yaml = train.job_config(cfg)
        earlier, keep = earlier_attempt(task)
        if keep:
            return kept(earlier, hydra_cfg.job.num, trial)
        if earlier is not None:  # killed or vanished: it goes on from its newest checkpoint
            echo_cfg.trainer.resume = earlier.info.run_id
            echo_cfg, config_yaml = train.resumed_config(echo_cfg)
        tags = {**job_tags(task, echo_cfg), **(trial.tags() if trial else {})}
        prune = trial.validated if trial else None
        metrics = train.train(echo_cfg, config_yaml, output_dir, tags, shown, prune)
        if trial is not None:
            trial.ran(metrics.run_id, metrics, metrics.pruned)
        return metrics[CHOOSE_BY]
    except Interrupted as err:
        exit_with(err)  # the user stopped the sweep, not one job
    except Exception as err:  # noqa: BLE001 - any failure of one job
        if isinstance(err, ConfigError):
            log.error("job refused: %s", err)
        else:
            log.exception("job failed")
        reason = str(err).splitlines()[0] if str(err) else type(err).__name__
        parent = os.environ.get(PARENT_ENV)
        if parent:
            from echo import tracking

            number = hydra_cfg.job.num
            tracking.record_failed_job(parent, number, f"#{number} {','.join(task)}: {reason}")
        if trial is not None:
            trial.failed(getattr(err, "run_id", None))
        # No objective: Hydra's basic sweeper ignores what jobs return, and echo's search
        # hears of the failure from the trial.
        return None


def kept(earlier, number: int, trial) -> Optional[float]:
    """The objective of a job that ended before, in a resumed sweep; RunFailed if it failed."""
    from echo import tracking
    from echo.report import CHOOSE_BY

    status, run_id = earlier.info.status, earlier.info.run_id
    log.info("job #%s ended %s before, as run %s: kept", number, status, run_id)
    if status == "FAILED":
        raise RunFailed(earlier.data.tags.get("echo.failure", "it failed before"))
    if trial is not None:
        pruned = earlier.data.tags.get(tracking.PRUNED_TAG) == "true"
        trial.ran(run_id, earlier.data.metrics, pruned)
    return earlier.data.metrics.get(CHOOSE_BY)


def summarise(parent_run_id: str, keys: list[str]) -> None:
    """End the sweep's parent run with its results table, best job and chart: FAILED, with
    the reasons, if any job failed or did not finish. Then say what the sweep made."""
    from echo import figures, report, summary, tracking

    runs = tracking.runs_frame(parent_run_id=parent_run_id)
    if f"tags.{JOB_TAG}" in runs and len(runs):  # a resumed sweep: each job's newest run
        newest = runs.sort_values("start_time").drop_duplicates(f"tags.{JOB_TAG}", keep="last")
        runs = newest if runs[f"tags.{JOB_TAG}"].notna().all() else runs
    table = report.runs_table(runs, keys) if len(runs) else runs
    best = report.best_run(table) if len(runs) else None
    chart = None
    if best is not None:
        chart = figures.sweep_chart(report.finished(table), keys, report.CHOOSE_BY)
    failures = tracking.failed_jobs(parent_run_id)
    unfinished = int((~table["status"].isin(["FINISHED", "PRUNED"])).sum()) if len(runs) else 0
    if unfinished and not failures:
        failures = [f"{unfinished} job(s) did not finish"]
    tracking.finish_sweep(parent_run_id, table, best, chart, "; ".join(failures) or None)
    command = None
    if best is not None and "tags.echo.command" in runs:
        command = runs.loc[runs["run_id"] == best["run_id"], "tags.echo.command"].iloc[0]
    command = command if isinstance(command, str) else None  # NaN: a run without the tag
    summary.show(summary.sweep_lines(parent_run_id, bool(failures), best, command, failures))


def raise_if_failed(experiments: set[str], since_ms: int) -> None:
    """SweepFailed if the sweep this process ran (into one of `experiments`) recorded failed
    jobs."""
    from echo import tracking

    for parent in tracking.sweeps_of_this_process(experiments, since_ms)[:1]:
        failures = tracking.failed_jobs(parent.info.run_id)
        if failures:
            raise SweepFailed(f"{len(failures)} job(s) of the sweep failed: {'; '.join(failures)}")
