"""`python -m echo.report`: a table of what varied across runs against how well they echoed.

    python -m echo.report                               # the runs of experiment `echo`
    python -m echo.report experiment=NAME csv=runs.csv  # and write the table as CSV
    python -m echo.report sweep=PARENT_RUN_ID png=sweep.png

Columns: the params that differ between the runs, then each run's summary metrics; rows sorted
best first (val_exact, then the fewest epochs to the target, then the shortest training);
the held-out test scores (eval_*) are shown, never used to order.

This module is also where runs become one pandas table (`runs_table`) and where the best of
them is chosen (`best_run`), for the sweep summary and the study alike.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import pandas as pd

from echo.config import defaults, parse_key_values
from echo.errors import BadRequest, run_command
from echo.store import tracking_uri

# The summary metrics a run logs, in the order tables show them.
METRICS = (
    "val_acc",
    "val_exact",
    "eval_acc",
    "eval_exact",
    "epochs_to_target",
    "epochs_trained",
    "train_seconds",
    "parameters",
)
# What "best" means: the metric a sweep's best run, the report's order and a search's objective
# go by. Validation, never the test scores (eval_*), which are only reported.
CHOOSE_BY = "val_exact"
# Best first: the highest CHOOSE_BY, then the fewest epochs to the target, then the fastest.
ORDER = {CHOOSE_BY: False, "epochs_to_target": True, "train_seconds": True}


@dataclass
class ReportConfig:
    experiment: str = "echo"
    sweep: Optional[str] = None  # a sweep's parent run id: only its jobs
    csv: Optional[str] = None
    png: Optional[str] = None


def runs_table(runs: pd.DataFrame, params: Optional[list[str]] = None) -> pd.DataFrame:
    """MLflow's runs frame as one row per run: run_name, status, the `params` given (dotted
    keys; those that vary between the runs when None), METRICS and run_id, best first.
    Params that are all numbers become numbers."""
    if params is None:
        names = [c.removeprefix("params.") for c in runs.columns if c.startswith("params.")]
        params = [p for p in names if runs[f"params.{p}"].astype(str).nunique() > 1]
    # A run whose process vanished is FAILED in MLflow, and one a search pruned is FINISHED
    # with partial scores: the table says which they were, and neither can be chosen.
    status = runs["status"]
    for tag, shown in (("vanished", "VANISHED"), ("pruned", "PRUNED")):
        marked = runs.get(f"tags.echo.{tag}", pd.Series(None, index=runs.index)) == "true"
        status = status.where(~marked, shown)
    table = pd.DataFrame(
        {"run_name": runs.get("tags.mlflow.runName"), "status": status}, index=runs.index
    )
    for param in params:
        values = runs.get(f"params.{param}", pd.Series(None, index=runs.index, dtype=object))
        numeric = pd.to_numeric(values, errors="coerce")
        table[param] = numeric if numeric.notna().all() else values
    for metric in METRICS:
        column = runs.get(f"metrics.{metric}", pd.Series(float("nan"), index=runs.index))
        table[metric] = pd.to_numeric(column)
    table["run_id"] = runs["run_id"]
    order = table.sort_values(
        list(ORDER), ascending=list(ORDER.values()), na_position="last", kind="stable"
    )
    return order.reset_index(drop=True)


def finished(table: pd.DataFrame) -> pd.DataFrame:
    """The runs of `table` that finished and have a score to be chosen by."""
    return table[table["status"] == "FINISHED"].dropna(subset=[CHOOSE_BY])


def best_run(table: pd.DataFrame) -> Optional[dict[str, object]]:
    """The best finished run of a `runs_table` (its first such row), or None: its run_id,
    run_name, and the metric and value it was chosen by."""
    done = finished(table)
    if done.empty:
        return None
    best = done.iloc[0]
    return {
        "run_id": best["run_id"],
        "run_name": best["run_name"],
        "metric": CHOOSE_BY,
        "value": float(best[CHOOSE_BY]),
    }


def varied_params(table: pd.DataFrame) -> list[str]:
    """The param columns of a `runs_table`."""
    fixed = {"run_name", "status", "run_id", *METRICS}
    return [c for c in table.columns if c not in fixed]


def main(argv: list[str]) -> pd.DataFrame:
    from echo import tracking  # MLflow: not for --help or a bad argument
    from echo.config import check_tracking_uri

    check_tracking_uri(tracking_uri())  # before MLflow meets a folder of files
    request = parse_key_values(ReportConfig, argv)
    vanished_after = defaults().mlflow.vanished_after
    runs = tracking.runs_frame(request.experiment, request.sweep, vanished_after)
    if runs.empty:
        raise BadRequest("no runs to report")
    table = runs_table(runs)
    with pd.option_context("display.max_rows", None, "display.width", 200):
        print(table.to_string(index=False))
    if request.csv:
        table.to_csv(request.csv, index=False)
    if request.png:
        from echo import figures

        figures.sweep_chart(finished(table), varied_params(table), CHOOSE_BY).savefig(request.png)
    return table


def command() -> None:
    """`echo-report` and `python -m echo.report`."""
    run_command(main, __doc__)


if __name__ == "__main__":
    command()
