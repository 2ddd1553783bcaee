"""What a command made and what to do next: the last lines of a run and of a sweep.

A run ends with its id, experiment and store, where to open it in `mlflow ui`'s model-training
view, and the next command (predict with it, or resume it). A sweep ends with its parent run,
its best job by validation with the command that reruns it, its failed jobs, where to open its
jobs side by side, and the report command. `echo.cli` prints a run's, `echo.sweep.summarise`
a sweep's.
"""

from __future__ import annotations

import shlex
from typing import Optional

from echo.config import DataConfig
from echo.store import tracking_uri, without_credentials

# Where `mlflow ui` serves when not told otherwise.
UI = "http://127.0.0.1:5000"
# The query string that opens MLflow 3's UI on its model-training view, not the GenAI one.
MODEL_TRAINING = "?workflowType=machine_learning"
DATABASES = ("sqlite", "postgresql", "mysql", "mssql")


def store() -> str:
    return without_credentials(tracking_uri())


def experiment_of(run_id: str) -> tuple[str, str]:
    """The name and id of the experiment a run belongs to."""
    from echo import tracking

    client = tracking.client()
    experiment_id = client.get_run(run_id).info.experiment_id
    return client.get_experiment(experiment_id).name, experiment_id


def run_page(experiment_id: str, run_id: str) -> str:
    """The MLflow UI's page of one run, in the model-training view."""
    return f"#/experiments/{experiment_id}/runs/{run_id}{MODEL_TRAINING}"


def view_page(experiment_id: str, view_id: str) -> str:
    """The MLflow UI's runs table of an experiment as one of its saved views shows it (the
    views tracking.save_runs_view saves)."""
    return f"#/experiments/{experiment_id}/runs{MODEL_TRAINING}&viewStateShareKey={view_id}"


def where_to_look(page: str) -> list[tuple[str, str]]:
    """How to open a page of the MLflow UI: its URL on a tracking server; with a database and
    no server, the `mlflow ui` command first."""
    uri = store()
    if uri.startswith(("http://", "https://")):
        return [("open", f"{uri.rstrip('/')}/{page}")]
    if uri.split(":", 1)[0].split("+", 1)[0] not in DATABASES:
        return []  # Databricks and other hosted stores have UIs of their own
    return [
        ("browse", f"mlflow ui --backend-store-uri {shlex.quote(uri)}"),
        ("open", f"{UI}/{page}"),
    ]


def example_sequence(data: DataConfig) -> list[int]:
    """A sequence `echo.predict` takes for a model trained on `data`: a few windows' worth."""
    return [value % data.n_unique for value in range(1, data.n_in + 3)]


def run_lines(run_id: str, status: str, data: DataConfig, model_logged: bool) -> list[str]:
    """The last lines of a run that ended `status` (FINISHED, FAILED or KILLED)."""
    experiment, experiment_id = experiment_of(run_id)
    lines = [("run", f"{run_id}  {status}  (experiment {experiment}, store {store()})")]
    lines += where_to_look(run_page(experiment_id, run_id))
    if status == "FINISHED" and model_logged:
        sequence = ",".join(map(str, example_sequence(data)))
        lines.append(("predict", f"python -m echo.predict run_id={run_id} 'sequence=[{sequence}]'"))
    if status == "KILLED":
        lines.append(("resume", f"python -m echo.train trainer.resume={run_id}"))
    return aligned(lines)


def sweep_lines(
    parent_run_id: str,
    failed: bool,
    best: Optional[dict[str, object]],
    best_command: Optional[str],
    failures: list[str],
) -> list[str]:
    """The last lines of a sweep: `best` is report.best_run's choice, `best_command` the
    command that reruns it alone (its `echo.command` tag), `failures` one line per failed job.
    Its URL opens the sweep's jobs in the runs table (the view tracking.finish_sweep saved)."""
    from echo import tracking

    experiment, experiment_id = experiment_of(parent_run_id)
    status = "FAILED" if failed else "FINISHED"
    lines = [("sweep", f"{parent_run_id}  {status}  (experiment {experiment}, store {store()})")]
    if best is None:
        lines.append(("best", "none: no job finished with a score"))
    else:
        lines.append(
            ("best", f"{best['run_id']}  {best['metric']} {best['value']:.4f}  {best['run_name']}")
        )
        if best_command:
            lines.append(("rerun", best_command))
    lines += [("failed", failure) for failure in failures]
    lines += where_to_look(view_page(experiment_id, tracking.sweep_view_id(parent_run_id)))
    lines.append(("report", f"python -m echo.report sweep={parent_run_id}"))
    return aligned(lines)


def aligned(lines: list[tuple[str, str]]) -> list[str]:
    """Label, then text, in one column: each text ready to copy as it stands."""
    return [f"{label:<8} {text}" for label, text in lines]


def show(lines: list[str]) -> None:
    """Print the lines now: when stdout is a pipe, before any error line on stderr."""
    print("\n".join(lines), flush=True)
