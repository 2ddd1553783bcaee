"""What the capacity study's runs show (echo.capacity): read back from MLflow under its
parent, as tables, sentences each printed only when the runs support it, a chart, its section
of RESULTS.md and its paragraph of README.md."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Optional

import numpy as np
import pandas as pd

from echo.capacity import (
    LABELS,
    NAMES,
    README_BLOCK,
    SECTION,
    STAGE_TAG,
    CapacityConfig,
    choose_setting,
    compose_job,
    fewest_passing,
    next_run,
    task_of,
    task_overrides,
)
from echo.errors import BadRequest

PARAMS = {
    "data.n_in": "n_in",
    "data.n_out": "n_out",
    "data.length": "length",
    "model.units": "units",
    "trainer.seed": "seed",
    "trainer.batch_size": "batch_size",
    "trainer.learning_rate": "learning_rate",
    "trainer.epochs": "epochs",
    "trainer.eval_sequences": "eval_sequences",
    "trainer.log_every": "log_every",
}


def collect(parent: str) -> pd.DataFrame:
    """The study's runs, one row each (each job's newest run): stage, topology, task, the
    params of PARAMS, status, reached, the metrics, job and start_time."""
    from echo import report, tracking
    from echo.sweep import JOB_TAG

    runs = tracking.runs_frame(parent_run_id=parent)
    if runs.empty:
        return pd.DataFrame(columns=["stage", "topology", "task", "job", "status", "reached"])
    runs = runs.sort_values("start_time").drop_duplicates(f"tags.{JOB_TAG}", keep="last")
    table = report.runs_table(runs, list(PARAMS)).rename(columns=PARAMS)
    by_id = runs.set_index("run_id")
    for column, tag in (("stage", STAGE_TAG), ("job", JOB_TAG)):
        table[column] = table["run_id"].map(by_id[f"tags.{tag}"])
    for label in LABELS:
        table[label] = table["run_id"].map(by_id[f"tags.echo.capacity.{label}"])
    table["start_time"] = table["run_id"].map(by_id["start_time"])
    table["reached"] = (table["status"] == "FINISHED") & table["epochs_to_target"].notna()
    windows = table["length"] - table["n_in"] + 1
    table["batch_sequences"] = table["batch_size"] / windows
    return table


def settings(runs: pd.DataFrame) -> dict[str, tuple[int, float]]:
    """Each calibrated topology's (batch_sequences, learning_rate), chosen on validation."""
    calibration = runs[runs["stage"] == "calibrate"]  # a diverged run counts as not reached
    return {topology: choose_setting(group) for topology, group in calibration.groupby("topology")}


def ladder_rows(runs: pd.DataFrame, request: CapacityConfig) -> pd.DataFrame:
    """Per topology and task: the fewest passing units (NaN when none passed), whether the
    ladder is settled, the sizes tried, and the sequences and seconds at the fewest size."""
    rows, ladder = [], runs[runs["stage"] == "ladder"].sort_values("start_time")
    for topology in request.topologies:
        for task in request.tasks:
            mine = ladder[(ladder["topology"] == topology) & (ladder["task"] == task)]
            reached = {(int(r.units), int(r.seed)): bool(r.reached) for r in mine.itertuples()}
            fewest = fewest_passing(request.ladder, request.seeds, reached)
            at = mine[mine["units"] == fewest]["epochs_to_target"] if fewest else pd.Series([])
            tried = [
                f"{units:.0f} ({group['reached'].sum()} of {len(group)})"
                for units, group in mine.groupby("units", sort=False)
            ]
            n_out, n_in = task_of(task)
            rows.append(
                {
                    "topology": topology,
                    "task": task,
                    "n_out": n_out,
                    "n_in": n_in,
                    "fewest": float(fewest) if fewest else math.nan,
                    "settled": bool(len(mine))
                    and next_run(request.ladder, request.seeds, reached) is None,
                    "largest": float(mine["units"].max()) if len(mine) else math.nan,
                    "tried": ", ".join(tried),
                    "sequences": at.astype(float).tolist(),
                    "seconds": mine[mine["units"] == fewest]["train_seconds"].mean(),
                }
            )
    return pd.DataFrame(rows)


def needed(row) -> float:
    """Units a settled ladder needed: infinity when the budget ran out at every size."""
    return row.fewest if not math.isnan(row.fewest) else math.inf


def spread(values: list[float]) -> str:
    """Mean ± standard deviation, as the study's tables give them."""
    if not values:
        return "not reached"
    std = float(np.std(values, ddof=1)) if len(values) > 1 else 0.0
    return f"{np.mean(values):,.0f} ± {std:,.0f}"


def fewest_cell(row, request: CapacityConfig) -> str:
    if not row.settled:
        return "not finished"
    if math.isnan(row.fewest):
        return f"budget ran out (up to {row.largest:.0f})"
    return f"{row.fewest:.0f}"


def ladder_table(rows: pd.DataFrame, request: CapacityConfig) -> str:
    lines = [
        "| task | topology | fewest units | sequences to target | training seconds | "
        "sizes tried (seeds that reached, of those run) |",
        "|---|---|---|---|---|---|",
    ]
    for row in rows.itertuples():
        seconds = "" if math.isnan(row.seconds) else f"{row.seconds:.1f}"
        lines.append(
            f"| {row.n_out} of {row.n_in} | {NAMES[row.topology]} | {fewest_cell(row, request)} "
            f"| {spread(row.sequences)} | {seconds} | {row.tried} |"
        )
    return "\n".join(lines)


def fewer_units_sentence(rows: pd.DataFrame, fewer: str, more: str) -> Optional[str]:
    """That `fewer` needed fewer units than `more` on some tasks and more on none: only when
    the settled ladders say so, else None."""
    settled = rows[rows["settled"]]
    pairs = [
        (needed(a), needed(b))
        for (task, group) in settled.groupby("task", sort=False)
        if {fewer, more} <= set(group["topology"])
        for a in group[group["topology"] == fewer].itertuples()
        for b in group[group["topology"] == more].itertuples()
    ]
    if not pairs or any(a > b for a, b in pairs):
        return None
    less = sum(a < b for a, b in pairs)
    if not less:
        return None
    return (
        f"The {NAMES[fewer]} decoder needed fewer units than the {NAMES[more]} one on {less} of "
        f"the {len(pairs)} tasks both settled, and more on none."
    )


def longer_needs_more_sentence(rows: pd.DataFrame, topology: str, n_in: int) -> Optional[str]:
    """That echoing more of an `n_in`-value window never took fewer units with `topology`:
    only when its settled ladders say so (at least two of them), else None."""
    mine = rows[(rows["topology"] == topology) & (rows["n_in"] == n_in) & rows["settled"]]
    mine = mine.sort_values("n_out")
    units = [needed(row) for row in mine.itertuples()]
    if len(units) < 2 or any(b < a for a, b in zip(units, units[1:], strict=False)):
        return None
    said = ", ".join(
        f"{row.n_out} value{'s' if row.n_out > 1 else ''}: "
        + (f"{row.fewest:.0f}" if math.isfinite(needed(row)) else f"more than {row.largest:.0f}")
        for row in mine.itertuples()
    )
    grows = "grew" if units[-1] > units[0] else "stayed the same"
    return (
        f"With the {NAMES[topology]} decoder, echoing more of a {n_in}-value window never took "
        f"fewer units; the units needed {grows} ({said})."
    )


def ran_out_sentence(rows: pd.DataFrame, request: CapacityConfig) -> Optional[str]:
    """Where the budget ran out at every size tried; None where it never did."""
    out = rows[rows["settled"] & rows["fewest"].isna()]
    if out.empty:
        return None
    where = "; ".join(
        f"{NAMES[r.topology]} on {r.n_out} of {r.n_in} (up to {r.largest:.0f} units)"
        for r in out.itertuples()
    )
    return f"The budget of {request.budget:,} sequences ran out at every size tried for: {where}."


def calibration_table(runs: pd.DataFrame, chosen: dict[str, tuple[int, float]]) -> str:
    lines = [
        "| topology | batch (sequences) | learning rate | seeds that reached | sequences to "
        "target | val_exact | chosen |",
        "|---|---|---|---|---|---|---|",
    ]
    calibration = runs[runs["stage"] == "calibrate"]
    for (topology, batch, lr), group in calibration.groupby(
        ["topology", "batch_sequences", "learning_rate"]
    ):
        mark = "yes" if chosen.get(topology) == (int(batch), float(lr)) else ""
        lines.append(
            f"| {NAMES[topology]} | {batch:.0f} | {lr:g} | {group['reached'].sum()} of "
            f"{len(group)} | {spread(group['epochs_to_target'].dropna().tolist())} | "
            f"{group['val_exact'].mean():.4f} | {mark} |"
        )
    return "\n".join(lines)


def tutorial_rows(runs: pd.DataFrame) -> pd.DataFrame:
    """Per n_out of the tutorial's regime: seeds, sequences to target, seconds, the cap."""
    mine = runs[runs["stage"] == "tutorial"]
    rows = [
        {
            "n_out": int(n_out),
            "seeds": len(group),
            "reached": int(group["reached"].sum()),
            "sequences": group["epochs_to_target"].dropna().astype(float).tolist(),
            "seconds": float(group["train_seconds"].mean()),
            "cap": float(group["epochs"].max()),
            "val_exact": float(group["val_exact"].mean()),
        }
        for n_out, group in mine.groupby("n_out")
    ]
    return pd.DataFrame(rows)


def tutorial_table(tutorial: pd.DataFrame) -> str:
    lines = [
        "| n_out | seeds that reached | sequences to target | training seconds | "
        "val_exact at the end |",
        "|---|---|---|---|---|",
    ]
    for row in tutorial.itertuples():
        to_target = spread(row.sequences) if row.reached else f"not within {row.cap:,.0f}"
        lines.append(
            f"| {row.n_out} | {row.reached} of {row.seeds} | {to_target} | {row.seconds:.1f} | "
            f"{row.val_exact:.4f} |"
        )
    return "\n".join(lines)


def regime(runs: pd.DataFrame) -> str:
    """The tutorial regime's units, batch and rate, as its runs record them."""
    mine = runs[runs["stage"] == "tutorial"]
    return (
        f"`model=encdec`: {values(mine, 'units')} units, stateful, batches of "
        f"{values(mine, 'batch_size')} windows, learning rate "
        + " and ".join(f"{v:g}" for v in sorted(set(mine["learning_rate"])))
    )


def tutorial_sentence(tutorial: pd.DataFrame, target: float, said: str) -> Optional[str]:
    """How many sequences the tutorial's regime took per n_out, and where the cap ran out."""
    if tutorial.empty:
        return None
    done = tutorial[tutorial["reached"] == tutorial["seeds"]]
    parts = [
        f"{r.n_out} value{'s' if r.n_out > 1 else ''} in {np.mean(r.sequences):,.0f} sequences"
        for r in done.itertuples()
    ]
    short = tutorial[tutorial["reached"] < tutorial["seeds"]]
    text = (
        f"In the tutorial's regime ({said}), echoing reached {target:.1%} of validation "
        "windows exactly for "
        + ("; ".join(parts) if parts else "no n_out")
        + (f" ({tutorial['seeds'].max()} seed{'s' if tutorial['seeds'].max() > 1 else ''})")
    )
    if len(short):
        outs = " and ".join(str(r.n_out) for r in short.itertuples())
        text += f"; for n_out {outs}, not every seed did within {short['cap'].max():,.0f}"
    return text + "."


def readme_paragraph(runs, rows, tutorial, request) -> Optional[str]:
    """What `python -m echo.train model=encdec data.n_out=3` reaches, and what to run for a
    perfect 3-value echo, from the study's runs; None without the runs to say it."""
    three = tutorial[tutorial["n_out"] == 3] if len(tutorial) else tutorial
    passed = rows[(rows["task"] == "3of5") & rows["fewest"].notna()]
    if three.empty or passed.empty:
        return None
    row = three.iloc[0]
    every_seed = row.reached == row.seeds  # "reached" only when no seed of it missed
    after = (
        f"reached {request.target:.1%} of validation windows exactly after "
        f"{np.mean(row.sequences):,.0f} sequences ({row.seconds:.0f} s of training)"
        if every_seed
        else f"had not reached {request.target:.1%} on {row.seeds - row.reached} of its "
        f"{row.seeds} seeds after {row.cap:,.0f} sequences"
    )
    best = passed.sort_values("seconds").iloc[0]
    sooner = " sooner" if not every_seed or best.seconds < row.seconds else ""
    batch, lr = settings(runs)[best.topology]
    at = runs[(runs["stage"] == "ladder") & (runs["task"] == "3of5")]
    at = at[(at["topology"] == best.topology) & (at["units"] == best.fewest)]
    overrides = task_overrides(request, best.topology, "3of5", int(best.fewest), lr, 1)[:-1]
    command = " ".join([*overrides, f"trainer.batch_size={at['batch_size'].iloc[0]:.0f}"])
    default = compose_job(["model=encdec", "data.n_out=3"], check_it=False).trainer.epochs
    within = every_seed and max(row.sequences) <= default
    return (
        "`python -m echo.train model=encdec data.n_out=3` trains the tutorial's regime for "
        f"{default:,} sequences, {'enough for' if within else 'short of'} an exact echo"
        f"{score_at(runs, default)}: in the capacity study (`python -m echo.capacity`, "
        f"[experiments/RESULTS.md](experiments/RESULTS.md)) that regime, trained on, {after}. "
        f"For a perfect 3-value echo{sooner}, run\n\n"
        f"```bash\npython -m echo.train {command}\n```\n\n"
        f"the {NAMES[best.topology]} decoder with the fewest units that reached the target on "
        f"{'all ' + str(len(best.sequences)) + ' seeds' if len(best.sequences) > 1 else 'its seed'}"
        f": it took {spread(best.sequences)} sequences "
        f"({best.seconds:.1f} s of training on average)."
    )


def score_at(runs: pd.DataFrame, sequences: int) -> str:
    """ ", echoing N% of validation windows exactly after it" for the study's tutorial run of
    3 of 5 (its first seed), from the val_exact it logged by then; "" without such a point."""
    from echo import tracking

    mine = runs[(runs["stage"] == "tutorial") & (runs["task"] == "3of5")]
    if mine.empty:
        return ""
    curve = tracking.curves(mine.sort_values("seed")["run_id"].iloc[0], ("val_exact",))
    # A point's step is the index of the sequence it was logged after, from 0.
    by_then = curve[curve["epoch"] < sequences] if "val_exact" in curve else curve.iloc[:0]
    if by_then.empty:
        return ""
    point = by_then.iloc[-1]
    return (
        f" (the study's run echoed {point['val_exact']:.1%} of validation windows exactly after "
        f"{point['epoch'] + 1:,.0f} sequences)"
    )


def values(runs: pd.DataFrame, column: str) -> str:
    """The values a param took in `runs`, as prose: "500", or "100 and 500"."""
    found = sorted(set(runs[column].dropna()))
    return " and ".join(f"{v:,.0f}" for v in found) or "an unknown number of"


def section(runs: pd.DataFrame, parent: str, request: CapacityConfig) -> tuple[str, object]:
    """RESULTS.md's section (without its markers) and its figure, from the runs alone."""
    from echo import figures, tracking

    rows, tutorial = ladder_rows(runs, request), tutorial_rows(runs)
    chosen, ladders = settings(runs), runs[runs["stage"] != "tutorial"]
    experiment, started, minutes = tracking.run_facts(parent)
    took = f"; it took {minutes:.0f} minutes" if minutes is not None else " (still running)"
    stated = "; ".join(
        f"{NAMES[t]}: batches of {b} sequence{'s' if b > 1 else ''}, learning rate {lr:g}"
        for t, (b, lr) in chosen.items()
    )
    sentences = [
        fewer_units_sentence(rows, "attention", "encdec"),
        fewer_units_sentence(rows, "encdec", "attention"),
        *(longer_needs_more_sentence(rows, t, n_in=5) for t in request.topologies),
        ran_out_sentence(rows, request),
        tutorial_sentence(tutorial, request.target, regime(runs)),
    ]
    lines = [
        "## How much network a longer echo needs",
        "",
        f"Generated by `python -m echo.capacity`; regenerate this section from its runs with "
        f"`python -m echo.capacity sweep={parent}`. Run on {started:%Y-%m-%d}{took} "
        f"({len(runs)} runs under parent run `{parent}`, MLflow experiment `{experiment}`).",
        "",
        f"- Per task and topology: the fewest units of the ladder {request.ladder} at which every "
        f"seed of {request.seeds} echoed {request.target:.1%} of the windows of "
        f"{values(ladders, 'eval_sequences')} validation sequences exactly within "
        f"{request.budget:,} training sequences, found by bisection (assumed: a "
        "size that passes has every larger size pass). A size fails at its first seed that "
        "misses, and its other seeds are not run.",
        "- Sequences to target: mean ± standard deviation over the seeds at that size, counted "
        f"in steps of the {values(ladders, 'log_every')} sequences between checks.",
        f"- One batch size and learning rate per topology, chosen by a sweep on seeds "
        f"{request.calibration_seeds} (echo {request.calibration_task.replace('of', ' of ')}, "
        f"{request.calibration_units} units) on the most seeds that reached the target, then the "
        f"fewest sequences, then val_exact: {stated}.",
        "",
        ladder_table(rows, request),
        "",
        "![Units needed against echo length](results/capacity.png)",
        "",
        " ".join(s for s in sentences if s),
        "",
        "The calibration sweep:",
        "",
        calibration_table(runs, chosen),
    ]
    if len(tutorial):
        lines += [
            "",
            f"The tutorial's regime, up to {request.tutorial_cap:,} sequences:",
            "",
            tutorial_table(tutorial),
        ]
    return "\n".join(lines), figures.units_needed(rows, NAMES, request.ladder)


def write_section(parent: str, request: CapacityConfig) -> Path:
    """Put the study's section into RESULTS.md (keeping the rest) and its paragraph into the
    README (when there is one to write), from the parent's runs alone."""
    from echo.marked import with_block

    runs = collect(parent)
    if runs.empty:
        raise BadRequest(f"sweep={parent}: the study has no runs")
    text, figure = section(runs, parent, request)
    output = Path(request.folder) / "RESULTS.md"
    (output.parent / "results").mkdir(parents=True, exist_ok=True)
    figure.savefig(output.parent / "results" / "capacity.png", dpi=90)
    before = output.read_text() if output.exists() else ""
    output.write_text(with_block(before, SECTION, text))
    paragraph = readme_paragraph(runs, ladder_rows(runs, request), tutorial_rows(runs), request)
    if request.readme and paragraph:
        readme = Path(request.readme)
        readme.write_text(with_block(readme.read_text(), README_BLOCK, paragraph))
    return output
