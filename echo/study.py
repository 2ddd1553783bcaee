"""`python -m echo.study`: answer the tutorial's open questions with a multi-seed sweep.

    python -m echo.study                  # every preset, seeds 1..5; writes experiments/RESULTS.md
    python -m echo.study seeds=5 'presets=[tutorial_seq2seq,stateless]'
    python -m echo.study sweep=PARENT_RUN_ID      # rewrite the document from a finished study
    python -m echo.study resume=PARENT_RUN_ID     # finish a killed study, keeping finished runs
    python -m echo.study seeds=1 'overrides=[trainer.epochs=3]' folder=dry_run   # a dry run

It runs the presets of conf/experiment/ as ONE multirun of echo.train (`experiment=...
trainer.seed=...`), one job after another so that their training times compare, then reads the
runs back from MLflow and writes a document: per question, a table of mean and spread over the
seeds, a chart, and an answer whose every figure comes from the runs and their configs. Its
comparisons are judged on validation against the spread over seeds, and a sentence the runs
contradict is not written. It writes RESULTS.md and
its charts (results/) into `folder`: experiments/ of echo's source tree unless told; installed
echo (`echo-study`) has no such folder and must be given one."""

from __future__ import annotations

import datetime
import subprocess
import sys
from dataclasses import dataclass, field
from itertools import pairwise
from pathlib import Path
from typing import Callable, List, Optional

import numpy as np
import pandas as pd

from echo.config import (
    CONF_DIR,
    SOURCE_TREE,
    DataConfig,
    parse_key_values,
    windows_per_sequence,
)
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
    # Metrics shown beside the usual ones in this question's table.
    extra_columns: tuple[str, ...] = ()


# Two presets' means differ when they lie more than this many standard errors of their
# difference apart: about a 95% interval for a normal error.
DIFFERENT_BEYOND = 2.0
# Metrics that are fractions of windows or values scored, for which a binomial error applies.
FRACTIONS = ("val_acc", "val_exact", "eval_acc", "eval_exact")
# What each model kind is, in the study's sentences.
KIND_WORDS = {
    "seq2seq": "LSTM returning one output per step",
    "encdec": "encoder-decoder (RepeatVector)",
    "attention": "encoder-decoder with attention",
    "one_to_one": "one-to-one LSTM",
    "many_to_one": "many-to-one LSTM",
}


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

    def param(self, preset: str, name: str):
        """A config value of the preset's runs (the same in every seed's run)."""
        values = self.of(preset)[name].dropna()
        return values.iloc[0] if len(values) else None

    def flag(self, preset: str, name: str) -> bool:
        return str(self.param(preset, name)).lower() == "true"

    def has_target(self, preset: str) -> bool:
        return self.of(preset)["target_exact"].notna().any()

    def reached(self, preset: str) -> int:
        """How many of the preset's runs met the exact-echo target during training."""
        return int(self.of(preset)["epochs_to_target"].notna().sum())

    def windows(self, preset: str, full_only: bool = False) -> int:
        """Windows per sequence of the preset's data; with `full_only`, those without padding."""
        data = DataConfig(
            n_unique=int(self.param(preset, "n_unique")),
            length=int(self.param(preset, "length")),
            n_in=int(self.param(preset, "n_in")),
            n_out=int(self.param(preset, "n_out")),
            pad_incomplete=self.flag(preset, "pad_incomplete") and not full_only,
        )
        return windows_per_sequence(data)

    def updates_per_sequence(self, preset: str) -> float:
        return self.windows(preset) / float(self.param(preset, "batch_size"))

    def full(self, preset: str, metric: str) -> pd.Series:
        """`metric` (val_exact, eval_acc, ...) on the preset's full windows only: a padded
        run's `*_full_*` metric, an unpadded run's own (all its windows are full). NaN for
        padded runs logged before echo scored full windows."""
        runs = self.of(preset)
        if not self.flag(preset, "pad_incomplete"):
            return runs[metric]
        split, _, kind = metric.partition("_")
        name = f"{split}_full_{kind}"
        return runs[name] if name in runs else pd.Series(float("nan"), index=runs.index)

    def scored_windows(self, preset: str, full_only: bool = False) -> int:
        """Windows one run scores on validation or test: eval_sequences of its windows."""
        return int(self.param(preset, "eval_sequences")) * self.windows(preset, full_only)

    def pct(self, preset: str, metric: str = "eval_exact") -> str:
        return f"{100 * self.mean(preset, metric):.2f}%"


def _pct(values: pd.Series) -> str:
    return f"{100 * values.mean():.2f}%"


def compare(a: pd.Series, b: pd.Series, windows: tuple[int, int] = (0, 0)) -> int:
    """1 if the mean of `a` (one value per seed) is above that of `b` beyond their spread, -1
    if below, 0 if about the same.

    The standard error of the difference of means comes from each side's spread over its
    seeds; for fractions of `windows` scored per run, never less than the binomial error of
    that many windows, so that a single seed, or seeds that all score alike, still have one.
    """
    a, b = a.dropna(), b.dropna()
    if a.empty or b.empty:
        return 0
    variance = 0.0
    for values, scored in ((a, windows[0]), (b, windows[1])):
        spread = values.var(ddof=1) if len(values) > 1 else 0.0
        if scored:
            p = float(values.mean())
            spread = max(spread, p * (1 - p) / scored)
        variance += spread / len(values)
    difference = float(a.mean() - b.mean())
    if abs(difference) <= DIFFERENT_BEYOND * variance**0.5:
        return 0
    return 1 if difference > 0 else -1


def compare_presets(s: Stats, a: str, b: str, metric: str = "val_exact") -> int:
    """`compare` of two presets' `metric` over their seeds."""
    scored = (s.scored_windows(a), s.scored_windows(b)) if metric in FRACTIONS else (0, 0)
    return compare(s.of(a)[metric], s.of(b)[metric], scored)


def _times(a: float, b: float) -> str:
    """a as a multiple of b: "2.5x", "0.79x"."""
    if not (np.isfinite(a) and np.isfinite(b)) or b == 0:
        return "an unknown multiple of"
    return f"{a / b:.2g}x"


def _count(value: float) -> str:
    return f"{value:,.0f}"


def _to_target(s: Stats, preset: str) -> str:
    """How soon a preset's runs met their target, in words; what they trained without one."""
    runs, epochs = s.count(preset), s.param(preset, "epochs")
    if not s.has_target(preset):
        return f"trained {_count(epochs)} sequences, with no target to stop at"
    reached, target = s.reached(preset), s.mean(preset, "target_exact")
    if not reached:
        return (
            f"never met the {target:.1%} target within its {_count(epochs)} sequences "
            f"({runs} seeds)"
        )
    return (
        f"met the {target:.1%} target in {reached} of {runs} seeds, after "
        f"{s.mean(preset, 'epochs_to_target'):,.0f} sequences on average"
    )


def _echo_of(s: Stats, preset: str) -> str:
    """The values echoed of each window, as "2 of 5"."""
    return f"{s.param(preset, 'n_out'):.0f} of {s.param(preset, 'n_in'):.0f}"


def _differences(s: Stats, presets: tuple[str, ...], names: dict[str, str]) -> list[str]:
    """The words of `names` (param -> words) whose values are not the same across `presets`."""
    return [
        words for name, words in names.items() if len({str(s.param(p, name)) for p in presets}) > 1
    ]


def _budget(s: Stats, presets: tuple[str, ...]) -> Optional[tuple[str, str]]:
    """("150 units", "5,000 sequences") when `presets` share both, else None."""
    if _differences(s, presets, {"units": "units", "epochs": "sequences"}):
        return None
    units, epochs = s.param(presets[0], "units"), s.param(presets[0], "epochs")
    return f"{units:.0f} units", f"{_count(epochs)} sequences"


def _and(words: list[str]) -> str:
    return ", ".join(words[:-1]) + " and " + words[-1] if len(words) > 1 else "".join(words)


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
    windows = sorted({s.windows(p) for p in ("tutorial_seq2seq", "tutorial_encdec")})
    if all((runs["eval_acc"] == 1.0).all() for runs in programs):
        lines.append('The claim of 100% "pretty much every time" holds on these seeds.')
    elif all((runs["eval_acc"] >= 0.99).all() for runs in programs):
        lines.append(
            'So the claim of 100% "pretty much every time" holds only approximately: every seed '
            "comes within 1% of it, but held-out data shows errors that the tutorial's check on "
            f"one sequence of {' or '.join(str(w) for w in windows)} windows can miss."
        )
    else:
        lines.append('So the claim of 100% "pretty much every time" does not hold on these seeds.')
    fast, tutorial = "encdec_fast", "tutorial_encdec"
    if s.has_target(fast) and not s.has_target(tutorial):
        how = f"trains to a target instead of for {_count(s.param(tutorial, 'epochs'))} sequences"
    else:
        how = f"trains {_count(s.param(fast, 'epochs'))} sequences at most"
    lines.append(
        f"encdec_fast, which {how}, {_to_target(s, fast)}, with {s.pct(fast)} held-out exact "
        "echoes."
    )
    return " ".join(lines)


def answer_linear(s: Stats) -> str:
    base, linear = "tutorial_encdec", "linear"
    budget = _budget(s, (base, linear))
    setting = (
        f"With the same network ({budget[0]}), data and {budget[1]}"
        if budget and not _differences(s, (base, linear), {"kind": "", "batch_size": ""})
        else "With its preset's settings"
    )
    n_unique = s.param(linear, "n_unique")
    verdict = {
        -1: "falls short of the one-hot model's",
        0: "is about the same as the one-hot model's",
        1: "exceeds the one-hot model's",
    }[compare_presets(s, linear, base)]
    return (
        f"{setting}, the linear representation echoes {s.pct(linear)} of held-out windows "
        f"exactly against {s.pct(base)} for one-hot, and {s.pct(linear, 'eval_acc')} of values "
        f"against {s.pct(base, 'eval_acc')}. It has "
        f"{_times(s.mean(linear, 'parameters'), s.mean(base, 'parameters'))} the weights "
        f"({s.mean(linear, 'parameters'):,.0f} against {s.mean(base, 'parameters'):,.0f}). "
        f"Rounding a regression back to one of {n_unique:.0f} integers leaves a margin of "
        f"0.5/{n_unique - 1:.0f} per value. Within this budget its skill on validation "
        f"({s.pct(linear, 'val_exact')} exact against {s.pct(base, 'val_exact')}) {verdict}."
    )


def answer_masked(s: Stats) -> str:
    base, masked = "tutorial_seq2seq", "masked"
    padded, full = s.windows(masked), s.windows(masked, full_only=True)
    updates, base_updates = s.updates_per_sequence(masked), s.updates_per_sequence(base)
    lines = [
        f"Keeping the padded windows trains on {padded} windows per sequence instead of "
        f"{s.windows(base)}, in batches of {s.param(masked, 'batch_size'):.0f} instead of "
        f"{s.param(base, 'batch_size'):.0f}: {updates:g} weight updates per sequence against "
        f"{base_updates:g}, and {s.mean(masked, 'train_seconds'):.1f} s of training against "
        f"{s.mean(base, 'train_seconds'):.1f} s."
    ]
    test, val = s.full(masked, "eval_exact"), s.full(masked, "val_exact")
    if test.isna().all() or val.isna().all():
        lines.append(
            "These runs scored the masked model on all its windows, padded ones included, and "
            "not on the full windows alone, so its scores do not compare with the unpadded "
            f"model's: {s.pct(masked)} exact echoes against {s.pct(base)}."
        )
        return " ".join(lines)
    scored = s.scored_windows(masked, full_only=True), s.scored_windows(base)
    verdict = compare(val, s.full(base, "val_exact"), scored)
    what = {
        -1: "worse skill on them than without padding",
        0: "no skill on them beyond the spread over seeds",
        1: "better skill on them than without padding",
    }[verdict]
    lines += [
        f"On the same {full} full windows of each sequence, the masked model echoes "
        f"{_pct(test)} of held-out windows exactly against {s.pct(base)} without padding "
        f"(values: {_pct(s.full(masked, 'eval_acc'))} against {s.pct(base, 'eval_acc')}; "
        f"validation: {_pct(val)} against {s.pct(base, 'val_exact')}).",
        f"So padding adds {padded - full} windows per sequence to train on and {what} "
        "(judged on validation).",
        f"Counting the padded windows as well, the masked model echoes {s.pct(masked)} of all "
        f"{padded} windows exactly.",
    ]
    return " ".join(lines)


def _needs_more(s: Stats, shorter: str, longer: str) -> bool:
    """Whether `longer` needed more training than `shorter` beyond the spread over seeds:
    it met its target in fewer seeds, or later in all of them."""
    if not (s.has_target(shorter) and s.has_target(longer)):
        return False
    if s.reached(shorter) < s.count(shorter):
        return False  # the shorter echo's training need is not known either
    if s.reached(longer) < s.count(longer):
        return True
    return compare(s.of(longer)["epochs_to_target"], s.of(shorter)["epochs_to_target"]) > 0


def answer_longer(s: Stats) -> str:
    presets = sorted(("encdec_fast", "longer", "longest"), key=lambda p: s.param(p, "n_out"))
    parts = [
        f"echoing {_echo_of(s, p)} values with {s.param(p, 'units'):.0f} units "
        f"({s.mean(p, 'parameters'):,.0f} weights), "
        f"batches of {s.param(p, 'batch_size'):.0f} windows and a learning rate of "
        f"{s.param(p, 'learning_rate'):g}, "
        f"it {_to_target(s, p)}, for {s.pct(p)} held-out exact echoes"
        for p in presets
    ]
    kinds = {(s.param(p, "kind"), s.flag(p, "stateful")) for p in presets}
    if len(kinds) == 1:
        kind, stateful = kinds.pop()
        model = f"a {'stateful' if stateful else 'stateless'} {KIND_WORDS.get(kind, kind)}"
    else:
        model = "the models of their presets"
    targets = " trained to a target" if all(s.has_target(p) for p in presets) else ""
    lines = [f"With {model}{targets}: {'; '.join(parts)}."]
    for shorter, longer in pairwise(presets):
        if all(s.has_target(p) and s.reached(p) == s.count(p) for p in (shorter, longer)):
            took = _times(s.mean(longer, "epochs_to_target"), s.mean(shorter, "epochs_to_target"))
            lines.append(
                f"The echo of {_echo_of(s, longer)} values took {took} the sequences of the "
                f"echo of {_echo_of(s, shorter)}."
            )
    for p in presets:
        missed = s.count(p) - s.reached(p)
        if s.has_target(p) and missed:
            most = s.of(p)["epochs_trained"].max()
            lines.append(
                f"{_count(most)} sequences were not enough for {_echo_of(s, p)} in {missed} of "
                f"{s.count(p)} seeds."
            )
    if all(_needs_more(s, a, b) for a, b in pairwise(presets)):
        lines.append("Longer echoes needed more training here, as the tutorial expects.")
    differ = _differences(
        s,
        tuple(presets),
        {"units": "units", "batch_size": "batch size", "learning_rate": "learning rate"},
    )
    if differ:
        lines.append(
            f"The presets differ in {_and(differ)} as well as in length, so these runs do "
            "not measure what each length needs of them."
        )
    return " ".join(lines)


def answer_stateless(s: Stats) -> str:
    base, stateless = "tutorial_seq2seq", "stateless"
    change = s.mean(stateless, "val_exact") - s.mean(base, "val_exact")
    verdict = compare_presets(s, stateless, base)
    if verdict == 0:
        judged = "little to no change on validation, as the tutorial expects"
    else:
        judged = (
            f"{'better' if verdict > 0 else 'worse'} by {100 * abs(change):.2f} points of exact "
            "echoes on validation, not the little to no change the tutorial expects"
        )
    batch = s.param(stateless, "batch_size")
    how = "updated after every window" if batch == 1 else f"in batches of {batch:.0f} windows"
    updates, base_updates = s.updates_per_sequence(stateless), s.updates_per_sequence(base)
    lines = [
        f"A stateless LSTM {how} echoes {s.pct(stateless)} of held-out windows exactly against "
        f"{s.pct(base)} for the stateful tutorial regime "
        f"(validation: {s.pct(stateless, 'val_exact')} against {s.pct(base, 'val_exact')}): "
        f"{judged}.",
        f"It makes {updates / base_updates:.3g} times as many weight updates ({updates:g} "
        f"against {base_updates:g} per sequence) and trains in "
        f"{s.mean(stateless, 'train_seconds'):.1f} s against "
        f"{s.mean(base, 'train_seconds'):.1f} s.",
    ]
    if verdict == 0:
        lines.append(
            "Each window holds every value its echo needs, so state carried from window to "
            "window has nothing to add."
        )
    return " ".join(lines)


def answer_topologies(s: Stats) -> str:
    base, others = "tutorial_encdec", ("one_to_one", "many_to_one")
    parts = [
        f"{name} echoes {s.pct(name)} of held-out windows exactly "
        f"({s.mean(name, 'parameters'):,.0f} weights)"
        for name in others
    ]
    budget = _budget(s, (base, *others))
    setting = f"With the same {_and(list(budget))}" if budget else "With their presets' settings"
    worse = [n for n in others if compare_presets(s, n, base) < 0]
    if not budget:  # units or training differ already: the runs cannot speak to it
        verdict = (
            "Their presets differ in units or training, so these runs do not test the "
            "tutorial's expectation that they need a larger network or longer training."
        )
    elif worse:
        verdict = (
            f"{' and '.join(worse)} fall{'s' if len(worse) == 1 else ''} short of the "
            "encoder-decoder on validation within the same budget, as the tutorial expects."
        )
    else:
        verdict = (
            "Neither falls short of the encoder-decoder on validation within the same budget: "
            "the tutorial's expectation that they need a larger network or longer training is "
            "not borne out here."
        )
    return (
        f"{setting}, {parts[0]} and {parts[1]}, against {s.pct(base)} for the encoder-decoder "
        f"({s.mean(base, 'parameters'):,.0f} weights). {verdict}"
    )


def answer_attention(s: Stats) -> str:
    base, attention = "longest", "attention"
    budget = _budget(s, (base, attention))
    alike = f"with the same {_and(list(budget))}" if budget else "with its preset's settings"
    verdict = {
        -1: "fewer windows exactly than RepeatVector alone",
        0: "about as many windows exactly as RepeatVector alone",
        1: "more windows exactly than RepeatVector alone",
    }[compare_presets(s, attention, base)]
    return (
        f"On the longest echo ({_echo_of(s, attention)} values), the decoder that attends over "
        f"the encoder's outputs {_to_target(s, attention)}, and echoes {s.pct(attention)} of "
        f"held-out windows exactly. RepeatVector alone, {alike}, {_to_target(s, base)}, and "
        f"echoes {s.pct(base)} exactly. On validation, attention echoes {verdict} "
        f"({s.pct(attention, 'val_exact')} against {s.pct(base, 'val_exact')}). It adds "
        f"{s.mean(attention, 'parameters') - s.mean(base, 'parameters'):,.0f} weights to "
        f"{s.mean(base, 'parameters'):,.0f}, with which the decoder reads the encoder's every "
        "step instead of one vector."
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
        ("val_full_exact", "eval_full_exact"),
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
        "A stateless LSTM against the stateful regime: little to no change, as the tutorial "
        "expects?",
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
        "Does a decoder that attends over the encoder's outputs echo long windows better than "
        "RepeatVector alone?",
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


# The params the study's tables and answers quote, and the names they go by there.
PARAMS = {
    "trainer.seed": "seed",
    "model.units": "units",
    "model.kind": "kind",
    "model.stateful": "stateful",
    "data.n_unique": "n_unique",
    "data.length": "length",
    "data.n_in": "n_in",
    "data.n_out": "n_out",
    "data.pad_incomplete": "pad_incomplete",
    "trainer.epochs": "epochs",
    "trainer.batch_size": "batch_size",
    "trainer.learning_rate": "learning_rate",
    "trainer.eval_sequences": "eval_sequences",
    "trainer.target_exact": "target_exact",
}
# Metrics only some runs log (a padded run's scores on its full windows), NaN for the others
# and for runs logged before echo had them.
OPTIONAL_METRICS = ("val_full_acc", "val_full_exact", "eval_full_acc", "eval_full_exact")


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
    for metric in OPTIONAL_METRICS:
        column = machine.get(f"metrics.{metric}", pd.Series(float("nan"), index=machine.index))
        table[metric] = table["run_id"].map(column)
    for tag in ("cpu_count", "gpus"):
        column = machine.get(f"tags.echo.{tag}", pd.Series(None, index=machine.index))
        table[tag] = table["run_id"].map(column)
    return table.sort_values(["preset", "seed"]).reset_index(drop=True)


def _spread(values: pd.Series, digits: int, percent: bool = False) -> str:
    values = values.dropna()
    if values.empty:
        return "n/a"
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


def _to_target_cell(s: Stats, preset: str) -> str:
    """epochs_to_target's cell: "no target" where the preset sets none, "target missed" where
    no seed met it, else the mean and spread over the seeds that did."""
    runs = s.of(preset)
    if not s.has_target(preset):
        return "no target"
    if not s.reached(preset):
        return f"target missed ({len(runs)} of {len(runs)})"
    cell = _spread(runs["epochs_to_target"], 0)
    if s.reached(preset) < len(runs):
        cell += f" ({s.reached(preset)} of {len(runs)} reached)"
    return cell


def question_table(s: Stats, question: Question) -> str:
    extra = question.extra_columns
    header = ["preset", "runs", "val_exact", "eval_acc", "eval_exact", *extra]
    header += ["epochs_to_target", "train_seconds", "parameters"]
    rows = [f"| {' | '.join(header)} |", "|" + "---|" * len(header)]
    for preset in question.presets:
        runs = s.of(preset)
        cells = [preset, str(len(runs))]
        cells += [_spread(runs[m], 2, True) for m in ("val_exact", "eval_acc", "eval_exact")]
        cells += [_spread(s.full(preset, m.replace("_full", "")), 2, True) for m in extra]
        cells += [
            _to_target_cell(s, preset),
            _spread(runs["train_seconds"], 1),
            f"{runs['parameters'].max():,.0f}",
        ]
        rows.append(f"| {' | '.join(cells)} |")
    return "\n".join(rows)


# What the document's scores, cells and verdicts mean: its preamble's last points.
HOW_READ = (
    "- Held-out scores come from fresh sequences no run trained on: `eval_acc` counts echoed "
    "values, `eval_exact` whole windows; `val_exact` is the same on the validation "
    "sequences that training checked. Tables give mean ± standard deviation over the "
    "seeds; `epochs_to_target` is the sequences trained until the fraction "
    "`trainer.target_exact` of validation windows was echoed exactly: *no target* where "
    "the preset sets none, *target missed* where no seed met it.",
    "- Comparisons (better, worse, about the same) are judged on validation; test scores "
    "are reported. Two presets differ when their means lie more than "
    f"{DIFFERENT_BEYOND:g} standard errors of the difference apart, the error taken from "
    "the spread over seeds and, for scores, never less than the binomial error of the "
    "windows scored. A sentence the runs contradict is left out.",
)


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
        *HOW_READ,
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
