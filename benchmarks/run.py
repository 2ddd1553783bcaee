"""Side-by-side timings of the tutorial's loop and echo's, written into the READMEs.

    python benchmarks/run.py               # 3 repeats of everything (about 35 minutes here)
    python benchmarks/run.py --repeats 1   # one of each

Each entry runs as its own process, entries interleaved within each repeat so that load on this
shared machine falls on all of them alike. Whole-process time is measured around the process,
peak memory is its maximum resident set, and training time and held-out scores come from the
process itself (echo's from the MLflow run it logged). The table shows medians over repeats.
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
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import date
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent


@dataclass(frozen=True)
class Entry:
    name: str
    args: list[str]  # after `python`
    baseline: str | None = None  # the entry whose times this one is compared with

    @property
    def is_echo(self) -> bool:
        return self.args[:2] == ["-m", "echo.train"]

    @property
    def experiment(self) -> str:
        return "bench_" + re.sub(r"[^a-z0-9]+", "_", self.name.lower()).strip("_")


FAST = Entry(
    "echo encdec_fast",
    ["-m", "echo.train", "experiment=encdec_fast"],
    "tutorial encdec: fit per sequence",
)
ENTRIES = [
    Entry("tutorial seq2seq: fit per sequence", [str(HERE / "tutorial_baseline.py"), "seq2seq"]),
    Entry(
        "echo tutorial_seq2seq",
        ["-m", "echo.train", "experiment=tutorial_seq2seq"],
        "tutorial seq2seq: fit per sequence",
    ),
    Entry("tutorial encdec: fit per sequence", [str(HERE / "tutorial_baseline.py"), "encdec"]),
    Entry(
        "echo tutorial_encdec",
        ["-m", "echo.train", "experiment=tutorial_encdec"],
        "tutorial encdec: fit per sequence",
    ),
    Entry(
        "echo tutorial_encdec at 500 epochs",
        ["-m", "echo.train", "experiment=tutorial_encdec", "trainer.epochs=500"],
    ),
    FAST,
]
PEER = Entry(
    "PyTorch peer: encdec on fresh windows",
    [str(HERE / "torch_peer.py")],
    "tutorial encdec: fit per sequence",
)
if importlib.util.find_spec("torch") is not None:  # the optional peer: pip install -e ".[peer]"
    ENTRIES.append(PEER)


def run_once(entry: Entry, workdir: Path, tracking_uri: str) -> dict:
    env = {**os.environ, "MLFLOW_TRACKING_URI": tracking_uri}
    args = [*entry.args, f"mlflow.experiment={entry.experiment}"] if entry.is_echo else entry.args
    with open(workdir / "stdout", "w+") as stdout, open(workdir / "stderr", "w+") as stderr:
        start = time.perf_counter()
        process = subprocess.Popen(
            [sys.executable, *args], cwd=workdir, env=env, stdout=stdout, stderr=stderr
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
        result.update(json.loads(output.strip().splitlines()[-1]))
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


def logging_overhead(workdir: Path, tracking_uri: str) -> dict:
    out = subprocess.run(
        [sys.executable, str(HERE / "logging_overhead.py")],
        cwd=workdir,
        env={**os.environ, "MLFLOW_TRACKING_URI": tracking_uri},
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def medians(results: dict[str, list[dict]]) -> dict[str, dict[str, float]]:
    return {
        name: {k: statistics.median(r[k] for r in runs) for k in runs[0]}
        for name, runs in results.items()
    }


def table(med: dict[str, dict[str, float]]) -> str:
    lines = [
        "| run | whole process (s) | training (s) | training speed-up | whole speed-up | "
        "eval_acc | eval_exact | peak memory (MB) |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for entry in ENTRIES:
        m = med[entry.name]
        if entry.baseline:
            b = med[entry.baseline]
            train_x = f"{b['train_seconds'] / m['train_seconds']:.1f}x"
            whole_x = f"{b['whole_seconds'] / m['whole_seconds']:.1f}x"
        else:
            train_x = whole_x = ""
        lines.append(
            f"| {entry.name} | {m['whole_seconds']:.1f} | {m['train_seconds']:.1f} | {train_x} | "
            f"{whole_x} "
            f"| {m['eval_acc']:.4f} | {m['eval_exact']:.4f} | {m['peak_mb']:.0f} |"
        )
    return "\n".join(lines)


def peer_sentence(med: dict[str, dict[str, float]]) -> str:
    if PEER.name not in med:
        return ' The PyTorch peer was not run: torch is not installed (`pip install -e ".[peer]"`).'
    fast, peer = med[FAST.name]["train_seconds"], med[PEER.name]["train_seconds"]
    return (
        f" encdec_fast trained in {fast:.1f} s against the PyTorch peer's {peer:.1f} s "
        f"(`benchmarks/torch_peer.py`, torch {importlib.metadata.version('torch')}), "
        f"{peer / fast:.2f}x as fast."
    )


def write_block(path: Path, text: str, marker: str = "benchmark") -> None:
    """Replace what stands between the `marker` comments in `path`."""
    source = path.read_text()
    block = f"<!-- {marker}:start -->\n{text}\n<!-- {marker}:end -->"
    pattern = rf"<!-- {marker}:start -->.*?<!-- {marker}:end -->"
    updated, count = re.subn(pattern, lambda _: block, source, flags=re.S)
    if not count:
        raise SystemExit(f"{path} has no {marker} markers")
    path.write_text(updated)


def publish(text: str, marker: str, readmes: list[Path], write: bool = True) -> None:
    """Print a benchmark's result and, unless told not to, put it between `marker`'s comments
    in each of `readmes`."""
    print(text)
    if write:
        for readme in readmes:
            write_block(readme, text, marker)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--no-write", action="store_true", help="print the table, leave the READMEs alone"
    )
    args = parser.parse_args()

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
        results: dict[str, list[dict]] = {entry.name: [] for entry in ENTRIES}
        for repeat in range(args.repeats):
            for entry in ENTRIES:
                results[entry.name].append(run_once(entry, workdir, tracking_uri))
                print(
                    f"repeat {repeat + 1}/{args.repeats}  {entry.name}: {results[entry.name][-1]}",
                    flush=True,
                )
        overhead = logging_overhead(workdir, tracking_uri)

    med = medians(results)
    text = (
        f"Measured {date.today().isoformat()} on {os.cpu_count()} CPU cores "
        f"({platform.machine()}, Python "
        f"{platform.python_version()}), medians of {args.repeats} repeats, by `python "
        "benchmarks/run.py"
        f"{'' if args.repeats == 3 else f' --repeats {args.repeats}'}`:\n\n"
        f"{table(med)}\n\n"
        "Speed-ups compare each run with the tutorial program it replaces or competes with "
        "(encdec_fast "
        "and the PyTorch peer with the tutorial's encoder-decoder). Logging `loss` and `acc` "
        "per epoch: tutorial_encdec trained and "
        f"scored in {overhead['logged']:.1f} s with the curves logged and "
        f"{overhead['not_logged']:.1f} s "
        "without (medians of 3 alternating pairs in one process, `python "
        "benchmarks/logging_overhead.py`), "
        f"{100 * (overhead['logged'] / overhead['not_logged'] - 1):+.1f}%."
        f"{peer_sentence(med)}"
    )
    publish(text, "benchmark", [ROOT / "README.md", HERE / "README.md"], not args.no_write)


if __name__ == "__main__":
    main()
