"""`python -m echo.capacity`: how few LSTM units, and how many sequences, each echo length needs.

    python -m echo.capacity                        # the whole study; writes its RESULTS.md section
    python -m echo.capacity sweep=PARENT_RUN_ID    # the section again, from MLflow alone
    python -m echo.capacity resume=PARENT_RUN_ID   # finish a stopped study, keeping its runs
    python -m echo.capacity 'tasks=[3of5]' 'seeds=[1]' 'ladder=[16,32]' folder=dry_run

For each task (echo the oldest n_out of windows of n_in, written `3of5`) and topology
(`encdec`: RepeatVector, stateless like experiment=encdec_fast; `attention`: as
experiment=attention), it finds the fewest units of `ladder` at which every seed of `seeds`
echoes `target` of the validation windows exactly within `budget` training sequences, by
bisection, and the sequences those runs took. First, a small sweep on `calibration_seeds` (not
the study's seeds) picks one batch size (in sequences per update) and learning rate per
topology. Last, the tutorial's regime (`model=encdec`: 150 units, stateful, batch 21) is timed
to the target for each of `tutorial_outs`, up to `tutorial_cap` sequences.

Every run is an MLflow run (experiment `echo-capacity`) under one parent run, and the section
of RESULTS.md between its marker comments is written from those runs alone; so is the block of
README.md that tells what `model=encdec data.n_out=3` reaches, when writing into echo's own
experiments/ folder (or `readme=PATH`)."""

from __future__ import annotations

import datetime
import json
import math
import re
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import List, Optional

import pandas as pd

from echo.config import SOURCE_TREE, parse_key_values
from echo.errors import BadRequest, Interrupted, RunFailed, run_command

DEFAULT_FOLDER = SOURCE_TREE / "experiments" if SOURCE_TREE else None
DEFAULT_README = SOURCE_TREE / "README.md" if SOURCE_TREE else None
SECTION = "capacity"  # the marker of RESULTS.md's section
README_BLOCK = "capacity-readme"  # the marker of README.md's paragraph
# Each topology's preset; the study overrides its task, units, batch size, rate and budget.
TOPOLOGIES = {"encdec": "experiment=encdec_fast", "attention": "experiment=attention"}
NAMES = {"encdec": "RepeatVector", "attention": "attention"}
# Every run: the target judged on 500 validation sequences, checked every 200 sequences.
EVERY_RUN = ["trainer.eval_sequences=500", "trainer.log_every=200", "mlflow.log_model=false"]
# The tutorial's regime as `python -m echo.train model=encdec` runs it, checked every 500.
TUTORIAL = ["model=encdec", "trainer.log_every=500"]
STAGE_TAG = "echo.capacity.stage"  # calibrate, ladder or tutorial
LABELS = ("topology", "task")  # tagged echo.capacity.topology and echo.capacity.task
REQUEST_TAG = "echo.capacity.request"
TASK = re.compile(r"^(\d+)of(\d+)$")


@dataclass
class CapacityConfig:
    tasks: List[str] = field(
        default_factory=lambda: ["1of5", "2of5", "3of5", "4of5", "5of5", "5of10", "10of15"]
    )
    topologies: List[str] = field(default_factory=lambda: list(TOPOLOGIES))
    ladder: List[int] = field(default_factory=lambda: [4, 8, 16, 32, 64, 128])
    seeds: List[int] = field(default_factory=lambda: [1, 2, 3])
    budget: int = 20000  # training sequences per run; the target stops it sooner
    target: float = 0.999  # the fraction of validation windows echoed exactly
    # The sweep that picks each topology's batch size and rate: on other seeds, one task, units.
    calibration_seeds: List[int] = field(default_factory=lambda: [101])
    calibration_task: str = "5of10"
    calibration_units: int = 64
    batch_sequences: List[int] = field(default_factory=lambda: [4, 8])  # sequences per update
    learning_rates: List[float] = field(default_factory=lambda: [0.01, 0.03])
    # The tutorial's regime: model=encdec for each n_out, up to the cap.
    tutorial_outs: List[int] = field(default_factory=lambda: [1, 2, 3, 4, 5])
    tutorial_seeds: List[int] = field(default_factory=lambda: [1])
    tutorial_cap: int = 30000
    experiment: str = "echo-capacity"
    folder: Optional[str] = None  # where RESULTS.md and results/ are; experiments/ unless told
    readme: Optional[str] = None  # the README whose block is rewritten; echo's own by default
    sweep: Optional[str] = None  # an earlier study's parent run: write its section, train nothing
    resume: Optional[str] = None  # a stopped study's parent run: finish it, keeping its runs
    overrides: List[str] = field(default_factory=list)  # more echo.train overrides, every run


def task_of(name: str) -> tuple[int, int]:
    """`3of5` as (n_out, n_in)."""
    found = TASK.match(name)
    if not found:
        raise BadRequest(f"tasks: {name!r} is not a task; write NofM: echo N of windows of M")
    return int(found.group(1)), int(found.group(2))


def check(request: CapacityConfig) -> CapacityConfig:
    """`request` with its folder and README filled in; BadRequest for what cannot work."""
    for name in [*request.tasks, request.calibration_task]:
        n_out, n_in = task_of(name)
        if not 1 <= n_out <= n_in:
            raise BadRequest(f"tasks: {name!r} echoes more values than its window holds")
    for topology in request.topologies:
        if topology not in TOPOLOGIES:
            raise BadRequest(f"topologies: no {topology!r}; choose from {', '.join(TOPOLOGIES)}")
    lists = ("ladder", "seeds", "calibration_seeds", "batch_sequences", "learning_rates")
    for key in lists:
        if not getattr(request, key):
            raise BadRequest(f"{key}: give at least one value")
    if sorted(set(request.ladder)) != request.ladder or request.ladder[0] < 1:
        raise BadRequest(f"ladder={request.ladder}: give unit counts >= 1, smallest first")
    if set(request.calibration_seeds) & set(request.seeds):
        raise BadRequest(
            f"calibration_seeds={request.calibration_seeds}: must not share a seed with "
            f"seeds={request.seeds}: the settings are chosen on other seeds"
        )
    if not 0 < request.target <= 1 or request.budget < 1 or request.tutorial_cap < 1:
        raise BadRequest("target must be in (0, 1]; budget and tutorial_cap must be >= 1")
    if request.folder is None:
        if DEFAULT_FOLDER is None:
            raise BadRequest("folder: not given; installed, echo-capacity writes only where told")
        request.folder = str(DEFAULT_FOLDER)
        if request.readme is None and DEFAULT_README is not None:
            request.readme = str(DEFAULT_README)
    return request


# --- The search, as pure functions of what the runs so far reached --------------------------


def rung_verdict(reached: dict[int, bool], seeds: list[int]) -> Optional[bool]:
    """Whether a size passes: every seed reached the target (True); a seed did not (False,
    from the first such seed on: the size cannot pass); None while seeds remain to run."""
    if any(reached.get(seed) is False for seed in seeds):
        return False
    if all(reached.get(seed) for seed in seeds):
        return True
    return None


def _bisect(ladder: list[int], verdicts: dict[int, bool]) -> tuple[int, Optional[int]]:
    """Bisection over the ladder, assuming that a size that passes has every larger size pass:
    (the index of the fewest passing size, len(ladder) for none), or (-1, the size to try)."""
    low, high = 0, len(ladder)  # every size below low fails; every size from high on passes
    while low < high:
        middle = (low + high) // 2
        verdict = verdicts.get(ladder[middle])
        if verdict is None:
            return -1, ladder[middle]
        low, high = (low, middle) if verdict else (middle + 1, high)
    return low, None


def verdicts_of(ladder, seeds, reached: dict[tuple[int, int], bool]) -> dict[int, bool]:
    """The decided sizes of a ladder, from what each (units, seed) run reached."""
    verdicts = {}
    for units in ladder:
        verdict = rung_verdict({s: r for (u, s), r in reached.items() if u == units}, seeds)
        if verdict is not None:
            verdicts[units] = verdict
    return verdicts


def next_run(ladder, seeds, reached: dict[tuple[int, int], bool]) -> Optional[tuple[int, int]]:
    """The (units, seed) to train next, or None when the ladder is settled."""
    _, size = _bisect(ladder, verdicts_of(ladder, seeds, reached))
    if size is None:
        return None
    seed = next(s for s in seeds if (size, s) not in reached)
    return size, seed


def fewest_passing(ladder, seeds, reached: dict[tuple[int, int], bool]) -> Optional[int]:
    """The fewest units that passed, once the ladder is settled; None if none did (or it is
    not settled yet)."""
    index, size = _bisect(ladder, verdicts_of(ladder, seeds, reached))
    return ladder[index] if size is None and index < len(ladder) else None


def choose_setting(calibration: pd.DataFrame) -> tuple[int, float]:
    """The (batch_sequences, learning_rate) whose calibration runs reached the target on the
    most seeds, then in the fewest sequences, then with the best val_exact: validation only."""
    ranked = (
        calibration.assign(reached=calibration["epochs_to_target"].notna())
        .groupby(["batch_sequences", "learning_rate"])
        .agg(
            reached=("reached", "sum"),
            sequences=("epochs_to_target", "mean"),
            val_exact=("val_exact", "mean"),
        )
        .reset_index()
        .assign(sequences=lambda t: t["sequences"].fillna(math.inf))
        .sort_values(["reached", "sequences", "val_exact"], ascending=[False, True, False])
    )
    best = ranked.iloc[0]
    return int(best["batch_sequences"]), float(best["learning_rate"])


# --- Running: one echo.train run per call, in this process, under one parent ---------------


def compose_job(overrides: list[str], check_it: bool = True):
    """The checked EchoConfig that `python -m echo.train OVERRIDES` would run (unchecked, the
    composed DictConfig); BadRequest naming the run for a value echo.train would refuse."""
    from echo.config import ConfigError, composed, to_echo_config

    config = composed(overrides)
    try:
        return to_echo_config(config) if check_it else config
    except ConfigError as err:
        raise BadRequest(f"{err} (in the run of: {' '.join(overrides)})") from None


class Runs:
    """Trains the study's runs under its parent, one after another in this process, and
    answers from the parent's earlier runs instead when resuming."""

    def __init__(self, parent: str, request: CapacityConfig, earlier: pd.DataFrame):
        self.parent, self.request = parent, request
        self.earlier = {}  # job key -> reached, of runs that finished before
        if len(earlier):
            # A failed run is trained again: a crash says nothing of what its units can do,
            # and a diverged run, seeded alike, diverges again at the cost of one run.
            done = earlier[earlier["status"] == "FINISHED"]
            for row in done.sort_values("start_time").itertuples():
                self.earlier[row.job] = row.reached

    def reached(
        self, stage: str, labels: dict[str, str], overrides: list[str], batch: int = 0
    ) -> bool:
        """Train the run `overrides` describe (unless an earlier attempt did), with batches of
        `batch` whole sequences when given: whether it echoed the target within its budget.
        A run that diverged did not."""
        from echo import train
        from echo.config import windows_per_sequence
        from echo.store import PARENT_TAG
        from echo.sweep import JOB_TAG, job_key

        # The preset first, then what every run shares, then the run's own (the tutorial's
        # checks every 500 sequences win over the study's 200), then the user's.
        preset, *own = overrides
        full = [preset, *EVERY_RUN, *own, f"mlflow.experiment={self.request.experiment}"]
        if batch:  # whole sequences of the task as the user's overrides leave it
            data = compose_job([*full, *self.request.overrides], check_it=False).data
            full.append(f"trainer.batch_size={batch * windows_per_sequence(data)}")
        full += self.request.overrides
        key, name = job_key(full), " ".join([stage, *labels.values()])
        if key in self.earlier:
            print(f"capacity: {name}: kept from before", flush=True)
            return self.earlier[key]
        tags = {
            PARENT_TAG: self.parent,
            JOB_TAG: key,
            STAGE_TAG: stage,
            **{f"echo.capacity.{k}": labels[k] for k in LABELS if k in labels},
            "mlflow.runName": name,
            "echo.command": " ".join(["python -m echo.train", *full]),
        }
        started = time.perf_counter()
        try:
            metrics = train.train(compose_job(full), tags=tags)
            reached = "epochs_to_target" in metrics
            said = (
                f"{metrics['epochs_trained']:,.0f} sequences, val_exact {metrics['val_exact']:.4f}"
            )
        except RunFailed as err:
            reached, said = False, f"failed: {err}"
        seconds = time.perf_counter() - started
        print(f"capacity: {name}: {said} ({seconds:.0f} s)", flush=True)
        return reached


def task_overrides(request, topology: str, task: str, units: int, lr: float, seed: int):
    """echo.train's overrides for one run of a topology on a task (without the batch size)."""
    n_out, n_in = task_of(task)
    return [
        TOPOLOGIES[topology],
        f"data.n_in={n_in}",
        f"data.n_out={n_out}",
        f"model.units={units}",
        f"trainer.learning_rate={lr}",
        f"trainer.epochs={request.budget}",
        f"trainer.target_exact={request.target}",
        f"trainer.seed={seed}",
    ]


def calibrate(runs: Runs, topology: str) -> None:
    """Every batch size and rate of the request, on its calibration task, units and seeds."""
    request = runs.request
    for batch in request.batch_sequences:
        for lr in request.learning_rates:
            for seed in request.calibration_seeds:
                units, task = request.calibration_units, request.calibration_task
                overrides = task_overrides(request, topology, task, units, lr, seed)
                labels = {"topology": topology, "task": task, "setting": f"batch={batch},lr={lr}"}
                runs.reached(
                    "calibrate",
                    {**labels, "seed": f"seed={seed}"},
                    overrides,
                    batch,
                )


def climb(runs: Runs, topology: str, task: str, setting: tuple[int, float]) -> None:
    """Bisect the ladder for the fewest units that reach the target on every seed."""
    request, (batch, lr), reached = runs.request, setting, {}
    while (probe := next_run(request.ladder, request.seeds, reached)) is not None:
        units, seed = probe
        overrides = task_overrides(request, topology, task, units, lr, seed)
        labels = {"topology": topology, "task": task, "units": f"units={units}"}
        reached[probe] = runs.reached(
            "ladder", {**labels, "seed": f"seed={seed}"}, overrides, batch
        )


def tutorial(runs: Runs) -> None:
    """The tutorial's regime, model=encdec, to the target or the cap, for each n_out."""
    request = runs.request
    for n_out in request.tutorial_outs:
        for seed in request.tutorial_seeds:
            overrides = [
                *TUTORIAL,
                f"data.n_out={n_out}",
                f"trainer.epochs={request.tutorial_cap}",
                f"trainer.target_exact={request.target}",
                f"trainer.seed={seed}",
            ]
            n_in = compose_job([*overrides, *request.overrides], check_it=False).data.n_in
            task = f"{n_out}of{n_in}"
            labels = {"topology": "tutorial", "task": task, "seed": f"seed={seed}"}
            runs.reached("tutorial", labels, overrides)


def run_study(request: CapacityConfig) -> str:
    """Every stage under one parent run (a new one, or the one resumed); returns its id."""
    from echo import quiet, tracking
    from echo.capacity_results import collect, settings

    quiet.start_tensorflow()  # as echo.train does: without its notices on a machine without a GPU
    if request.resume:
        vanished_after = compose_job(request.overrides, check_it=False).mlflow.vanished_after
        tracking.check_resumable_sweep(request.resume, vanished_after)
        parent, earlier = tracking.reopen_sweep(request.resume), collect(request.resume)
    else:
        stored = json.dumps(study_fields(request))
        parent = tracking.start_sweep(request.experiment, ["echo.capacity"], {REQUEST_TAG: stored})
        earlier = pd.DataFrame()
    print(f"capacity: parent run {parent} (experiment {request.experiment})", flush=True)
    runs = Runs(parent, request, earlier)
    try:
        with tracking.Heartbeat(parent, 30):
            for topology in request.topologies:
                calibrate(runs, topology)
            chosen = settings(collect(parent))
            for topology in request.topologies:
                for task in request.tasks:
                    climb(runs, topology, task, chosen[topology])
            tutorial(runs)
    except (Interrupted, KeyboardInterrupt):
        why = f"stopped; finish it with: python -m echo.capacity resume={parent}"
        tracking.finish_sweep(parent, pd.DataFrame(), None, None, why)
        raise
    tracking.finish_sweep(parent, collect(parent).drop(columns="start_time"), None, None, None)
    return parent


def study_fields(request: CapacityConfig) -> dict:
    """What the study measured, kept on its parent run: what its section is written from."""
    local = ("folder", "readme", "sweep", "resume")
    return {k: v for k, v in asdict(request).items() if k not in local}


def stored_request(parent: str, request: CapacityConfig) -> CapacityConfig:
    """`request` with the study fields its parent run was started with."""
    from echo import tracking

    stored = tracking.run_tags(parent).get(REQUEST_TAG)
    if stored is None:
        raise BadRequest(f"sweep={parent}: that run is not a capacity study's parent")
    return CapacityConfig(**{**asdict(request), **json.loads(stored)})


def main(argv: list[str]) -> Path:
    request = check(parse_key_values(CapacityConfig, argv))
    if request.resume:
        request = stored_request(request.resume, request)
    parent = request.sweep
    if parent is None:
        started = datetime.datetime.now()
        parent = run_study(request)
        print(f"capacity: the study took {datetime.datetime.now() - started}", flush=True)
    else:
        request = stored_request(parent, request)
    from echo.capacity_results import write_section

    output = write_section(parent, request)
    print(f"echo.capacity: wrote {output}")
    return output


def command() -> None:
    """`echo-capacity` and `python -m echo.capacity`."""
    run_command(main, __doc__)


if __name__ == "__main__":
    command()
