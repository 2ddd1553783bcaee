"""How fast the CLI answers when it has nothing to train: help, the composed config, and a
config error. None of them imports TensorFlow or MLflow. Rewrites the table in the README.

    python benchmarks/cli_latency.py             # 7 repeats of each, medians
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time

from run import ROOT, publish

COMMANDS = {
    "`python -m echo.train --help`": ["--help"],
    "`python -m echo.train --cfg job`": ["--cfg", "job"],
    "`python -m echo.train data.n_out=9` (config error)": ["data.n_out=9"],
    "`python -m echo.train -m model.units=20,0` (bad sweep)": ["-m", "model.units=20,0"],
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()
    times: dict[str, list[float]] = {name: [] for name in COMMANDS}
    with tempfile.TemporaryDirectory() as workdir:
        for _ in range(args.repeats):
            for name, argv in COMMANDS.items():  # interleaved, so load falls on all alike
                start = time.perf_counter()
                subprocess.run(
                    [sys.executable, "-m", "echo.train", *argv], cwd=workdir, capture_output=True
                )
                times[name].append(time.perf_counter() - start)
    rows = "\n".join(f"| {name} | {statistics.median(t):.2f} |" for name, t in times.items())
    text = (
        f"Medians of {args.repeats} runs on {os.cpu_count()} CPU cores, by `python "
        "benchmarks/cli_latency.py`:\n\n"
        f"| command | seconds |\n| --- | ---: |\n{rows}"
    )
    publish(text, "cli-latency", [ROOT / "README.md"], not args.no_write)


if __name__ == "__main__":
    main()
