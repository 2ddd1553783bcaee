"""8-job sweeps run one job after another and with Hydra's joblib launcher, side by side,
written into the READMEs.

    python benchmarks/parallel_sweep.py               # 3 repeats of each (about 15 minutes here)
    python benchmarks/parallel_sweep.py --repeats 1 --no-write

Two sweeps: the tutorial's first program over units x batch size (small stateful batches), and
the encdec_fast preset over 8 seeds (stateless batches of 84 windows). Each way runs as its own
`python -m echo.train -m` process, interleaved within each repeat so that load on this shared
machine falls on all of them alike; the table shows medians of the whole sweep's wall time.
Beside echo's joblib defaults (one job per core, one TensorFlow thread per job) it runs
TensorFlow's own thread defaults, the alternative they were chosen over."""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

from run import ROOT, publish

HERE = Path(__file__).resolve().parent
SWEEPS = {
    "tutorial_seq2seq, units x batch size": [
        "experiment=tutorial_seq2seq",
        "model.units=10,20,40,80",
        "trainer.batch_size=7,21",
    ],
    "encdec_fast, 8 seeds": ["experiment=encdec_fast", "trainer.seed=1,2,3,4,5,6,7,8"],
}
JOBS = 8
# TensorFlow reads these when its runtime starts; 0 means its own default (one thread per core).
TF_DEFAULT_THREADS = {"TF_NUM_INTRAOP_THREADS": "0", "TF_NUM_INTEROP_THREADS": "0"}

# name, extra arguments, extra environment
WAYS = [
    ("one job after another (Hydra's basic launcher)", [], {}),
    ("`hydra/launcher=joblib` (echo's defaults)", ["hydra/launcher=joblib"], {}),
    ("joblib, TensorFlow's default threads", ["hydra/launcher=joblib"], TF_DEFAULT_THREADS),
]
# Every (sweep, way) pair, timed.
CASES = [(sweep, index) for sweep in SWEEPS for index in range(len(WAYS))]


def experiment(case: int) -> str:
    return f"bench_sweep_{case}"


def run_sweep(case: int, workdir: Path, tracking_uri: str) -> float:
    sweep, index = CASES[case]
    name, args, env = WAYS[index]
    env = {**os.environ, **env, "MLFLOW_TRACKING_URI": tracking_uri}
    argv = [
        sys.executable,
        "-m",
        "echo.train",
        "-m",
        *SWEEPS[sweep],
        *args,
        f"mlflow.experiment={experiment(case)}",
    ]
    start = time.perf_counter()
    done = subprocess.run(argv, cwd=workdir, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if done.returncode:
        raise SystemExit(f"{name} failed:\n{done.stderr[-3000:]}")
    return seconds


def sweep_results(tracking_uri: str, case: int) -> dict[str, float]:
    """What the sweeps computed, to show that each way trained the same jobs to the same end."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri)
    found = client.get_experiment_by_name(experiment(case))
    runs = [
        r
        for r in client.search_runs([found.experiment_id], max_results=1000)
        if r.data.tags.get("echo.role") != "sweep"
    ]
    finished = [r for r in runs if r.info.status == "FINISHED"]
    return {
        "finished": len(finished),
        "runs": len(runs),
        "eval_exact": statistics.median(r.data.metrics["eval_exact"] for r in finished),
    }


def table(times: dict[int, list[float]], results: dict[int, dict], repeats: int) -> str:
    lines = [
        f"| sweep of {JOBS} jobs | launcher | wall time (s) | speed-up over one after another | "
        "jobs finished, all repeats | median eval_exact |",
        "| --- | --- | ---: | ---: | ---: | ---: |",
    ]
    for case, (sweep, index) in enumerate(CASES):
        base = statistics.median(times[CASES.index((sweep, 0))])
        median = statistics.median(times[case])
        r = results[case]
        lines.append(
            f"| {sweep} | {WAYS[index][0]} | {median:.1f} | {base / median:.2f}x | "
            f"{r['finished']}/{JOBS * repeats} | {r['eval_exact']:.4f} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--no-write", action="store_true", help="print the table, leave the READMEs alone"
    )
    args = parser.parse_args()

    times: dict[int, list[float]] = {case: [] for case in range(len(CASES))}
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
            for case, (sweep, index) in enumerate(CASES):
                times[case].append(run_sweep(case, workdir, tracking_uri))
                print(
                    f"repeat {repeat + 1}/{args.repeats}  {sweep}, {WAYS[index][0]}: "
                    f"{times[case][-1]:.1f} s",
                    flush=True,
                )
        results = {case: sweep_results(tracking_uri, case) for case in range(len(CASES))}

    def median_of(sweep, way):
        return statistics.median(times[CASES.index((sweep, way))])

    ratios = [f"{median_of(sweep, 0) / median_of(sweep, 1):.2f}x for {sweep}" for sweep in SWEEPS]
    commands = "; ".join(f"`python -m echo.train -m {' '.join(argv)}`" for argv in SWEEPS.values())
    text = (
        f"Measured {date.today().isoformat()} on {os.cpu_count()} CPU cores "
        f"({platform.machine()}, Python {platform.python_version()}), "
        f"medians of {args.repeats} repeats, by `python benchmarks/parallel_sweep.py`: "
        f"{commands}; each way as its own process.\n\n"
        f"{table(times, results, args.repeats)}\n\n"
        f"With echo's joblib defaults the sweeps ran {' and '.join(ratios)} as fast as one job "
        "after another "
        f"(above 1 is faster)."
    )
    publish(text, "parallel-sweep", [HERE / "README.md", ROOT / "README.md"], not args.no_write)


if __name__ == "__main__":
    main()
