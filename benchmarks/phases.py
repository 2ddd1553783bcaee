"""Where the whole process of one `python -m echo.train` goes, phase by phase.

    python benchmarks/phases.py                          # encdec_fast, 3 repeats, medians
    python benchmarks/phases.py experiment=tutorial_seq2seq --repeats 5

Each repeat runs the command twice, each time as its own process logging to a sqlite store made
beforehand: once plainly, for the phases, and once under `python -X importtime`, for what each
package's imports cost (the flag slows importing a little, so the phases come from the plain
run). The phases are read from the clock around the process and from the MLflow run it logged:
when the run was created and ended, and its train_seconds. Rewrites the table in
benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from datetime import date
from pathlib import Path

from run import HERE, latest_run, publish

PHASES = (
    ("start", "Python, Hydra composing, imports, opening the MLflow run"),
    ("train", "training, with its validation checks (train_seconds)"),
    (
        "finish",
        "building the model; scoring the test set; logging metrics, echoes, figures and the model",
    ),
    ("exit", "ending the process"),
)
EXPERIMENT = "bench_phases"  # the MLflow experiment the timed runs log to
SHOWN_PACKAGES = 8  # the costliest imports by name; the rest are summed
# One line of `python -X importtime`: self and cumulative microseconds, then the indented name.
IMPORT_LINE = re.compile(r"import time:\s+(\d+) \|\s+\d+ \|\s*(\S+)")


def run_echo(
    overrides: list[str], workdir: Path, tracking_uri: str, importtime: bool
) -> tuple[float, float, str]:
    """Run the command; return when it started and ended (epoch seconds) and its stderr."""
    flags = ["-X", "importtime"] if importtime else []
    command = [
        sys.executable,
        *flags,
        "-m",
        "echo.train",
        *overrides,
        f"mlflow.experiment={EXPERIMENT}",
        f"hydra.run.dir={workdir / 'run'}",
    ]
    started = time.time()
    done = subprocess.run(
        command,
        cwd=workdir,
        env={**os.environ, "MLFLOW_TRACKING_URI": tracking_uri},
        capture_output=True,
        text=True,
    )
    ended = time.time()
    if done.returncode:
        raise SystemExit(f"{' '.join(command)} failed:\n{done.stderr[-2000:]}")
    return started, ended, done.stderr


def phases(started: float, ended: float, tracking_uri: str) -> dict[str, float]:
    run = latest_run(tracking_uri, EXPERIMENT)
    run_start, run_end = run.info.start_time / 1000, run.info.end_time / 1000
    train = run.data.metrics["train_seconds"]
    return {
        "start": run_start - started,
        "train": train,
        "finish": run_end - run_start - train,
        "exit": ended - run_end,
        "whole": ended - started,
    }


def import_seconds(stderr: str) -> Counter:
    """Seconds spent importing each top-level package's modules (their own time, not nested)."""
    spent: Counter = Counter()
    for self_us, module in IMPORT_LINE.findall(stderr):
        spent[module.split(".")[0]] += int(self_us) / 1e6
    return spent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("overrides", nargs="*", default=["experiment=encdec_fast"])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--no-write", action="store_true", help="print the table, leave the README alone"
    )
    args = parser.parse_args()

    timings: list[dict[str, float]] = []
    imports: list[Counter] = []
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        tracking_uri = f"sqlite:///{workdir / 'mlflow.db'}"
        # Create the store first: its one-off schema set-up is not what is being timed.
        subprocess.run(
            [
                sys.executable,
                "-c",
                f"import mlflow; mlflow.MlflowClient({tracking_uri!r}).search_experiments()",
            ],
            check=True,
            capture_output=True,
        )
        for repeat in range(args.repeats):
            started, ended, _ = run_echo(args.overrides, workdir, tracking_uri, importtime=False)
            timings.append(phases(started, ended, tracking_uri))
            imports.append(
                import_seconds(run_echo(args.overrides, workdir, tracking_uri, importtime=True)[2])
            )
            print(
                f"repeat {repeat + 1}/{args.repeats}: "
                + ", ".join(f"{k} {v:.2f} s" for k, v in timings[-1].items()),
                flush=True,
            )

    def median(key: str) -> float:
        return statistics.median(t[key] for t in timings)

    packages = sorted(
        {name for spent in imports for name in spent},
        key=lambda name: -statistics.median(s[name] for s in imports),
    )
    per_package = {name: statistics.median(s[name] for s in imports) for name in packages}
    shown = packages[:SHOWN_PACKAGES]
    command = " ".join(["python -m echo.train", *args.overrides])
    lines = [
        f"Measured {date.today().isoformat()} on {os.cpu_count()} CPU cores "
        f"({platform.machine()}, Python "
        f"{platform.python_version()}), medians of {args.repeats} runs of `{command}`, by "
        "`python benchmarks/phases.py"
        f"{'' if args.repeats == 3 else f' --repeats {args.repeats}'}`:",
        "",
        "| phase | seconds |",
        "| --- | ---: |",
        *(f"| {label} | {median(key):.2f} |" for key, label in PHASES),
        f"| whole process | {median('whole'):.2f} |",
        "",
        "Importing, most of the start, took by package (the own time of each package's modules, "
        "under "
        "`python -X importtime`, which slows importing a little):",
        "",
        "| package | seconds |",
        "| --- | ---: |",
        *(f"| {name} | {per_package[name]:.2f} |" for name in shown),
        f"| {len(packages) - len(shown)} other packages | "
        f"{sum(per_package[name] for name in packages[len(shown) :]):.2f} |",
        f"| all imports | {sum(per_package.values()):.2f} |",
    ]
    publish("\n".join(lines), "phases", [HERE / "README.md"], not args.no_write)


if __name__ == "__main__":
    main()
