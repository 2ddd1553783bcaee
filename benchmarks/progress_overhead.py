"""What showing training's progress costs: `python -m echo.train`'s run trained with log lines,
with a rich bar, and with nothing shown.

    python benchmarks/progress_overhead.py              # 7 repeats of each way, medians
    python benchmarks/progress_overhead.py --no-write   # print, leave the READMEs alone

Trains the default config (the tutorial's first program: 500 epochs, a progress point every
100, about two seconds of training, so where a display's share would show most) in this process,
the three ways in turn, after one warm-up run. Logging is set up as the command line's (INFO, into
a log file, as Hydra's), and the bar draws to a terminal-like console in memory. Reports each
way's median training time (the run's `train_seconds`) and the time spent inside the display.
"""

from __future__ import annotations

import argparse
import io
import logging
import os
import statistics
import tempfile
import time
from pathlib import Path

from run import HERE, ROOT, publish


class Timed:
    """A display that times the one it wraps: seconds inside `show`, and how many calls."""

    def __init__(self, display) -> None:
        self.display, self.seconds, self.calls = display, 0.0, 0

    def __enter__(self) -> Timed:
        self.display.__enter__()
        self.seconds, self.calls = 0.0, 0
        return self

    def __exit__(self, *exc) -> None:
        self.display.__exit__(*exc)

    def show(self, point) -> float:
        start = time.perf_counter()
        try:
            return self.display.show(point)
        finally:
            self.seconds += time.perf_counter() - start
            self.calls += 1


class Nothing:
    """Shows nothing: the baseline."""

    def __enter__(self) -> Nothing:
        return self

    def __exit__(self, *exc) -> None:
        pass

    def show(self, point) -> float:
        return 0.0


def measure(repeats: int, folder: Path) -> dict[str, dict[str, float]]:
    from hydra import compose, initialize_config_dir
    from rich.console import Console

    from echo import progress
    from echo.config import CONF_DIR, register_schema, to_echo_config
    from echo.train import train

    logging.basicConfig(level=logging.INFO, filename=folder / "train.log")
    register_schema()
    overrides = ["mlflow.log_model=false"]
    with initialize_config_dir(str(CONF_DIR), version_base="1.3"):
        cfg = to_echo_config(compose("config", overrides=overrides))
    terminal = Console(file=io.StringIO(), force_terminal=True, width=120)
    ways = {
        "lines": Timed(progress.Lines()),
        "bar": Timed(progress.Bar(terminal)),
        "nothing": Timed(Nothing()),
    }
    train(cfg, progress=Nothing())  # warm-up: creates the store and the experiment
    samples: dict[str, list[tuple[float, float, int]]] = {way: [] for way in ways}
    names = list(ways)
    for repeat in range(repeats):
        # In turn, starting one further each repeat, so load and order fall on all alike.
        for way in names[repeat % 3 :] + names[: repeat % 3]:
            display = ways[way]
            metrics = train(cfg, progress=display)
            samples[way].append((metrics["train_seconds"], display.seconds, display.calls))
    return {
        way: {
            "train_seconds": statistics.median(s[0] for s in runs),
            "fastest": min(s[0] for s in runs),
            "slowest": max(s[0] for s in runs),
            "display_ms": 1000 * statistics.median(s[1] for s in runs),
            "calls": statistics.median(s[2] for s in runs),
        }
        for way, runs in samples.items()
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        os.environ.setdefault("MLFLOW_TRACKING_URI", f"sqlite:///{Path(tmp) / 'mlflow.db'}")
        m = measure(args.repeats, Path(tmp))
    lines, bar, nothing = m["lines"], m["bar"], m["nothing"]
    text = (
        f"Showing progress costs the run of `python -m echo.train` (500 epochs, a point every "
        f"100) {lines['display_ms']:.1f} ms for its {lines['calls']:.0f} log lines and "
        f"{bar['display_ms']:.1f} ms for as many bar updates, timed inside the display. Its "
        f"training took {lines['train_seconds']:.2f} s with lines, {bar['train_seconds']:.2f} s "
        f"with the bar and {nothing['train_seconds']:.2f} s with nothing shown, medians of "
        f"{args.repeats} runs each in rotating order in one process on {os.cpu_count()} CPU "
        f"cores (`python benchmarks/progress_overhead.py`); the runs showing nothing alone "
        f"ranged from {nothing['fastest']:.2f} s to {nothing['slowest']:.2f} s."
    )
    publish(text, "progress-overhead", [ROOT / "README.md", HERE / "README.md"], not args.no_write)


if __name__ == "__main__":
    main()
