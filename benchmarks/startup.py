"""What keeping scikit-learn, pyplot and IPython out of a run saves at start-up.

    python benchmarks/startup.py              # 5 alternating pairs, medians

Each sample is a fresh process that imports what a run imports (Keras with TensorFlow, MLflow
with its sqlite store, echo's modules), once plainly and once inside `echo.cli.absent`, as
`python -m echo.train` does. Rewrites the line in the README.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys

from run import ROOT, publish

IMPORTS = (
    "import keras, tensorflow, mlflow, mlflow.keras;"
    "from mlflow.store.tracking import sqlalchemy_store;"
    "from echo import figures, tracking, trainer, evaluation"
)
PROGRAM = f"""
import time, gc
from echo.cli import absent
start = time.perf_counter()
gc.disable()
if {{blocked}}:
    with absent("sklearn", "matplotlib.pyplot", "IPython"):
        {IMPORTS}
else:
    {IMPORTS}
print(time.perf_counter() - start)
"""


def sample(blocked: bool) -> float:
    done = subprocess.run(
        [sys.executable, "-c", PROGRAM.format(blocked=blocked)],
        capture_output=True,
        text=True,
        check=True,
    )
    return float(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()
    plain, blocked = [], []
    for _ in range(args.repeats):  # alternating, so load falls on both alike
        plain.append(sample(False))
        blocked.append(sample(True))
    a, b = statistics.median(plain), statistics.median(blocked)
    text = (
        f"Importing what a run needs took {b:.1f} s with scikit-learn, pyplot and IPython kept "
        "out and "
        f"{a:.1f} s without (medians of {args.repeats} alternating pairs on {os.cpu_count()} CPU "
        "cores, "
        f"`python benchmarks/startup.py`): {a - b:.1f} s less per run."
    )
    publish(text, "startup", [ROOT / "README.md"], not args.no_write)


if __name__ == "__main__":
    main()
