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

import numpy as np
import pandas as pd

from echo.config import CONF_DIR, SOURCE_TREE, parse_key_values
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
    from hydra import compose, initialize_config_dir

    from echo.config import ConfigError, register_schema, to_echo_config

    register_schema()
    with initialize_config_dir(str(CONF_DIR), version_base="1.3"):
        composed = compose("config", overrides=list(overrides))
    try:
        return to_echo_config(composed) if check_it else composed
    except ConfigError as err:
        raise BadRequest(f"{err} (in the run of: {' '.join(overrides)})") from None


class Runs:
    """Trains the study's runs under its parent, one after another in this process, and
    answers from the parent's earlier runs instead when resuming."""

    def __init__(self, parent: str, request: CapacityConfig, earlier: pd.DataFrame):
        self.parent, self.request = parent, request
        self.earlier = {}  # job key -> reached, of runs that finished or failed before
        if len(earlier):
            done = earlier[earlier["status"].isin(["FINISHED", "FAILED"])]
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

        full = [*overrides, f"mlflow.experiment={self.request.experiment}", *EVERY_RUN]
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
    from echo import tracking

    if request.resume:
        tracking.check_resumable_sweep(request.resume, 600)
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


# --- Reading back: the runs under the parent, and what they show ---------------------------

PARAMS = {
    "data.n_in": "n_in",
    "data.n_out": "n_out",
    "data.length": "length",
    "model.units": "units",
    "trainer.seed": "seed",
    "trainer.batch_size": "batch_size",
    "trainer.learning_rate": "learning_rate",
    "trainer.epochs": "epochs",
    "trainer.eval_sequences": "eval_sequences",
    "trainer.log_every": "log_every",
}


def collect(parent: str) -> pd.DataFrame:
    """The study's runs, one row each (each job's newest run): stage, topology, task, the
    params of PARAMS, status, reached, the metrics, job and start_time."""
    from echo import report, tracking
    from echo.sweep import JOB_TAG

    runs = tracking.runs_frame(parent_run_id=parent)
    if runs.empty:
        return pd.DataFrame(columns=["stage", "topology", "task", "job", "status", "reached"])
    runs = runs.sort_values("start_time").drop_duplicates(f"tags.{JOB_TAG}", keep="last")
    table = report.runs_table(runs, list(PARAMS)).rename(columns=PARAMS)
    by_id = runs.set_index("run_id")
    for column, tag in (("stage", STAGE_TAG), ("job", JOB_TAG)):
        table[column] = table["run_id"].map(by_id[f"tags.{tag}"])
    for label in LABELS:
        table[label] = table["run_id"].map(by_id[f"tags.echo.capacity.{label}"])
    table["start_time"] = table["run_id"].map(by_id["start_time"])
    table["reached"] = (table["status"] == "FINISHED") & table["epochs_to_target"].notna()
    windows = table["length"] - table["n_in"] + 1
    table["batch_sequences"] = table["batch_size"] / windows
    return table


def settings(runs: pd.DataFrame) -> dict[str, tuple[int, float]]:
    """Each calibrated topology's (batch_sequences, learning_rate), chosen on validation."""
    calibration = runs[runs["stage"] == "calibrate"]  # a diverged run counts as not reached
    return {topology: choose_setting(group) for topology, group in calibration.groupby("topology")}


def ladder_rows(runs: pd.DataFrame, request: CapacityConfig) -> pd.DataFrame:
    """Per topology and task: the fewest passing units (NaN when none passed), whether the
    ladder is settled, the sizes tried, and the sequences and seconds at the fewest size."""
    rows, ladder = [], runs[runs["stage"] == "ladder"].sort_values("start_time")
    for topology in request.topologies:
        for task in request.tasks:
            mine = ladder[(ladder["topology"] == topology) & (ladder["task"] == task)]
            reached = {(int(r.units), int(r.seed)): bool(r.reached) for r in mine.itertuples()}
            fewest = fewest_passing(request.ladder, request.seeds, reached)
            at = mine[mine["units"] == fewest]["epochs_to_target"] if fewest else pd.Series([])
            tried = [
                f"{units:.0f} ({group['reached'].sum()} of {len(group)})"
                for units, group in mine.groupby("units", sort=False)
            ]
            n_out, n_in = task_of(task)
            rows.append(
                {
                    "topology": topology,
                    "task": task,
                    "n_out": n_out,
                    "n_in": n_in,
                    "fewest": float(fewest) if fewest else math.nan,
                    "settled": bool(len(mine))
                    and next_run(request.ladder, request.seeds, reached) is None,
                    "largest": float(mine["units"].max()) if len(mine) else math.nan,
                    "tried": ", ".join(tried),
                    "sequences": at.astype(float).tolist(),
                    "seconds": mine[mine["units"] == fewest]["train_seconds"].mean(),
                }
            )
    return pd.DataFrame(rows)


def needed(row) -> float:
    """Units a settled ladder needed: infinity when the budget ran out at every size."""
    return row.fewest if not math.isnan(row.fewest) else math.inf


def spread(values: list[float]) -> str:
    """Mean ± standard deviation, as the study's tables give them."""
    if not values:
        return "not reached"
    std = float(np.std(values, ddof=1)) if len(values) > 1 else 0.0
    return f"{np.mean(values):,.0f} ± {std:,.0f}"


def fewest_cell(row, request: CapacityConfig) -> str:
    if not row.settled:
        return "not finished"
    if math.isnan(row.fewest):
        return f"budget ran out (up to {row.largest:.0f})"
    return f"{row.fewest:.0f}"


def ladder_table(rows: pd.DataFrame, request: CapacityConfig) -> str:
    lines = [
        "| task | topology | fewest units | sequences to target | training seconds | "
        "sizes tried (seeds that reached, of those run) |",
        "|---|---|---|---|---|---|",
    ]
    for row in rows.itertuples():
        seconds = "" if math.isnan(row.seconds) else f"{row.seconds:.1f}"
        lines.append(
            f"| {row.n_out} of {row.n_in} | {NAMES[row.topology]} | {fewest_cell(row, request)} "
            f"| {spread(row.sequences)} | {seconds} | {row.tried} |"
        )
    return "\n".join(lines)


def fewer_units_sentence(rows: pd.DataFrame, fewer: str, more: str) -> Optional[str]:
    """That `fewer` needed fewer units than `more` on some tasks and more on none: only when
    the settled ladders say so, else None."""
    settled = rows[rows["settled"]]
    pairs = [
        (needed(a), needed(b))
        for (task, group) in settled.groupby("task", sort=False)
        if {fewer, more} <= set(group["topology"])
        for a in group[group["topology"] == fewer].itertuples()
        for b in group[group["topology"] == more].itertuples()
    ]
    if not pairs or any(a > b for a, b in pairs):
        return None
    less = sum(a < b for a, b in pairs)
    if not less:
        return None
    return (
        f"The {NAMES[fewer]} decoder needed fewer units than the {NAMES[more]} one on {less} of "
        f"the {len(pairs)} tasks both settled, and more on none."
    )


def longer_needs_more_sentence(rows: pd.DataFrame, topology: str, n_in: int) -> Optional[str]:
    """That echoing more of an `n_in`-value window never took fewer units with `topology`:
    only when its settled ladders say so (at least two of them), else None."""
    mine = rows[(rows["topology"] == topology) & (rows["n_in"] == n_in) & rows["settled"]]
    mine = mine.sort_values("n_out")
    units = [needed(row) for row in mine.itertuples()]
    if len(units) < 2 or any(b < a for a, b in zip(units, units[1:], strict=False)):
        return None
    said = ", ".join(
        f"{row.n_out} value{'s' if row.n_out > 1 else ''}: "
        + (f"{row.fewest:.0f}" if math.isfinite(needed(row)) else f"more than {row.largest:.0f}")
        for row in mine.itertuples()
    )
    grows = "grew" if units[-1] > units[0] else "stayed the same"
    return (
        f"With the {NAMES[topology]} decoder, echoing more of a {n_in}-value window never took "
        f"fewer units; the units needed {grows} ({said})."
    )


def ran_out_sentence(rows: pd.DataFrame, request: CapacityConfig) -> Optional[str]:
    """Where the budget ran out at every size tried; None where it never did."""
    out = rows[rows["settled"] & rows["fewest"].isna()]
    if out.empty:
        return None
    where = "; ".join(
        f"{NAMES[r.topology]} on {r.n_out} of {r.n_in} (up to {r.largest:.0f} units)"
        for r in out.itertuples()
    )
    return f"The budget of {request.budget:,} sequences ran out at every size tried for: {where}."


def calibration_table(runs: pd.DataFrame, chosen: dict[str, tuple[int, float]]) -> str:
    lines = [
        "| topology | batch (sequences) | learning rate | seeds that reached | sequences to "
        "target | val_exact | chosen |",
        "|---|---|---|---|---|---|---|",
    ]
    calibration = runs[runs["stage"] == "calibrate"]
    for (topology, batch, lr), group in calibration.groupby(
        ["topology", "batch_sequences", "learning_rate"]
    ):
        mark = "yes" if chosen.get(topology) == (int(batch), float(lr)) else ""
        lines.append(
            f"| {NAMES[topology]} | {batch:.0f} | {lr:g} | {group['reached'].sum()} of "
            f"{len(group)} | {spread(group['epochs_to_target'].dropna().tolist())} | "
            f"{group['val_exact'].mean():.4f} | {mark} |"
        )
    return "\n".join(lines)


def tutorial_rows(runs: pd.DataFrame) -> pd.DataFrame:
    """Per n_out of the tutorial's regime: seeds, sequences to target, seconds, the cap."""
    mine = runs[runs["stage"] == "tutorial"]
    rows = [
        {
            "n_out": int(n_out),
            "seeds": len(group),
            "reached": int(group["reached"].sum()),
            "sequences": group["epochs_to_target"].dropna().astype(float).tolist(),
            "seconds": float(group["train_seconds"].mean()),
            "cap": float(group["epochs"].max()),
            "val_exact": float(group["val_exact"].mean()),
        }
        for n_out, group in mine.groupby("n_out")
    ]
    return pd.DataFrame(rows)


def tutorial_table(tutorial: pd.DataFrame) -> str:
    lines = [
        "| n_out | seeds that reached | sequences to target | training seconds | "
        "val_exact at the end |",
        "|---|---|---|---|---|",
    ]
    for row in tutorial.itertuples():
        to_target = spread(row.sequences) if row.reached else f"not within {row.cap:,.0f}"
        lines.append(
            f"| {row.n_out} | {row.reached} of {row.seeds} | {to_target} | {row.seconds:.1f} | "
            f"{row.val_exact:.4f} |"
        )
    return "\n".join(lines)


def regime(runs: pd.DataFrame) -> str:
    """The tutorial regime's units, batch and rate, as its runs record them."""
    mine = runs[runs["stage"] == "tutorial"]
    return (
        f"`model=encdec`: {values(mine, 'units')} units, stateful, batches of "
        f"{values(mine, 'batch_size')} windows, learning rate "
        + " and ".join(f"{v:g}" for v in sorted(set(mine["learning_rate"])))
    )


def tutorial_sentence(tutorial: pd.DataFrame, target: float, said: str) -> Optional[str]:
    """How many sequences the tutorial's regime took per n_out, and where the cap ran out."""
    if tutorial.empty:
        return None
    done = tutorial[tutorial["reached"] == tutorial["seeds"]]
    parts = [
        f"{r.n_out} value{'s' if r.n_out > 1 else ''} in {np.mean(r.sequences):,.0f} sequences"
        for r in done.itertuples()
    ]
    short = tutorial[tutorial["reached"] < tutorial["seeds"]]
    text = (
        f"In the tutorial's regime ({said}), echoing reached {target:.1%} of validation "
        "windows exactly for "
        + ("; ".join(parts) if parts else "no n_out")
        + (f" ({tutorial['seeds'].max()} seed{'s' if tutorial['seeds'].max() > 1 else ''})")
    )
    if len(short):
        outs = " and ".join(str(r.n_out) for r in short.itertuples())
        text += f"; for n_out {outs}, not every seed did within {short['cap'].max():,.0f}"
    return text + "."


def readme_paragraph(runs, rows, tutorial, request) -> Optional[str]:
    """What `python -m echo.train model=encdec data.n_out=3` reaches, and what to run for a
    perfect 3-value echo, from the study's runs; None without the runs to say it."""
    three = tutorial[tutorial["n_out"] == 3] if len(tutorial) else tutorial
    passed = rows[(rows["task"] == "3of5") & rows["fewest"].notna()]
    if three.empty or passed.empty:
        return None
    row = three.iloc[0]
    after = (
        f"reached {request.target:.1%} of validation windows exactly after "
        f"{np.mean(row.sequences):,.0f} sequences ({row.seconds:.0f} s of training)"
        if row.reached
        else f"had not reached {request.target:.1%} after {row.cap:,.0f} sequences"
    )
    best = passed.sort_values("seconds").iloc[0]
    batch, lr = settings(runs)[best.topology]
    at = runs[(runs["stage"] == "ladder") & (runs["task"] == "3of5")]
    at = at[(at["topology"] == best.topology) & (at["units"] == best.fewest)]
    overrides = task_overrides(request, best.topology, "3of5", int(best.fewest), lr, 1)[:-1]
    command = " ".join([*overrides, f"trainer.batch_size={at['batch_size'].iloc[0]:.0f}"])
    within = bool(row.reached) and max(row.sequences) <= 5000
    return (
        "`python -m echo.train model=encdec data.n_out=3` trains the tutorial's regime for 5,000 "
        f"sequences, {'enough for' if within else 'short of'} an exact echo: in the capacity "
        "study (`python -m echo.capacity`, "
        f"[experiments/RESULTS.md](experiments/RESULTS.md)) that regime, trained on, {after}. "
        "For a perfect 3-value echo sooner, run\n\n"
        f"```bash\npython -m echo.train {command}\n```\n\n"
        f"the {NAMES[best.topology]} decoder with the fewest units that reached the target on "
        f"all {len(best.sequences)} seeds: it took {spread(best.sequences)} sequences "
        f"({best.seconds:.1f} s of training on average)."
    )


def values(runs: pd.DataFrame, column: str) -> str:
    """The values a param took in `runs`, as prose: "500", or "100 and 500"."""
    found = sorted(set(runs[column].dropna()))
    return " and ".join(f"{v:,.0f}" for v in found) or "an unknown number of"


def section(runs: pd.DataFrame, parent: str, request: CapacityConfig) -> tuple[str, object]:
    """RESULTS.md's section (without its markers) and its figure, from the runs alone."""
    from echo import figures, tracking

    rows, tutorial = ladder_rows(runs, request), tutorial_rows(runs)
    chosen, ladders = settings(runs), runs[runs["stage"] != "tutorial"]
    experiment, started, minutes = tracking.run_facts(parent)
    took = f"; it took {minutes:.0f} minutes" if minutes is not None else " (still running)"
    stated = "; ".join(
        f"{NAMES[t]}: batches of {b} sequence{'s' if b > 1 else ''}, learning rate {lr:g}"
        for t, (b, lr) in chosen.items()
    )
    sentences = [
        fewer_units_sentence(rows, "attention", "encdec"),
        fewer_units_sentence(rows, "encdec", "attention"),
        *(longer_needs_more_sentence(rows, t, n_in=5) for t in request.topologies),
        ran_out_sentence(rows, request),
        tutorial_sentence(tutorial, request.target, regime(runs)),
    ]
    lines = [
        "## How much network a longer echo needs",
        "",
        f"Generated by `python -m echo.capacity`; regenerate this section from its runs with "
        f"`python -m echo.capacity sweep={parent}`. Run on {started:%Y-%m-%d}{took} "
        f"({len(runs)} runs under parent run `{parent}`, MLflow experiment `{experiment}`).",
        "",
        f"- Per task and topology: the fewest units of the ladder {request.ladder} at which every "
        f"seed of {request.seeds} echoed {request.target:.1%} of the windows of "
        f"{values(ladders, 'eval_sequences')} validation sequences exactly within "
        f"{request.budget:,} training sequences, found by bisection (assumed: a "
        "size that passes has every larger size pass). A size fails at its first seed that "
        "misses, and its other seeds are not run.",
        "- Sequences to target: mean ± standard deviation over the seeds at that size, counted "
        f"in steps of the {values(ladders, 'log_every')} sequences between checks.",
        f"- One batch size and learning rate per topology, chosen by a sweep on seeds "
        f"{request.calibration_seeds} (echo {request.calibration_task.replace('of', ' of ')}, "
        f"{request.calibration_units} units) on the most seeds that reached the target, then the "
        f"fewest sequences, then val_exact: {stated}.",
        "",
        ladder_table(rows, request),
        "",
        "![Units needed against echo length](results/capacity.png)",
        "",
        " ".join(s for s in sentences if s),
        "",
        "The calibration sweep:",
        "",
        calibration_table(runs, chosen),
        "",
        f"The tutorial's regime, up to {request.tutorial_cap:,} sequences:",
        "",
        tutorial_table(tutorial),
    ]
    return "\n".join(lines), figures.units_needed(rows, NAMES, request.ladder)


def write_section(parent: str, request: CapacityConfig) -> Path:
    """Put the study's section into RESULTS.md (keeping the rest) and its paragraph into the
    README (when there is one to write), from the parent's runs alone."""
    from echo.marked import with_block

    runs = collect(parent)
    if runs.empty:
        raise BadRequest(f"sweep={parent}: the study has no runs")
    text, figure = section(runs, parent, request)
    output = Path(request.folder) / "RESULTS.md"
    (output.parent / "results").mkdir(parents=True, exist_ok=True)
    figure.savefig(output.parent / "results" / "capacity.png", dpi=90)
    before = output.read_text() if output.exists() else ""
    output.write_text(with_block(before, SECTION, text))
    paragraph = readme_paragraph(runs, ladder_rows(runs, request), tutorial_rows(runs), request)
    if request.readme and paragraph:
        readme = Path(request.readme)
        readme.write_text(with_block(readme.read_text(), README_BLOCK, paragraph))
    return output


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
    output = write_section(parent, request)
    print(f"echo.capacity: wrote {output}")
    return output


def command() -> None:
    """`echo-capacity` and `python -m echo.capacity`."""
    run_command(main, __doc__)


if __name__ == "__main__":
    command()
