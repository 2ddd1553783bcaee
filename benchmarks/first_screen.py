"""What a new user sees: the first screen of `python -m echo.train` in an empty folder, with no
MLFLOW_TRACKING_URI, its stdout and stderr together as `2>&1` shows them; and the last lines of
a small sweep, `python -m echo.train -m model.units=10,20`. Rewrites both blocks in the README,
so that what the README shows is what echo prints.

    python benchmarks/first_screen.py              # run it, write the README
    python benchmarks/first_screen.py --no-write   # run it, print the block only
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile

from run import ROOT, publish

LINES = 30  # a tall terminal's first screen
SWEEP = ["-m", "model.units=10,20"]


def output(args: list[str]) -> list[str]:
    """What `python -m echo.train ARGS` prints in a new, empty folder, stdout and stderr
    together."""
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    with tempfile.TemporaryDirectory() as folder:
        done = subprocess.run(
            [sys.executable, "-m", "echo.train", *args],
            cwd=folder,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            check=True,
        )
    return done.stdout.splitlines()


def block(command: str, lines: list[str]) -> str:
    return "```text\n$ " + command + "\n" + "\n".join(lines) + "\n```"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()
    write = not args.no_write
    first = output([])[:LINES]
    publish(block("python -m echo.train", first), "first-screen", [ROOT / "README.md"], write)
    sweep = output(SWEEP)
    last = next(i for i, line in enumerate(sweep) if line.startswith("sweep "))
    command = " ".join(["python -m echo.train", *SWEEP])
    publish(
        block(command + "   # its last lines", ["..."] + sweep[last:]),
        "sweep-screen",
        [ROOT / "README.md"],
        write,
    )


if __name__ == "__main__":
    main()
