"""echo's hyperparameter search: Optuna draws the trials, keeps the study in a database and
prunes; Hydra's launcher runs each trial as a job of the sweep; MLflow records the runs.

    python -m echo.train -m experiment=search_encdec
    python -m echo.train -m experiment=encdec_fast hparams_search=encdec hydra.sweeper.n_trials=40

Hydra reaches the sweeper through hydra_plugins/echo_optuna_sweeper (hydra/sweeper=echo_optuna);
the work is here. The sweeper asks Optuna for `n_jobs` trials at a time, hands them to the
launcher as overrides, and then to the next batch. Each job opens its own trial through the
study's storage (`TrialLink`), whichever launcher runs it and on whichever machine: it reports
`val_exact` at every validation, stops when the pruner says so, and tells the trial how it
ended. A sweep killed midway is finished by rerunning it with its parent run
(`hydra.callbacks.echo.resume=PARENT_RUN_ID`): the study goes on toward its `n_trials` in all,
and a trial the kill left RUNNING runs again as a new trial that resumes the same MLflow run.
Optuna is imported inside functions: commands that search nothing never load it.
"""

from __future__ import annotations

import json
import logging
import os
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import ChoiceSweep, IntervalSweep, Override, RangeSweep
from hydra.plugins.sweeper import Sweeper
from omegaconf import DictConfig, OmegaConf

from echo.errors import BadRequest
from echo.store import (
    anchored,
    sqlite_path,
    tracking_uri,
    without_credentials,
    without_password,
)
from echo.sweep import JOB_KEY_ENV, quoted

log = logging.getLogger(__name__)

# What a search job needs to open its trial, passed through its hydra.job.env_set.
TRIAL_ENV = "ECHO_TRIAL"  # the trial's number in its study
STUDY_ENV = "ECHO_STUDY"  # the study's name
STORAGE_ENV = "ECHO_STUDY_STORAGE"  # the study's storage: a database URL or a journal file
# On a trial that runs again one a killed sweep left unfinished: that first trial's number.
RESUMES_ATTR = "echo.resumes_trial"
RUN_ID_ATTR = "mlflow_run_id"  # the MLflow run a trial trained
# A search's tags on its parent run and on each trial's run.
STUDY_TAG = "echo.study_name"
STORAGE_TAG = "echo.study_storage"
TRIAL_TAG = "echo.trial_number"
# The study's default home, beside the tracking store. Optuna's journal file rather than a
# second sqlite database: the jobs of a parallel launcher write to the study at once, and the
# journal appends each write under its own file lock, where sqlite makes a writer that finds
# the database busy fail after a timeout. Never mlflow.db itself: Optuna's and MLflow's
# schemas would both claim its alembic_version table.
JOURNAL_FILE = "optuna.journal"
# Scores a run has at every validation, so that a pruner can judge it midway.
VALIDATION_SCORES = ("val_exact", "val_acc")


@dataclass
class SearchConf:
    """hydra/sweeper=echo_optuna: the keys of Hydra's Optuna sweeper, on current Optuna."""

    _target_: str = "hydra_plugins.echo_optuna_sweeper.echo_optuna_sweeper.EchoOptunaSweeper"
    direction: Any = "maximize"  # or a list: one per objective
    # The summary metrics of each trial's run that the search optimises, one per direction:
    # validation scores and costs (train_seconds), never the test scores.
    objectives: List[str] = field(default_factory=lambda: ["val_exact"])
    study_name: Optional[str] = None  # None: named after the sweep's parent run
    storage: Optional[str] = None  # None: optuna.journal beside the tracking store
    n_trials: int = 20  # in all, counting those of an attempt this one resumes
    n_jobs: int = 2  # trials handed to the launcher at a time
    sampler: Any = field(
        default_factory=lambda: {"_target_": "optuna.samplers.TPESampler", "seed": None}
    )
    pruner: Any = None  # e.g. {_target_: optuna.pruners.MedianPruner}; single objective only
    params: Optional[Dict[str, str]] = None  # key: choice(...), interval(...), range(...)


class OptunaSearch(Sweeper):
    """The sweeper Hydra runs for hydra/sweeper=echo_optuna (its plugin class subclasses this)."""

    def __init__(self, **settings: Any) -> None:
        # The settings are read in `sweep` from the config, as preflight checked them there.
        super().__init__()
        self.hydra_context = self.config = self.launcher = None  # until setup

    def setup(self, *, hydra_context, task_function, config: DictConfig) -> None:
        from hydra.core.plugins import Plugins

        self.hydra_context, self.config = hydra_context, config
        self.launcher = Plugins.instance().instantiate_launcher(
            hydra_context=hydra_context, task_function=task_function, config=config
        )

    def sweep(self, arguments: List[str]) -> None:
        from echo import tracking

        config, settings = self.config, self.config.hydra.sweeper
        resume = OmegaConf.select(config, "hydra.callbacks.echo.resume")
        space, fixed = search_space(settings.params, arguments)
        # The sweep's parent run, made by echo.sweep.EchoCallback before the sweeper starts.
        parent = resume or tracking.find_sweep(
            config.mlflow.experiment, str(config.hydra.sweep.dir)
        )
        name, storage = study_location(settings, resume)
        name = name or f"echo-{parent}"
        study = open_study(settings, name, storage, create=not resume)
        if parent:
            tracking.tag_run(parent, {STUDY_TAG: name, STORAGE_TAG: without_password(storage)})
        # Where every job finds the study: composed into each job's config, as the parent run
        # is (echo.sweep.EchoCallback), and kept off the launcher's log of each job.
        study_environment = {STUDY_ENV: name, STORAGE_ENV: storage}
        config.hydra.overrides.hydra.extend(
            [
                f"++hydra.job.env_set.{key}={quoted(value)}"
                for key, value in study_environment.items()
            ]
        )
        sweep_dir = Path(config.hydra.sweep.dir)
        sweep_dir.mkdir(parents=True, exist_ok=True)
        OmegaConf.save(config, sweep_dir / "multirun.yaml")  # as Hydra's own sweepers do
        rerun_failed = bool(OmegaConf.select(config, "hydra.callbacks.echo.rerun_failed"))
        done = requeue_unfinished(study, rerun_failed)
        self.run_trials(study, space, fixed, settings.n_trials - done)
        if parent:
            record_outcome(study, parent, list(settings.objectives))

    def run_trials(self, study, space: dict, fixed: List[str], remaining: int) -> None:
        """Ask n_jobs trials at a time and launch them as jobs, until `remaining` have run."""
        job = 0
        while remaining > 0:
            trials = [
                study.ask(space) for _ in range(min(self.config.hydra.sweeper.n_jobs, remaining))
            ]
            batch = [job_overrides(trial, fixed) for trial in trials]
            self.launcher.launch(batch, initial_job_idx=job)
            # A job that died, or never opened its trial, left it RUNNING.
            running = study.get_trials(deepcopy=False, states=(_state("RUNNING"),))
            for number in {t.number for t in trials} & {t.number for t in running}:
                log.warning("trial %d: its job ended without a word; FAIL", number)
                study.tell(number, state=_state("FAIL"))
            job, remaining = job + len(trials), remaining - len(trials)


def _state(name: str):
    from optuna.trial import TrialState

    return TrialState[name]


def search_space(
    params: Optional[DictConfig], arguments: List[str]
) -> tuple[dict[str, Any], List[str]]:
    """The Optuna distributions to draw from, by override key, and the overrides every trial
    gets as they are. The command line's override of a key in `params` replaces it; a plain
    value fixes it."""
    lines = {key: f"{key}={value}" for key, value in (params or {}).items()}
    parser = OverridesParser.create()
    for override in parser.parse_overrides(arguments):
        lines[override.key_or_group] = override.input_line
    space, fixed = {}, []
    for override in parser.parse_overrides(list(lines.values())):
        if override.is_sweep_override():
            space[override.get_key_element()] = distribution(override)
        else:
            fixed.append(override.input_line)
    return space, fixed


def distribution(override: Override):
    """The Optuna distribution of one search-space override: choice(...) or a,b,c is
    categorical, interval(a, b) a float (an int with tag(int, ...)) and range(a, b[, step])
    the values Hydra's range gives; tag(log, ...) draws on a log scale."""
    from optuna.distributions import (
        CategoricalDistribution,
        FloatDistribution,
        IntDistribution,
    )

    sweep, line = override.value(), override.input_line
    tags = set(getattr(sweep, "tags", ()))
    if tags - {"log", "int"} or getattr(sweep, "shuffle", False):
        raise BadRequest(f"{line}: a search reads only the tags log and int, and no shuffle")
    log_scale = "log" in tags
    try:
        if isinstance(sweep, ChoiceSweep) and not log_scale:
            choices = list(sweep.list)
            if not all(isinstance(c, (str, int, float, bool)) for c in choices):
                raise ValueError("a choice is a number, a string or a boolean")
            return CategoricalDistribution(choices)
        if isinstance(sweep, IntervalSweep):
            if "int" in tags:
                return IntDistribution(int(sweep.start), int(sweep.end), log=log_scale)
            return FloatDistribution(sweep.start, sweep.end, log=log_scale)
        if isinstance(sweep, RangeSweep):
            values = list(sweep.range())
            if not values or sweep.step <= 0:
                raise ValueError("a range of at least one value, stepping up")
            if all(isinstance(v, int) for v in (sweep.start, sweep.stop, sweep.step)):
                return IntDistribution(values[0], values[-1], step=sweep.step, log=log_scale)
            return FloatDistribution(values[0], values[-1], step=sweep.step, log=log_scale)
    except ValueError as err:  # Optuna's and our own refusals of a space
        raise BadRequest(f"{line}: {err}") from None
    raise BadRequest(f"{line}: a search reads choice, interval, range and tag(log, ...)")


def override_value(value: Any) -> str:
    """A drawn value as Hydra's override grammar reads it back."""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, (int, float)):
        return repr(value)
    plain = re.fullmatch(r"[A-Za-z_][\w./-]*", value)
    return value if plain and value.lower() not in ("true", "false", "null") else quoted(value)


def job_overrides(trial, fixed: List[str]) -> List[str]:
    """A trial's job: the fixed overrides, the values drawn, and which trial it is. The
    hydra.* overrides reach the job's environment, not its task overrides, so they neither
    name its run nor change how a resumed sweep recognises it."""
    drawn = [f"{key}={override_value(value)}" for key, value in trial.params.items()]
    first = trial.user_attrs.get(RESUMES_ATTR, trial.number)
    environment = {
        TRIAL_ENV: str(trial.number),
        JOB_KEY_ENV: f"trial-{first}",  # a trial run again continues the first one's run
    }
    return [
        *fixed,
        *drawn,
        *(f"++hydra.job.env_set.{name}={quoted(value)}" for name, value in environment.items()),
    ]


def storage_of(configured: Optional[str]) -> str:
    """Where a study is kept: the configured Optuna database URL or journal file, or by default
    a journal file beside the sqlite tracking store (in this folder for a tracking server).
    Absolute, for workers that start elsewhere."""
    if configured:
        return anchored(configured) if "://" in configured else os.path.abspath(configured)
    database = sqlite_path(tracking_uri())
    folder = os.path.dirname(os.path.abspath(database)) if database else os.getcwd()
    return os.path.join(folder, JOURNAL_FILE)


def open_storage(storage: str):
    """Optuna's storage for `storage`: a database (sqlite:///, postgresql://, mysql://) or a
    journal file."""
    if "://" in storage:
        return storage  # Optuna opens a database URL itself
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    return JournalStorage(JournalFileBackend(storage))


def study_location(settings: DictConfig, resume: Optional[str]) -> tuple[Optional[str], str]:
    """The study's name (None: not named yet) and storage; when resuming, those the parent
    recorded, unless a storage is given (one whose password the parent's tag leaves out)."""
    if not resume:
        return settings.study_name, storage_of(settings.storage)
    from echo import tracking

    given = f"hydra.callbacks.echo.resume={resume}"
    tags = tracking.run_tags(resume, given)
    if STUDY_TAG not in tags:
        raise BadRequest(f"{given}: that sweep was not an echo_optuna search")
    storage = storage_of(settings.storage) if settings.storage else tags[STORAGE_TAG]
    return tags[STUDY_TAG], storage


def open_study(settings: DictConfig, name: str, storage: str, create: bool):
    """The study, new or as an earlier attempt left it, with the configured sampler and pruner.
    A seeded sampler resuming a study is seeded past the trials it has (seed + their number):
    seeded as at the start, it would draw the first attempt's values again."""
    import optuna
    from hydra.utils import instantiate

    stored = open_storage(storage)
    pruner = instantiate_pruner(settings.pruner)
    if create:
        sampler = instantiate(settings.sampler) if settings.sampler else None
        return optuna.create_study(
            storage=stored,
            sampler=sampler,
            pruner=pruner,
            study_name=name,
            directions=directions(settings),
        )
    sampler, seed = None, OmegaConf.select(settings, "sampler.seed")
    if settings.sampler:
        done = len(optuna.load_study(study_name=name, storage=stored).get_trials(deepcopy=False))
        shifted = {} if seed is None else {"seed": seed + done}
        sampler = instantiate(settings.sampler, **shifted)
    return optuna.load_study(study_name=name, storage=stored, sampler=sampler, pruner=pruner)


def directions(settings: DictConfig) -> List[str]:
    direction = settings.direction
    return [direction] if isinstance(direction, str) else list(direction)


def latest_by_first(trials) -> dict[int, Any]:
    """Each trial of the study as it stands: the newest of a trial and those that ran it
    again, by the first one's number."""
    latest = {}
    for trial in trials:  # in order of number
        latest[trial.user_attrs.get(RESUMES_ATTR, trial.number)] = trial
    return latest


def requeue_unfinished(study, rerun_failed: bool) -> int:
    """Queue again, as new trials of the same values, the trials an earlier attempt left
    RUNNING (marked FAIL first) and, with rerun_failed, those that failed; return how many
    trials are done (complete, pruned or failed) and stay so."""
    done = 0
    for first, trial in latest_by_first(study.get_trials(deepcopy=False)).items():
        unfinished = trial.state == _state("RUNNING")
        if unfinished or (rerun_failed and trial.state == _state("FAIL")):
            if unfinished:
                study.tell(trial.number, state=_state("FAIL"))
            study.enqueue_trial(trial.params, user_attrs={RESUMES_ATTR: first})
            log.info("trial %d ended %s: it runs again", trial.number, trial.state.name)
        elif trial.state.is_finished():
            done += 1
    return done


def record_outcome(study, parent_run_id: str, objectives: List[str]) -> None:
    """Tag the parent with the study's outcome: how its trials ended, and the best trial (its
    run and params) or, for several objectives, the Pareto front, also as a table."""
    import pandas as pd

    from echo import tracking

    latest = latest_by_first(study.get_trials(deepcopy=False)).values()
    states = Counter(trial.state.name for trial in latest)
    tags = {"echo.trials": ", ".join(f"{n} {state}" for state, n in sorted(states.items()))}
    if states.get("COMPLETE") and len(study.directions) == 1:
        best = study.best_trial
        tags.update(
            {
                "echo.best_trial": str(best.number),
                "echo.best_trial_run_id": str(best.user_attrs.get(RUN_ID_ATTR, "")),
                "echo.best_params": json.dumps(best.params),
            }
        )
        log.info("best trial %d: %s %s", best.number, best.value, best.params)
    elif states.get("COMPLETE"):
        front = study.best_trials
        table = pd.DataFrame(
            [
                {
                    "trial": t.number,
                    "run_id": t.user_attrs.get(RUN_ID_ATTR),
                    **dict(zip(objectives, t.values, strict=True)),
                    **t.params,
                }
                for t in front
            ]
        )
        tracking.log_table(parent_run_id, table, "pareto_front.json")
        tags["echo.pareto_front"] = ",".join(str(t.number) for t in front)
    tracking.tag_run(parent_run_id, tags)
    log.info("study %s: trials %s", study.study_name, tags["echo.trials"])


def check(
    settings: DictConfig, overrides: List[str], resume: Optional[str], cluster: bool = False
) -> None:
    """Refuse, before any run starts, a search that cannot work: in one line, naming the key.
    `cluster`: the launcher's jobs may run on other machines (Ray with an address)."""
    from echo.report import METRICS

    objectives, wanted = list(settings.objectives), directions(settings)
    if len(wanted) != len(objectives) or set(wanted) - {"minimize", "maximize"}:
        raise BadRequest(
            f"hydra.sweeper.direction={settings.direction}: minimize or maximize, one per "
            f"objective ({', '.join(objectives)})"
        )
    for name in objectives:
        if name.startswith("eval_"):
            raise BadRequest(
                f"hydra.sweeper.objectives={name}: a search chooses on validation (val_*); "
                "the test scores (eval_*) are only reported"
            )
        if name not in METRICS:
            raise BadRequest(f"hydra.sweeper.objectives={name}: not a metric of the runs")
    if settings.pruner and (len(objectives) > 1 or objectives[0] not in VALIDATION_SCORES):
        raise BadRequest(
            "hydra.sweeper.pruner: pruning judges one objective at each validation "
            f"({' or '.join(VALIDATION_SCORES)}); set hydra.sweeper.pruner=null"
        )
    for key in ("n_trials", "n_jobs"):
        if settings[key] < 1:
            raise BadRequest(f"hydra.sweeper.{key}={settings[key]}: at least 1")
    search_space(settings.params, overrides)
    if cluster and "://" not in storage_of(settings.storage):
        raise BadRequest(
            f"hydra.sweeper.storage={settings.storage or 'null'}: a cluster's jobs cannot reach "
            "a journal file on this machine; give a database they can reach (postgresql://...)"
        )
    check_storage(settings, resume)


def check_storage(settings: DictConfig, resume: Optional[str]) -> None:
    """Refuse the tracking store's own database as the study's, a new study whose name is
    taken, and a study to resume that is not there."""
    import optuna

    name, storage = study_location(settings, resume)
    uri = tracking_uri()
    study_file = storage if "://" not in storage else sqlite_path(storage)
    tracking_file = sqlite_path(uri)
    same_file = (
        study_file and tracking_file and Path(study_file).resolve() == Path(tracking_file).resolve()
    )
    if storage == uri or same_file:
        raise BadRequest(
            f"hydra.sweeper.storage={without_credentials(storage)}: that is the tracking "
            "store; a study needs a database of its own"
        )
    if "://" not in storage and not os.path.exists(storage):
        names = []  # a journal file not written yet holds no study
    else:
        names = optuna.get_all_study_names(open_storage(storage))
    where = without_credentials(storage)
    if resume and name not in names:
        raise BadRequest(
            f"hydra.callbacks.echo.resume={resume}: its study {name} is not in {where}"
        )
    if not resume and name in names:
        raise BadRequest(
            f"hydra.sweeper.study_name={name}: {where} holds that study already; finish it "
            "with hydra.callbacks.echo.resume=PARENT_RUN_ID, or name a new one"
        )


class TrialLink:
    """A search job's side of its trial, opened through the study's storage: whichever
    launcher runs the job, on whichever machine, it reaches the same study."""

    def __init__(self, study, trial, objectives: List[str]):
        self.study, self.trial, self.objectives = study, trial, objectives

    @classmethod
    def of_this_job(cls, sweeper: DictConfig) -> Optional[TrialLink]:
        """The trial of this job, or None for a job that is not a trial of echo's search."""
        number = os.environ.get(TRIAL_ENV)
        if number is None:
            return None
        import optuna

        pruner = instantiate_pruner(sweeper.get("pruner"))
        storage = open_storage(os.environ[STORAGE_ENV])
        study = optuna.load_study(study_name=os.environ[STUDY_ENV], storage=storage, pruner=pruner)
        # Optuna offers no public way from a trial's number to a Trial in another process
        # (optuna/optuna#2987): the storage id of the frozen trial is the one private read.
        frozen = study.get_trials(deepcopy=False)[int(number)]
        return cls(study, optuna.trial.Trial(study, frozen._trial_id), list(sweeper.objectives))

    def tags(self) -> dict[str, str]:
        """Tags that tie the job's run to its trial."""
        return {TRIAL_TAG: str(self.trial.number), STUDY_TAG: self.study.study_name}

    def validated(self, epoch: int, scores: dict[str, float]) -> bool:
        """Report the objective at a validation; whether the pruner stops the run here."""
        if len(self.objectives) > 1 or self.objectives[0] not in scores:
            return False  # Optuna prunes single-objective studies only
        self.trial.report(scores[self.objectives[0]], step=epoch)
        # Only advice: the trainer does not stop at its last validation, so whether the run
        # was pruned is what it says it did (`ran`'s `pruned`), not what was answered here.
        return self.trial.should_prune()

    def ran(self, run_id: str, metrics, pruned: bool) -> None:
        """Tell the trial how its run ended: pruned, or complete with its objectives."""
        from optuna.trial import TrialState

        self.trial.set_user_attr(RUN_ID_ATTR, run_id)
        if pruned:
            self.study.tell(self.trial, state=TrialState.PRUNED, skip_if_finished=True)
            return
        values = [metrics.get(name) for name in self.objectives]
        if None in values:
            self.failed(None)
            return
        self.study.tell(self.trial, [float(v) for v in values], skip_if_finished=True)

    def failed(self, run_id: Optional[str]) -> None:
        from optuna.trial import TrialState

        if run_id:
            self.trial.set_user_attr(RUN_ID_ATTR, run_id)
        self.study.tell(self.trial, state=TrialState.FAIL, skip_if_finished=True)


def instantiate_pruner(pruner: Optional[DictConfig]):
    """The configured pruner, or Optuna's that never prunes (its default would be the median)."""
    import optuna
    from hydra.utils import instantiate

    return instantiate(pruner) if pruner else optuna.pruners.NopPruner()
