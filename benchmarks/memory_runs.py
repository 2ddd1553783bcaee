"""Resident memory across many runs in one process, as a sweep on Hydra's basic launcher, the
study or a notebook makes them.

    python benchmarks/memory_runs.py            # 15 runs of debug=tiny, one process
    python benchmarks/memory_runs.py --runs 30 --no-write

Prints each run's resident memory after it, and writes the growth per run (the median of the
differences after the first few runs, which load libraries and trace functions) into
benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
from pathlib import Path

from run import HERE, publish

from echo.config import CONF_DIR, register_schema, to_echo_config


def resident_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--warm-up", type=int, default=5, help="runs left out of the median")
    parser.add_argument("--no-write", action="store_true", help="leave benchmarks/README.md alone")
    args = parser.parse_args()

    from hydra import compose, initialize_config_dir

    from echo.train import train

    register_schema()
    with initialize_config_dir(str(CONF_DIR), version_base="1.3"):
        cfg = to_echo_config(compose("config", overrides=["debug=tiny", "mlflow.log_model=false"]))
    folder = tempfile.mkdtemp(prefix="echo-memory-")
    os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{folder}/mlflow.db"
    sizes = []
    for run in range(args.runs):
        train(cfg)
        sizes.append(resident_mb())
        print(f"run {run + 1}: {sizes[-1]:.0f} MB", flush=True)
    growth = [sizes[i] - sizes[i - 1] for i in range(args.warm_up, len(sizes))]
    text = (
        f"{args.runs} runs of `debug=tiny` in one process (`python benchmarks/memory_runs.py`): "
        f"{sizes[0]:.0f} MB resident after the first, {sizes[-1]:.0f} MB after the last; after "
        f"the first {args.warm_up}, a median of {statistics.median(growth):.1f} MB more per run."
    )
    publish(text, "memory-runs", [HERE / "README.md"], not args.no_write)


if __name__ == "__main__":
    main()
