"""`python -m echo.report`: a table of what varied across runs against how well they echoed.

    python -m echo.report                               # the runs of experiment `echo`
    python -m echo.report experiment=NAME csv=runs.csv  # and write the table as CSV
    python -m echo.report sweep=PARENT_RUN_ID png=sweep.png

Columns: the params that differ between the runs, then eval_acc, eval_exact, epochs_to_target
and train_seconds; rows sorted best first (eval_exact, then the fewest epochs to the target,
then the shortest training).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import pandas as pd

from echo.config import parse_key_values
from echo.errors import BadRequest, run_command
from echo.store import RESULT_METRICS

METRICS = list(RESULT_METRICS)


@dataclass
class ReportConfig:
    experiment: str = "echo"
    sweep: Optional[str] = None  # a sweep's parent run id: only its jobs
    csv: Optional[str] = None
    png: Optional[str] = None


def summarise(runs: pd.DataFrame) -> tuple[pd.DataFrame, list[str]]:
    """(table, the params that vary) from MLflow's runs frame."""
    params = [c for c in runs.columns if c.startswith("params.")]
    varied = [c for c in params if runs[c].astype(str).nunique() > 1]
    table = pd.DataFrame({"run_name": runs.get("tags.mlflow.runName"), "status": runs["status"]})
    for column in varied:
        values = runs[column]
        numeric = pd.to_numeric(values, errors="coerce")
        table[column.removeprefix("params.")] = numeric if numeric.notna().all() else values
    for metric in METRICS:
        table[metric] = runs.get(f"metrics.{metric}")
    table["run_id"] = runs["run_id"]
    table = table.sort_values(
        ["eval_exact", "epochs_to_target", "train_seconds"],
        ascending=[False, True, True],
        na_position="last",
    )
    return table.reset_index(drop=True), [c.removeprefix("params.") for c in varied]


def main(argv: list[str]) -> pd.DataFrame:
    from echo import tracking  # MLflow: not for --help or a bad argument

    request = parse_key_values(ReportConfig, argv)
    runs = tracking.runs_frame(request.experiment, request.sweep)
    if runs.empty:
        raise BadRequest("no runs to report")
    table, varied = summarise(runs)
    with pd.option_context("display.max_rows", None, "display.width", 200):
        print(table.to_string(index=False))
    if request.csv:
        table.to_csv(request.csv, index=False)
    if request.png:
        from echo import figures

        finished = table[table["status"] == "FINISHED"].dropna(subset=["eval_exact"])
        figures.sweep_chart(finished, varied).savefig(request.png)
    return table


if __name__ == "__main__":
    run_command(main, __doc__)
