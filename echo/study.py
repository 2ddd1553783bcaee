"""`python -m echo.study`: answer the tutorial's open questions with a multi-seed sweep.

    python -m echo.study                  # every preset, seeds 1..5; writes experiments/RESULTS.md
    python -m echo.study seeds=5 'presets=[tutorial_seq2seq,stateless]'
    python -m echo.study sweep=PARENT_RUN_ID      # rewrite the document from a finished study
    python -m echo.study resume=PARENT_RUN_ID     # finish a killed study, keeping finished runs
    python -m echo.study seeds=1 'overrides=[trainer.epochs=3]' folder=dry_run   # a dry run

It runs the presets of conf/experiment/ as ONE multirun of echo.train (`experiment=...
trainer.seed=...`), one job after another so that their training times compare, then reads the
runs back from MLflow and writes a document: per question, a table of mean and spread over the
seeds, a chart, and an answer whose every figure comes from that table. It writes RESULTS.md and
its charts (results/) into `folder`: experiments/ of echo's source tree unless told; installed
echo (`echo-study`) has no such folder and must be given one."""

from __future__ import annotations

import datetime
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, List, Optional

import numpy as np
import pandas as pd

from echo.config import CONF_DIR, SOURCE_TREE, parse_key_values
from echo.errors import BadRequest, EchoError, run_command

# The study's own folder in echo's repository; an installed echo writes only where it is told.
DEFAULT_FOLDER = SOURCE_TREE / "experiments" if SOURCE_TREE else None


@dataclass(frozen=True)
class Question:
    slug: str
    title: str
    asks: str  # the question as the tutorial leaves it
    presets: tuple[str, ...]  # the first is the one the others are compared with
    answer: Callable[[Stats], str]


class Stats:
    """One study's runs, grouped by preset: the numbers every table and answer quotes."""

    def __init__(self, runs: pd.DataFrame):
        self.runs = runs

    def of(self, preset: str) -> pd.DataFrame:
        return self.runs[self.runs["preset"] == preset]

    def mean(self, preset: str, metric: str) -> float:
        return float(self.of(preset)[metric].mean())

    def count(self, preset: str) -> int:
        return len(self.of(preset))

    def reached(self, preset: str) -> int:
        """How many of the preset's runs met the exact-echo target during training."""
        return int(self.of(preset)["epochs_to_target"].notna().sum())

    def pct(self, preset: str, metric: str = "eval_exact") -> str:
        return f"{100 * self.mean(preset, metric):.2f}%"


def _times(a: float, b: float) -> str:
    """a as a multiple of b: "2.5x", "0.79x"."""
    if not (np.isfinite(a) and np.isfinite(b)) or b == 0:
        return "an unknown multiple of"
    return f"{a / b:.2g}x"


def _to_target(s: Stats, preset: str) -> str:
    """How soon a preset's runs met the target, in words."""
    reached, runs, target = s.reached(preset), s.count(preset), s.mean(preset, "target_exact")
    if not reached:
        return f"never met the {target:.1%} target within its budget ({runs} seeds)"
    return (
        f"met the {target:.1%} target in {reached} of {runs} seeds, after "
        f"{s.mean(preset, 'epochs_to_target'):,.0f} sequences on average"
    )


def _more_or_less(a: float, b: float, tolerance: float) -> str:
    if abs(a - b) <= tolerance:
        return "about the same as"
    return "more than" if a > b else "less than"


def answer_claims(s: Stats) -> str:
    lines = []
    for preset, program in (
        ("tutorial_seq2seq", "first program"),
        ("tutorial_encdec", "second program"),
    ):
        runs = s.of(preset)
        perfect = int((runs["eval_acc"] == 1.0).sum())
        lines.append(
            f"The {program} ({preset}) echoed {100 * runs['eval_acc'].min():.2f}% to "
            f"{100 * runs['eval_acc'].max():.2f}% of held-out values right over {len(runs)} seeds, "
            f"and was perfect on every held-out window in {perfect} of them "
            f"(exact echoes {s.pct(preset)} on average)."
        )
    programs = [s.of(p) for p in ("tutorial_seq2seq", "tutorial_encdec")]
    if all((runs["eval_acc"] == 1.0).all() for runs in programs):
        lines.append('The claim of 100% "pretty much every time" holds on these seeds.')
    elif all((runs["eval_acc"] >= 0.99).all() for runs in programs):
        lines.append(
            'So the claim of 100% "pretty much every time" holds only approximately: every seed '
            "comes "
            "within 1% of it, but held-out data shows errors that the tutorial's check on one "
            "sequence "
            "of 21 windows can miss."
        )
    else:
        lines.append('So the claim of 100% "pretty much every time" does not hold on these seeds.')
    lines.append(
        "encdec_fast, which trains to a target instead of for 5,000 sequences, "
        f"{_to_target(s, 'encdec_fast')}, "
        f"with {s.pct('encdec_fast')} held-out exact echoes."
    )
    return " ".join(lines)


def answer_linear(s: Stats) -> str:
    base, linear = "tutorial_encdec", "linear"
    return (
        f"With the same network, data and 5,000 sequences, the linear representation echoes "
        f"{s.pct(linear)} of held-out windows exactly against {s.pct(base)} for one-hot, and "
        f"{s.pct(linear, 'eval_acc')} of values against {s.pct(base, 'eval_acc')}. It has "
        f"{_times(s.mean(linear, 'parameters'), s.mean(base, 'parameters'))} the weights "
        f"({s.mean(linear, 'parameters'):,.0f} against {s.mean(base, 'parameters'):,.0f}), but "
        "rounding a "
        f"regression back to one of 100 integers leaves a margin of 0.5/99 per value: "
        + (
            "within this budget it does not reach the one-hot model's skill."
            if s.mean(linear, "eval_exact") < s.mean(base, "eval_exact") - 0.01
            else "within this budget it matches the one-hot model's skill."
        )
    )


def answer_masked(s: Stats) -> str:
    base, masked = "tutorial_seq2seq", "masked"
    return (
        f"Keeping the padded windows gives 25 windows per sequence instead of 21, and with them "
        f"{s.pct(masked)} exact echoes against {s.pct(base)} without (values: "
        f"{s.pct(masked, 'eval_acc')} "
        f"against {s.pct(base, 'eval_acc')}), in {s.mean(masked, 'train_seconds'):.1f} s of "
        "training against "
        f"{s.mean(base, 'train_seconds'):.1f} s. Masked held-out scores count the real values "
        "only, padded "
        "windows included, so the masked model is also judged on the first values of each "
        "sequence, "
        f"which the tutorial never asks it to echo. Skill is "
        f"{_more_or_less(s.mean(masked, 'eval_exact'), s.mean(base, 'eval_exact'), 0.01)} the "
        "tutorial's."
    )


def answer_longer(s: Stats) -> str:
    presets = (("encdec_fast", "2 of 5"), ("longer", "5 of 10"), ("longest", "10 of 15"))
    parts = [
        f"echoing {what} values with {s.mean(p, 'units'):.0f} units "
        f"({s.mean(p, 'parameters'):,.0f} weights), "
        f"batches of {s.mean(p, 'batch_size'):.0f} windows and a learning rate of "
        f"{s.mean(p, 'learning_rate'):g}, "
        f"it {_to_target(s, p)}, for {s.pct(p)} held-out exact echoes"
        for p, what in presets
    ]
    longer = _times(s.mean("longer", "epochs_to_target"), s.mean("encdec_fast", "epochs_to_target"))
    ending = "."
    if s.reached("longest") < s.count("longest"):
        most = s.of("longest")["epochs_trained"].max()
        ending = f", and {most:,.0f} sequences were not enough for 10 of 15."
    return (
        f"With a stateless encoder-decoder (RepeatVector) trained to a target: {'; '.join(parts)}. "
        f"The echo of 5 of 10 values took {longer} the sequences of the echo of 2 of 5{ending} "
        "Longer echoes "
        "need more training, as the tutorial expects. The presets differ in units, batch size "
        "and learning "
        "rate as well as in length, and do not measure how few units, or which batch size and "
        "rate, each "
        f"length needs."
    )


def answer_stateless(s: Stats) -> str:
    base, stateless = "tutorial_seq2seq", "stateless"
    change = s.mean(stateless, "eval_exact") - s.mean(base, "eval_exact")
    verdict = (
        "little to no change, as the tutorial expects"
        if abs(change) <= 0.01
        else ("better" if change > 0 else "worse")
        + f" by {100 * abs(change):.1f} points of exact echoes, "
        "not the little to no change the tutorial expects"
    )
    return (
        f"A stateless LSTM updated after every window echoes {s.pct(stateless)} of held-out "
        "windows "
        f"exactly against {s.pct(base)} for the stateful tutorial regime: {verdict}. It makes 7 "
        "times as "
        "many weight updates (21 against 3 per sequence) and trains in "
        f"{s.mean(stateless, 'train_seconds'):.1f} s "
        f"against {s.mean(base, 'train_seconds'):.1f} s."
        + (
            " Each window holds every value its echo needs, so state carried from window to "
            "window has "
            "nothing to add."
            if abs(change) <= 0.01
            else ""
        )
    )


def answer_topologies(s: Stats) -> str:
    base = "tutorial_encdec"
    parts = [
        f"{name} echoes {s.pct(name)} of held-out windows exactly "
        f"({s.mean(name, 'parameters'):,.0f} weights)"
        for name in ("one_to_one", "many_to_one")
    ]
    worse = [
        n
        for n in ("one_to_one", "many_to_one")
        if s.mean(n, "eval_exact") < s.mean(base, "eval_exact") - 0.01
    ]
    return (
        f"With the tutorial's {s.mean(base, 'units'):.0f} units and 5,000 sequences, {parts[0]} "
        f"and {parts[1]}, against "
        f"{s.pct(base)} for the encoder-decoder ({s.mean(base, 'parameters'):,.0f} weights). "
        + (
            f"{' and '.join(worse)} fall short within the same budget, as the tutorial expects: "
            "they "
            "would need a larger network or longer training."
            if worse
            else "Neither falls short within the same budget: the tutorial's expectation that they "
            "need a "
            "larger network or longer training is not borne out here."
        )
    )


def answer_attention(s: Stats) -> str:
    base, attention = "longest", "attention"
    return (
        "On the longest echo (10 of 15 values), the decoder that attends over the encoder's "
        "outputs "
        f"{_to_target(s, attention)}, and echoes {s.pct(attention)} of held-out windows exactly. "
        f"RepeatVector alone, with the same units and budget, {_to_target(s, base)}, and echoes "
        f"{s.pct(base)} exactly. Attention adds "
        f"{s.mean(attention, 'parameters') - s.mean(base, 'parameters'):,.0f} "
        f"weights to {s.mean(base, 'parameters'):,.0f}: the decoder no longer has to read the "
        "whole window "
        f"from one vector."
    )


QUESTIONS = (
    Question(
        "claims",
        "The tutorial's claims",
        'Both programs "converge to 100% accuracy pretty much every time". Do they, on held-out '
        "data?",
        ("tutorial_seq2seq", "tutorial_encdec", "encdec_fast"),
        answer_claims,
    ),
    Question(
        "linear",
        "1. Linear representation",
        "Scale the integers to 0..1 and echo by regression: how do skill, network size and "
        "training change?",
        ("tutorial_encdec", "linear"),
        answer_linear,
    ),
    Question(
        "masked",
        "2. Masking missing values",
        "Keep the windows the framing drops, padded and masked: does the model do better?",
        ("tutorial_seq2seq", "masked"),
        answer_masked,
    ),
    Question(
        "longer",
        "3. Echoing longer sequences",
        "Echo more values with the encoder-decoder: how many units and epochs does it take?",
        ("encdec_fast", "longer", "longest"),
        answer_longer,
    ),
    Question(
        "stateless",
        "4. Ignoring state",
        "A stateless LSTM with batch size 1 against the stateful regime: little to no change?",
        ("tutorial_seq2seq", "stateless"),
        answer_stateless,
    ),
    Question(
        "topologies",
        "5. One-to-one and many-to-one",
        "Timesteps as features, or the echo as one vector: do they need a larger network and "
        "longer training?",
        ("tutorial_encdec", "one_to_one", "many_to_one"),
        answer_topologies,
    ),
    Question(
        "attention",
        "Beyond the tutorial: attention",
        "Does a decoder that attends over the encoder's outputs hold up on long echoes, where "
        "RepeatVector fails?",
        ("longest", "attention"),
        answer_attention,
    ),
)
ALL_PRESETS = list(dict.fromkeys(p for q in QUESTIONS for p in q.presets))


@dataclass
class StudyConfig:
    presets: List[str] = field(default_factory=lambda: list(ALL_PRESETS))
    seeds: int = 5  # trainer.seed = 1..seeds for every preset
    experiment: str = "echo-study"  # the MLflow experiment the runs go to
    # Where RESULTS.md and its charts go; experiments/ of the source tree when not given.
    folder: Optional[str] = None
    sweep: Optional[str] = None  # an earlier study's parent run: write its document, train nothing
    # A killed or stopped study's parent run: finish it, keeping the runs that finished.
    resume: Optional[str] = None
    # More echo.train overrides for every job, e.g. '[trainer.epochs=3]' for a quick check.
    overrides: List[str] = field(default_factory=list)


def check(request: StudyConfig) -> StudyConfig:
    """`request` with its folder filled in; BadRequest for what cannot work."""
    known = sorted(p.stem for p in (CONF_DIR / "experiment").glob("*.yaml"))
    for preset in request.presets:
        if preset not in known:
            raise BadRequest(
                f"presets: no preset {preset!r} in conf/experiment/; choose from {', '.join(known)}"
            )
    if request.seeds < 1:
        raise BadRequest(f"seeds={request.seeds}: must be >= 1")
    if request.folder is None:
        if DEFAULT_FOLDER is None:
            raise BadRequest(
                "folder: not given; installed, echo-study writes RESULTS.md and its charts only "
                "where it is told: folder=DIR"
            )
        request.folder = str(DEFAULT_FOLDER)
    return request


def run_sweep(request: StudyConfig, sweep_dir: Path) -> str:
    """Train every preset on every seed as one echo.train multirun; return its parent run id."""
    seeds = ",".join(str(seed) for seed in range(1, request.seeds + 1))
    command = [
        sys.executable,
        "-m",
        "echo.train",
        "-m",
        f"experiment={','.join(request.presets)}",
        f"trainer.seed={seeds}",
        f"mlflow.experiment={request.experiment}",
        "mlflow.log_model=false",  # the study compares numbers; its models are not needed
        f"hydra.sweep.dir={sweep_dir}",
        *request.overrides,
    ]
    if request.resume:
        command.append(f"hydra.callbacks.echo.resume={request.resume}")
    print("echo.study:", " ".join(command[1:]), flush=True)
    # Failed jobs are recorded as FAILED runs and reported in the document; only a sweep that
    # did not start at all stops the study.
    code = subprocess.call(command)
    from echo import tracking

    parent = request.resume or tracking.find_sweep(request.experiment, str(sweep_dir))
    if parent is None:
        raise EchoError(f"the study's sweep did not start (echo.train exited {code})")
    return parent


# The params the study's tables quote, and the names they go by there.
PARAMS = {
    "trainer.seed": "seed",
    "model.units": "units",
    "trainer.batch_size": "batch_size",
    "trainer.learning_rate": "learning_rate",
    "trainer.target_exact": "target_exact",
}


def collect(parent_run_id: str) -> pd.DataFrame:
    """The study's runs, one row each: preset, seed, units, batch size, learning rate, target,
    the machine, status and metrics."""
    from echo import report, tracking

    runs = tracking.runs_frame(parent_run_id=parent_run_id)
    if runs.empty:
        raise BadRequest(f"sweep={parent_run_id}: the sweep has no runs")
    table = report.runs_table(runs, list(PARAMS)).rename(columns={"run_name": "preset", **PARAMS})
    # "None" where a preset sets no target.
    table["target_exact"] = pd.to_numeric(table["target_exact"], errors="coerce")
    machine = runs.set_index("run_id")
    for tag in ("cpu_count", "gpus"):
        column = machine.get(f"tags.echo.{tag}", pd.Series(None, index=machine.index))
        table[tag] = table["run_id"].map(column)
    return table.sort_values(["preset", "seed"]).reset_index(drop=True)


def _spread(values: pd.Series, digits: int, percent: bool = False) -> str:
    values = values.dropna()
    if values.empty:
        return "not reached"
    scale = 100 if percent else 1
    mean, std = scale * values.mean(), scale * (values.std(ddof=1) if len(values) > 1 else 0.0)
    unit = "%" if percent else ""
    return f"{mean:,.{digits}f} ± {std:,.{digits}f}{unit}"


def _machine(runs: pd.DataFrame) -> str:
    """The machine the runs' own tags say they ran on."""
    cores, gpus = runs["cpu_count"].dropna().unique(), runs["gpus"].dropna().unique()
    if len(cores) != 1 or len(gpus) != 1:
        return "several machines"
    gpu = "no GPU" if gpus[0] == "0" else f"{gpus[0]} GPU(s)"
    return f"{cores[0]} CPU cores and {gpu}"


def question_table(s: Stats, question: Question) -> str:
    rows = [
        "| preset | runs | eval_acc | eval_exact | epochs_to_target | train_seconds | parameters |",
        "|---|---|---|---|---|---|---|",
    ]
    for preset in question.presets:
        runs = s.of(preset)
        target = _spread(runs["epochs_to_target"], 0)
        if runs["epochs_to_target"].notna().any() and runs["epochs_to_target"].isna().any():
            target += f" ({s.reached(preset)} of {len(runs)} reached)"
        rows.append(
            f"| {preset} | {len(runs)} | {_spread(runs['eval_acc'], 2, True)} | "
            f"{_spread(runs['eval_exact'], 2, True)} "
            f"| {target} | {_spread(runs['train_seconds'], 1)} | {runs['parameters'].max():,.0f} |"
        )
    return "\n".join(rows)


def write_document(runs: pd.DataFrame, parent_run_id: str, request: StudyConfig) -> Path:
    from echo import figures, tracking

    output = Path(request.folder) / "RESULTS.md"
    charts = output.parent / "results"
    charts.mkdir(parents=True, exist_ok=True)
    finished = runs[runs["status"] == "FINISHED"]
    s = Stats(finished)
    failed = runs[runs["status"] != "FINISHED"]
    experiment, started, minutes = tracking.run_facts(parent_run_id)
    lines = [
        "# What the tutorial left open, measured",
        "",
        "Generated by `python -m echo.study`; do not edit by hand. Regenerate the whole study "
        "with that",
        "command, or only this document from its runs with `python -m echo.study "
        f"sweep={parent_run_id}`.",
        "",
        f"- Run on {started:%Y-%m-%d}, on a machine with {_machine(runs)}"
        + (f"; the sweep took {minutes:.0f} minutes." if minutes is not None else "."),
        f"- {len(runs)} runs: {len(runs['preset'].unique())} presets of `conf/experiment/` x seeds "
        f"{', '.join(str(int(x)) for x in sorted(runs['seed'].unique()))}, one after another in "
        "one process "
        f"(MLflow experiment `{experiment}`, sweep run `{parent_run_id}`).",
        "- Held-out scores come from fresh sequences no run trained on: `eval_acc` counts echoed "
        "values, "
        "`eval_exact` whole windows. Tables give mean ± standard deviation over the seeds; "
        "`epochs_to_target` is the sequences trained until the fraction `trainer.target_exact` of "
        "validation windows was echoed exactly (only presets that set it).",
        "- `train_seconds` is wall time on a shared machine: compare it within a table, not "
        "across machines.",
    ]
    if len(failed):
        lines.append(
            "- Failed runs, left out of the tables: "
            f"{', '.join(f'{r.preset} seed {r.seed:.0f}' for r in failed.itertuples())}."
        )
    for question in QUESTIONS:
        present = [p for p in question.presets if s.count(p)]
        if len(present) < len(question.presets):
            continue  # a partial study answers only the questions it has every preset of
        figure = figures.preset_comparison(finished, list(question.presets))
        chart = charts / f"{question.slug}.png"
        figure.savefig(chart, dpi=90)
        lines += [
            "",
            f"## {question.title}",
            "",
            f"*{question.asks}*",
            "",
            question_table(s, question),
            "",
            f"![{question.title}](results/{chart.name})",
            "",
            question.answer(s),
        ]
    from echo.marked import kept_blocks  # another command's section (echo.capacity) stays

    output.write_text(kept_blocks(output, "\n".join(lines) + "\n"))
    return output


def main(argv: list[str]) -> Path:
    request = check(parse_key_values(StudyConfig, argv))
    parent = request.sweep
    if parent is None:
        stamp = datetime.datetime.now().strftime("%Y-%m-%d_%H-%M-%S")
        parent = run_sweep(request, Path("multirun").resolve() / f"study_{stamp}")
    output = write_document(collect(parent), parent, request)
    print(f"echo.study: wrote {output}")
    return output


def command() -> None:
    """`echo-study` and `python -m echo.study`."""
    run_command(main, __doc__)


if __name__ == "__main__":
    command()
