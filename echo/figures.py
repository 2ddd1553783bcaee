"""The charts a run and a sweep log, as matplotlib figures built from plain arrays."""

from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd

# Figures are only saved, never shown: matplotlib's Figure alone, without pyplot and its GUI
# backends, which would add about a second to every run's start.
from matplotlib.figure import Figure


def learning_curves(epoch: np.ndarray, loss: np.ndarray, acc: np.ndarray):
    figure = Figure(figsize=(9, 3.2), layout="constrained")
    left, right = figure.subplots(1, 2)
    left.plot(epoch, loss)
    left.set(xlabel="epoch", ylabel="loss", title="training loss")
    right.plot(epoch, acc)
    right.set(xlabel="epoch", ylabel="acc", ylim=(0, 1.02), title="training accuracy")
    return figure


def position_accuracy(accuracy: Sequence[float]):
    """Held-out accuracy of each echoed position, oldest value first."""
    figure = Figure(figsize=(4.5, 3.2), layout="constrained")
    axes = figure.subplots()
    positions = np.arange(1, len(accuracy) + 1)
    axes.bar(positions, accuracy)
    axes.set(
        xlabel="echoed position (1 = oldest)",
        ylabel="held-out accuracy",
        ylim=(0, 1.02),
        xticks=positions,
    )
    return figure


def sweep_chart(results: pd.DataFrame, keys: Sequence[str], metric: str = "eval_exact"):
    """`metric` of each job against the swept values: one line per value of the last key."""
    figure = Figure(figsize=(6, 3.6), layout="constrained")
    axes = figure.subplots()
    keys = list(keys)
    if not keys:
        keys = ["run"]
        results = results.assign(run=range(len(results)))
    x_key, *series_keys = keys[0], *keys[1:]
    groups = results.groupby(series_keys) if series_keys else [((), results)]
    for label, group in groups:
        group = group.sort_values(x_key)
        name = ", ".join(f"{k}={v}" for k, v in zip(series_keys, np.atleast_1d(label), strict=True))
        axes.plot(group[x_key], group[metric], marker="o", label=name or None)
    axes.set(xlabel=x_key, ylabel=metric, ylim=(-0.02, 1.02), title=f"{metric} across the sweep")
    if series_keys:
        axes.legend(fontsize="small")
    return figure


def preset_comparison(runs: pd.DataFrame, presets: Sequence[str]):
    """Per preset, each seed's held-out exact echoes and its training time (a dot per run, a bar
    for the mean): skill and cost side by side."""
    figure = Figure(figsize=(8, 3.2), layout="constrained")
    skill, cost = figure.subplots(1, 2)
    positions = np.arange(len(presets))
    for axes, metric, label in (
        (skill, "eval_exact", "held-out exact echoes"),
        (cost, "train_seconds", "training seconds"),
    ):
        values = [
            runs.loc[runs["preset"] == preset, metric].to_numpy(dtype=float) for preset in presets
        ]
        axes.bar(positions, [v.mean() if len(v) else np.nan for v in values], color="#c6d7ea")
        for x, v in zip(positions, values, strict=True):
            axes.plot(np.full(len(v), x), v, "o", color="#1f4e79", markersize=4)
        axes.set(ylabel=label, xticks=positions)
        axes.set_xticklabels(presets, rotation=20, ha="right")
    skill.set_ylim(0, 1.02)
    return figure


def units_needed(rows: pd.DataFrame, names: dict[str, str], ladder: Sequence[int]):
    """The fewest units that reached the target against the echo's length, a line per
    topology; an open triangle where the budget ran out at every size tried (at the largest)."""
    figure = Figure(figsize=(7, 3.6), layout="constrained")
    axes = figure.subplots()
    tasks = list(dict.fromkeys(rows["task"]))
    for topology, group in rows.groupby("topology", sort=False):
        x = np.array([tasks.index(t) for t in group["task"]])
        passed = group["fewest"].notna().to_numpy()
        (line,) = axes.plot(x[passed], group["fewest"][passed], marker="o", label=names[topology])
        out = ~passed & group["settled"].to_numpy()
        if out.any():
            axes.plot(
                x[out],
                group["largest"][out],
                linestyle="none",
                marker="^",
                markersize=9,
                markerfacecolor="none",
                color=line.get_color(),
                label=f"{names[topology]}: budget ran out",
            )
    labels = [t.replace("of", " of ") for t in tasks]
    axes.set_xticks(range(len(tasks)), labels)
    axes.set_yscale("log", base=2)
    axes.set_yticks(list(ladder), [str(u) for u in ladder])
    axes.set(
        xlabel="echo (values of window)",
        ylabel="fewest LSTM units",
        ylim=(ladder[0] / 1.5, ladder[-1] * 1.5),  # room for a marker at either end
    )
    axes.legend(fontsize="small")
    return figure
