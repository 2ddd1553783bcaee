"""Side-by-side timings of the tutorial's loop, Keras' `fit`, a PyTorch peer and echo's loop,
written into the READMEs.

    python benchmarks/run.py               # seeds 1, 2, 3 of everything, tuning first
    python benchmarks/run.py --quick       # a smoke check of every piece: one seed, tiny budgets

First, tuning on seeds of its own (never the benchmark's): encdec_fast and the PyTorch peer each
choose a batch size and learning rate from the same small grid, and Keras' `fit` route chooses
its steps_per_execution and jit_compile, each by the least training time that met the target on
validation. Then every entry runs once per seed as its own process, entries alternating within
each seed so that load on this shared machine falls on all of them alike. Whole-process time is
measured around the process, peak memory is its maximum resident set, and training time and
held-out scores come from the process itself (echo's from the MLflow run it logged). The table
shows medians of the times and mean ± standard deviation of the scores over the seeds; every
entry of a seed is scored on the same held-out windows, echo's test stream for that seed.
The tutorial_encdec run at 500 epochs beside the 5,000-epoch one shows whether peak memory
grows with trainer.epochs.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import importlib.util
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Optional

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
FIT = "keras_fit.py"


@dataclass(frozen=True)
class Plan:
    """What one benchmark runs: the full one, or a quick smoke check of every piece."""

    seeds: tuple[int, ...]
    tuning_seeds: tuple[int, ...]  # disjoint from `seeds`
    grid: tuple[tuple[int, float], ...]  # (batch size, learning rate) for encdec_fast and peer
    fit_steps: dict[str, tuple[int, ...]]  # steps_per_execution to try, per preset
    fit_tuning_epochs: dict[str, Optional[int]]  # a shorter budget for the fit route's sweep
    tutorial_epochs: Optional[int] = None  # cut the tutorial programs to this many sequences
    logging_overhead: bool = True
    flag: str = ""  # how the command line asked for it


FULL = Plan(
    seeds=(1, 2, 3),
    tuning_seeds=(101, 102),
    grid=tuple((batch, rate) for batch in (42, 84, 168) for rate in (0.01, 0.03)),
    fit_steps={"tutorial_encdec": (1, 10, 100), "encdec_fast": (1, 10, 60)},
    fit_tuning_epochs={"tutorial_encdec": 1000, "encdec_fast": None},
)
QUICK = Plan(
    seeds=(1,),
    tuning_seeds=(101,),
    grid=((84, 0.03), (168, 0.03)),
    fit_steps={"tutorial_encdec": (1, 100), "encdec_fast": (1, 60)},
    fit_tuning_epochs={"tutorial_encdec": 100, "encdec_fast": None},
    tutorial_epochs=100,
    logging_overhead=False,
    flag=" --quick",
)


@dataclass(frozen=True)
class Entry:
    name: str
    args: list[str]  # after `python`, before the seed
    note: str = ""
    compared_with: Optional[str] = None
    extra: list[str] = field(default_factory=list)

    @property
    def is_echo(self) -> bool:
        return self.args[:2] == ["-m", "echo.train"]

    @property
    def experiment(self) -> str:
        return "bench_" + re.sub(r"[^a-z0-9]+", "_", self.name.lower()).strip("_")

    def command(self, seed: int) -> list[str]:
        if self.is_echo:
            return [*self.args, f"trainer.seed={seed}", f"mlflow.experiment={self.experiment}"]
        return [*self.args, "--seed", str(seed)]


BASELINE_SEQ2SEQ = "tutorial seq2seq: fit per sequence"
BASELINE_ENCDEC = "tutorial encdec: fit per sequence"
ECHO_SEQ2SEQ = "echo tutorial_seq2seq"
ECHO_ENCDEC = "echo tutorial_encdec"
FIT_ENCDEC = "Keras fit: tutorial_encdec"
ECHO_FAST = "echo encdec_fast"
FIT_FAST = "Keras fit: encdec_fast"
PEER = "PyTorch peer at encdec_fast's settings"
ECHO_TUNED = "echo encdec_fast, tuned"
PEER_TUNED = "PyTorch peer, tuned"
HAS_TORCH = importlib.util.find_spec("torch") is not None  # the optional peer: the `peer` extra
NO_TORCH = 'The PyTorch peer was not run: torch is not installed (`pip install -e ".[peer]"`).'


@dataclass
class Choices:
    """What tuning chose: (batch size, learning rate) for echo and the peer; steps_per_execution
    and jit_compile for the fit route, per preset."""

    echo: dict
    peer: Optional[dict]
    fit: dict[str, dict]


def python(args: list[str], workdir: Path, tracking_uri: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "MLFLOW_TRACKING_URI": tracking_uri}
    done = subprocess.run(
        [sys.executable, *args], cwd=workdir, env=env, capture_output=True, text=True
    )
    if done.returncode:
        raise SystemExit(f"python {' '.join(args)} failed:\n{done.stderr[-2000:]}")
    return done


def json_lines(output: str) -> list[dict]:
    return [json.loads(line) for line in output.splitlines() if line.startswith("{")]


def tune(plan: Plan, workdir: Path, tracking_uri: str) -> Choices:
    """Choose each contender's settings on the tuning seeds, by validation."""
    echo = tune_echo(plan, workdir, tracking_uri)
    peer = tune_peer(plan, workdir, tracking_uri) if HAS_TORCH else None
    return Choices(echo, peer, tune_fit(plan, workdir, tracking_uri))


def tune_echo(plan: Plan, workdir: Path, tracking_uri: str) -> dict:
    from speed_table import choose

    seeds = ",".join(str(s) for s in plan.tuning_seeds)
    batches = ",".join(sorted({str(b) for b, _ in plan.grid}, key=int))
    rates = ",".join(sorted({str(r) for _, r in plan.grid}, key=float))
    # encdec_fast: one multirun of the grid, its jobs one after another in one process.
    python(
        [
            "-m",
            "echo.train",
            "-m",
            "experiment=encdec_fast",
            f"trainer.batch_size={batches}",
            f"trainer.learning_rate={rates}",
            f"trainer.seed={seeds}",
            "mlflow.experiment=bench_tuning",
            "mlflow.log_model=false",
        ],
        workdir,
        tracking_uri,
    )
    echo_trials = echo_runs(tracking_uri, "bench_tuning")
    echo = choose(echo_trials, ("batch_size", "learning_rate"), target=True)
    print(f"tuning: encdec_fast chose {echo} from {len(echo_trials)} runs", flush=True)
    return echo


def tune_peer(plan: Plan, workdir: Path, tracking_uri: str) -> dict:
    from speed_table import choose

    trials = []
    for batch, rate in plan.grid:
        for seed in plan.tuning_seeds:
            args = [f"--batch-size={batch}", f"--learning-rate={rate}", f"--seed={seed}"]
            out = python([str(HERE / "torch_peer.py"), *args], workdir, tracking_uri)
            trials.append(
                {**json_lines(out.stdout)[-1], "batch_size": batch, "learning_rate": rate}
            )
    peer = choose(trials, ("batch_size", "learning_rate"), target=True)
    print(f"tuning: the PyTorch peer chose {peer} from {len(trials)} runs", flush=True)
    return peer


def tune_fit(plan: Plan, workdir: Path, tracking_uri: str) -> dict[str, dict]:
    from speed_table import choose

    seeds = ",".join(str(s) for s in plan.tuning_seeds)
    fit = {}
    for preset, steps in plan.fit_steps.items():
        epochs = plan.fit_tuning_epochs[preset]
        out = python(
            [
                str(HERE / FIT),
                preset,
                "--sweep",
                ",".join(map(str, steps)),
                "--seeds",
                seeds if epochs is None else str(plan.tuning_seeds[0]),
                *([] if epochs is None else [f"trainer.epochs={epochs}"]),
            ],
            workdir,
            tracking_uri,
        )
        trials = json_lines(out.stdout)
        has_target = preset != "tutorial_encdec"
        fit[preset] = choose(trials, ("steps_per_execution", "jit_compile"), target=has_target)
        print(f"tuning: Keras fit of {preset} chose {fit[preset]}", flush=True)
    return fit


def entries(plan: Plan, choices: Choices) -> list[Entry]:
    cut = plan.tutorial_epochs
    short = cut // 2 if cut else 500  # beside the whole run: does peak memory grow with epochs?
    echo_cut = [f"trainer.epochs={cut}"] if cut else []
    baseline_cut = [f"--sequences={cut}"] if cut else []

    def fit_entry(name: str, preset: str, compared_with: Optional[str]) -> Entry:
        fit = choices.fit[preset]
        jit = str(fit["jit_compile"]).lower()
        return Entry(
            name,
            [
                str(HERE / FIT),
                preset,
                f"--steps-per-execution={fit['steps_per_execution']}",
                f"--jit-compile={jit}",
                *(echo_cut if preset == "tutorial_encdec" else []),
            ],
            f"steps_per_execution={fit['steps_per_execution']}, jit_compile={jit}",
            compared_with,
        )

    tuned = choices.echo
    found = [
        Entry(BASELINE_SEQ2SEQ, [str(HERE / "tutorial_baseline.py"), "seq2seq", *baseline_cut]),
        Entry(
            ECHO_SEQ2SEQ,
            ["-m", "echo.train", "experiment=tutorial_seq2seq", *echo_cut],
            compared_with=BASELINE_SEQ2SEQ,
        ),
        Entry(BASELINE_ENCDEC, [str(HERE / "tutorial_baseline.py"), "encdec", *baseline_cut]),
        fit_entry(FIT_ENCDEC, "tutorial_encdec", BASELINE_ENCDEC),
        Entry(
            ECHO_ENCDEC,
            ["-m", "echo.train", "experiment=tutorial_encdec", *echo_cut],
            compared_with=BASELINE_ENCDEC,
        ),
        Entry(
            f"echo tutorial_encdec at {short} epochs",
            ["-m", "echo.train", "experiment=tutorial_encdec", f"trainer.epochs={short}"],
        ),
        fit_entry(FIT_FAST, "encdec_fast", None),
        Entry(ECHO_FAST, ["-m", "echo.train", "experiment=encdec_fast"], compared_with=FIT_FAST),
        Entry(
            ECHO_TUNED,
            [
                "-m",
                "echo.train",
                "experiment=encdec_fast",
                f"trainer.batch_size={tuned['batch_size']}",
                f"trainer.learning_rate={tuned['learning_rate']}",
            ],
            f"batch {tuned['batch_size']}, learning rate {tuned['learning_rate']}",
        ),
    ]
    if choices.peer:
        peer = choices.peer
        found += [
            Entry(PEER, [str(HERE / "torch_peer.py")]),
            Entry(
                PEER_TUNED,
                [
                    str(HERE / "torch_peer.py"),
                    f"--batch-size={peer['batch_size']}",
                    f"--learning-rate={peer['learning_rate']}",
                ],
                f"batch {peer['batch_size']}, learning rate {peer['learning_rate']}",
            ),
        ]
    return found


def run_once(entry: Entry, seed: int, workdir: Path, tracking_uri: str) -> dict:
    env = {**os.environ, "MLFLOW_TRACKING_URI": tracking_uri}
    with open(workdir / "stdout", "w+") as stdout, open(workdir / "stderr", "w+") as stderr:
        start = time.perf_counter()
        process = subprocess.Popen(
            [sys.executable, *entry.command(seed)],
            cwd=workdir,
            env=env,
            stdout=stdout,
            stderr=stderr,
        )
        # wait4 reports this child's own peak resident memory.
        _, status, usage = os.wait4(process.pid, 0)
        whole = time.perf_counter() - start
        if status:
            stderr.seek(0)
            raise SystemExit(f"{entry.name} failed:\n{stderr.read()[-2000:]}")
        stdout.seek(0)
        output = stdout.read()
    result = {
        "whole_seconds": whole,
        "peak_mb": usage.ru_maxrss / 1024,
    }  # ru_maxrss is KiB on Linux
    if entry.is_echo:
        result.update(latest_echo_run(tracking_uri, entry.experiment))
    else:
        result.update(json_lines(output)[-1])
    return result


def latest_run(tracking_uri: str, experiment: str):
    """The MLflow run an echo command logged last in `experiment`."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri)
    return client.search_runs(
        [client.get_experiment_by_name(experiment).experiment_id],
        order_by=["start_time DESC"],
        max_results=1,
    )[0]


def latest_echo_run(tracking_uri: str, experiment: str) -> dict:
    run = latest_run(tracking_uri, experiment)
    return {key: run.data.metrics[key] for key in ("train_seconds", "eval_acc", "eval_exact")}


def echo_runs(tracking_uri: str, experiment: str) -> list[dict]:
    """Every finished run of `experiment`: its batch size, learning rate and summary metrics."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri)
    found = client.get_experiment_by_name(experiment)
    runs = client.search_runs([found.experiment_id], "attributes.status = 'FINISHED'")
    return [
        {
            "batch_size": int(run.data.params["trainer.batch_size"]),
            "learning_rate": float(run.data.params["trainer.learning_rate"]),
            "train_seconds": run.data.metrics["train_seconds"],
            "epochs_to_target": run.data.metrics.get("epochs_to_target"),
        }
        for run in runs
        if "trainer.batch_size" in run.data.params  # sweep parents summarise, not train
    ]


def logging_overhead(workdir: Path, tracking_uri: str) -> dict:
    out = python([str(HERE / "logging_overhead.py")], workdir, tracking_uri)
    return json.loads(out.stdout.strip().splitlines()[-1])


def preset(name: str):
    """A preset's composed config, for what the sentences say of it."""
    from echo.config import composed, to_echo_config

    return to_echo_config(composed([f"experiment={name}"]))


def write_block(path: Path, text: str, marker: str = "benchmark") -> None:
    """Replace what stands between the `marker` comments in `path`; they must be there
    already, since where a table goes in a README is the README's choice."""
    from echo.marked import with_block

    source = path.read_text()
    if f"<!-- {marker}:start -->" not in source:
        raise SystemExit(f"{path} has no {marker} markers")
    path.write_text(with_block(source, marker, text))


def publish(text: str, marker: str, readmes: list[Path], write: bool = True) -> None:
    """Print a benchmark's result and, unless told not to, put it between `marker`'s comments
    in each of `readmes`."""
    print(text)
    if write:
        for readme in readmes:
            write_block(readme, text, marker)


def seeds_named(seeds: tuple[int, ...]) -> str:
    return f"seed{'s' if len(seeds) > 1 else ''} {', '.join(map(str, seeds))}"


def comparisons(plan: Plan, choices: Choices) -> list[tuple[str, str, str]]:
    """The headline ratios: (row, other row, what the two share or how they differ)."""
    fast, tutorial = preset("encdec_fast"), preset("tutorial_encdec")
    fit_fast, fit_encdec = choices.fit["encdec_fast"], choices.fit["tutorial_encdec"]
    grid = sorted({b for b, _ in plan.grid}), sorted({r for _, r in plan.grid})
    tuning = seeds_named(plan.tuning_seeds)
    setting = "batch {batch_size} and learning rate {learning_rate}".format
    if choices.peer == choices.echo:
        chosen = f"both chose {setting(**choices.echo)}"
    else:
        peer = setting(**choices.peer) if choices.peer else "nothing"
        chosen = f"they differ: echo chose {setting(**choices.echo)}, the peer {peer}"
    return [
        (
            ECHO_ENCDEC,
            FIT_ENCDEC,
            "the same model, data and updates; `fit` with "
            f"steps_per_execution={fit_encdec['steps_per_execution']} and "
            f"jit_compile={str(fit_encdec['jit_compile']).lower()}, chosen by a sweep on "
            f"{seeds_named(plan.tuning_seeds[:1])}: what echo's own loop buys",
        ),
        (
            ECHO_FAST,
            FIT_FAST,
            "the same model, data and stopping rule; `fit` with "
            f"steps_per_execution={fit_fast['steps_per_execution']} and "
            f"jit_compile={str(fit_fast['jit_compile']).lower()}, chosen by a sweep on {tuning}",
        ),
        (
            ECHO_FAST,
            PEER,
            f"the same settings ({fast.model.units} units, batches of "
            f"{fast.trainer.batch_size}, learning rate {fast.trainer.learning_rate}), data, "
            "validation checks and stopping rule; only the framework differs",
        ),
        (
            ECHO_TUNED,
            PEER_TUNED,
            f"each tuned alike on {tuning} over batch sizes "
            f"{', '.join(map(str, grid[0]))} and learning rates "
            f"{', '.join(map(str, grid[1]))}, by the least training time that met the "
            f"target on validation; {chosen}",
        ),
        (
            ECHO_FAST,
            BASELINE_ENCDEC,
            "not like for like: a "
            f"{fast.model.units}-unit stateless model trained until "
            f"{fast.trainer.target_exact:.1%} of validation windows are echoed exactly, "
            f"against the tutorial's {tutorial.model.units}-unit stateful one trained for "
            f"{plan.tutorial_epochs or tutorial.trainer.epochs:,} sequences",
        ),
    ]


def document(
    plan: Plan,
    found: list[Entry],
    results: dict[str, list[dict]],
    choices: Choices,
    overhead: Optional[dict],
    minutes: float,
) -> str:
    """The benchmark block: what was run, the table, and sentences of what its ratios compare."""
    from speed_table import Row, headline, summarise, table

    from echo.config import windows_per_sequence

    summaries = {name: summarise(runs) for name, runs in results.items() if runs}
    fast, seq2seq = preset("encdec_fast"), preset("tutorial_seq2seq")
    held_out = [
        f"{cfg.trainer.eval_sequences * windows_per_sequence(cfg.data):,} windows "
        f"({cfg.trainer.eval_sequences} sequences) for {what}"
        for cfg, what in ((seq2seq, "the tutorial programs' rows"), (fast, "encdec_fast's task"))
    ]
    lines = [
        f"Measured {date.today().isoformat()} on {os.cpu_count()} CPU cores "
        f"({platform.machine()}, Python {platform.python_version()}) by `python "
        f"benchmarks/run.py{plan.flag}`, which took {minutes:.0f} minutes in all, tuning "
        f"included: {seeds_named(plan.seeds)}, every entry once per seed, entries alternating, "
        "each seed starting with the next entry.",
        "",
        table([Row(e.name, e.compared_with, e.note) for e in found], summaries),
        "",
        "Times are medians over the seeds; eval_acc and eval_exact are mean ± standard "
        "deviation over the seeds, every entry of a seed scored on the same held-out windows of "
        f"echo's test stream: {held_out[0]}, {held_out[1]}. Speed-ups are over the row named, "
        "which trains the same model on the same data to the same stopping rule.",
    ]
    sentences = headline(summaries, comparisons(plan, choices))
    if not choices.peer:
        sentences.append(NO_TORCH)
    else:
        sentences.append(f"The peer ran on torch {importlib.metadata.version('torch')}.")
    if overhead:
        sentences.append(
            "Logging `loss` and `acc` per epoch: tutorial_encdec trained and scored in "
            f"{overhead['logged']:.1f} s with the curves logged and "
            f"{overhead['not_logged']:.1f} s without (medians of 3 alternating pairs in one "
            "process, `python benchmarks/logging_overhead.py`), "
            f"{100 * (overhead['logged'] / overhead['not_logged'] - 1):+.1f}%."
        )
    lines += ["", " ".join(sentences)]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--quick",
        action="store_true",
        help="one seed and tiny budgets, to check every piece runs; writes no README",
    )
    parser.add_argument(
        "--no-write", action="store_true", help="print the table, leave the READMEs alone"
    )
    args = parser.parse_args()
    plan = QUICK if args.quick else FULL
    if not HAS_TORCH:
        print(NO_TORCH, flush=True)

    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        tracking_uri = f"sqlite:///{workdir / 'mlflow.db'}"
        # Create the store first: its one-off schema set-up is not what is being timed.
        python(
            ["-c", f"import mlflow; mlflow.MlflowClient({tracking_uri!r}).search_experiments()"],
            workdir,
            tracking_uri,
        )
        choices = tune(plan, workdir, tracking_uri)
        found = entries(plan, choices)
        results: dict[str, list[dict]] = {entry.name: [] for entry in found}
        for turn, seed in enumerate(plan.seeds):
            # Each seed starts with another entry, so that no entry always runs first or last.
            shift = turn % len(found)
            for entry in found[shift:] + found[:shift]:
                results[entry.name].append(run_once(entry, seed, workdir, tracking_uri))
                print(f"seed {seed}  {entry.name}: {results[entry.name][-1]}", flush=True)
        overhead = logging_overhead(workdir, tracking_uri) if plan.logging_overhead else None
    minutes = (time.perf_counter() - started) / 60

    text = document(plan, found, results, choices, overhead, minutes)
    write = not (args.no_write or args.quick)
    publish(text, "benchmark", [ROOT / "README.md", HERE / "README.md"], write)


if __name__ == "__main__":
    main()
