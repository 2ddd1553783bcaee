"""The speed table and its sentences, from the measured runs: pure functions, no measuring.

`benchmarks/run.py` measures; this module only summarises what it measured, so that every
number and ratio printed comes from its results, and a ratio is printed only between rows
that train the same model on the same data to the same stopping rule, unless its sentence says
what differs.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field
from typing import Optional


@dataclass(frozen=True)
class Row:
    name: str
    # The row this one's speed-ups are taken over: the same model, data and stopping rule.
    compared_with: Optional[str] = None
    # What a reader must know of how it was set up (tuned choices, steps_per_execution).
    note: str = ""


@dataclass
class Summary:
    """One row's runs, one per seed: times as medians, scores as mean and spread."""

    seeds: int
    whole_seconds: float
    train_seconds: float
    peak_mb: float
    scores: dict[str, tuple[float, float]] = field(default_factory=dict)  # mean, std


SCORES = ("eval_acc", "eval_exact")


def summarise(runs: list[dict]) -> Summary:
    def mean_sd(key: str) -> tuple[float, float]:
        values = [r[key] for r in runs]
        return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0

    return Summary(
        seeds=len(runs),
        whole_seconds=statistics.median(r["whole_seconds"] for r in runs),
        train_seconds=statistics.median(r["train_seconds"] for r in runs),
        peak_mb=statistics.median(r["peak_mb"] for r in runs),
        scores={key: mean_sd(key) for key in SCORES},
    )


def times(a: float, b: float) -> str:
    """How many times as fast `a` seconds are as `b` seconds: b / a, as "2.5x"."""
    return f"{b / a:.1f}x"


def table(rows: list[Row], summaries: dict[str, Summary]) -> str:
    lines = [
        "| run | seeds | whole process (s) | training (s) | compared with | training speed-up | "
        "whole speed-up | eval_acc | eval_exact | peak memory (MB) |",
        "| --- | ---: | ---: | ---: | --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for row in rows:
        if row.name not in summaries:
            continue
        m = summaries[row.name]
        base = summaries.get(row.compared_with) if row.compared_with else None
        train_x = times(m.train_seconds, base.train_seconds) if base else ""
        whole_x = times(m.whole_seconds, base.whole_seconds) if base else ""
        scores = " | ".join(f"{mean:.4f} ± {sd:.4f}" for mean, sd in m.scores.values())
        name = f"{row.name} ({row.note})" if row.note else row.name
        lines.append(
            f"| {name} | {m.seeds} | {m.whole_seconds:.1f} | {m.train_seconds:.1f} | "
            f"{row.compared_with if base else ''} | {train_x} | {whole_x} | {scores} | "
            f"{m.peak_mb:.0f} |"
        )
    return "\n".join(lines)


def as_fast(summaries: dict[str, Summary], a: str, b: str) -> Optional[str]:
    """ "a trained in 2.2 s, b in 4.7 s: 2.1x as fast" when both were run."""
    if a not in summaries or b not in summaries:
        return None
    x, y = summaries[a].train_seconds, summaries[b].train_seconds
    return f"{a} trained in {x:.1f} s, {b} in {y:.1f} s: {times(x, y)} as fast"


def headline(
    summaries: dict[str, Summary],
    pairs: list[tuple[str, str, str]],
) -> list[str]:
    """One sentence per (row, other row, what is alike or differs) whose rows both ran."""
    sentences = []
    for a, b, alike in pairs:
        said = as_fast(summaries, a, b)
        if said:
            sentences.append(f"{said} ({alike}).")
    return sentences


def choose(trials: list[dict], setting: tuple[str, ...], target: bool) -> dict:
    """The setting (the `setting` keys of a trial) whose trials trained fastest on average,
    among those that met the target on validation in every trial when there is a target.
    Trials are runs on tuning seeds: the choice never sees the benchmark's seeds."""
    groups: dict[tuple, list[dict]] = {}
    for trial in trials:
        groups.setdefault(tuple(trial[key] for key in setting), []).append(trial)
    eligible = {
        values: group
        for values, group in groups.items()
        if not target or all(t.get("epochs_to_target") is not None for t in group)
    }
    if not eligible:
        raise SystemExit(f"tuning: no setting of {', '.join(setting)} met the target every time")
    best = min(eligible, key=lambda v: statistics.fmean(t["train_seconds"] for t in groups[v]))
    return dict(zip(setting, best, strict=True))
