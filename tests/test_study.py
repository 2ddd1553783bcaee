"""The extension presets and the study that compares them, run for real on tiny budgets."""

import os
import re

import pytest
from conftest import run_cli
from mlflow.tracking import MlflowClient

from echo.config import SOURCE_TREE
from echo.study import ALL_PRESETS, StudyConfig, check


def runs_of(uri, experiment):
    client = MlflowClient(uri)
    found = client.get_experiment_by_name(experiment)
    return client.search_runs([found.experiment_id], max_results=1000)


@pytest.mark.slow
def test_every_preset_runs_with_any_epochs(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    result = run_cli(
        [
            "-m",
            f"experiment={','.join(ALL_PRESETS)}",
            "trainer.epochs=3",
            "trainer.eval_sequences=3",
            "mlflow.log_model=false",
        ],
        tmp_path,
        uri,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    runs = [r for r in runs_of(uri, "echo") if r.data.tags.get("echo.role") != "sweep"]
    assert sorted(r.info.run_name for r in runs) == sorted(ALL_PRESETS)
    for run in runs:
        assert run.info.status == "FINISHED", run.info.run_name
        assert 0 <= run.data.metrics["eval_exact"] <= 1 and run.data.metrics["parameters"] > 0
        # At least 3 epochs; batches spanning several sequences round up to whole batches.
        assert run.data.metrics["epochs_trained"] >= 3


@pytest.mark.slow
def test_study_writes_its_document_from_the_runs_in_mlflow(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    output = tmp_path / "out" / "RESULTS.md"
    args = [
        "seeds=2",
        "presets=[tutorial_seq2seq,stateless]",
        "overrides=[trainer.epochs=3,trainer.eval_sequences=3,model.units=4]",
        f"folder={output.parent}",
    ]
    result = run_cli(args, tmp_path, uri, module="echo.study")
    assert result.returncode == 0, result.stderr[-3000:]
    document = output.read_text()

    runs = runs_of(uri, "echo-study")
    (parent,) = [r for r in runs if r.data.tags.get("echo.role") == "sweep"]
    jobs = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    assert sorted((r.info.run_name, r.data.params["trainer.seed"]) for r in jobs) == [
        ("stateless", "1"),
        ("stateless", "2"),
        ("tutorial_seq2seq", "1"),
        ("tutorial_seq2seq", "2"),
    ]
    # Only the question with both its presets is answered, with a chart beside the document.
    assert "## 4. Ignoring state" in document and "## 1. Linear" not in document
    assert (output.parent / "results" / "stateless.png").stat().st_size > 1000
    assert "](results/stateless.png)" in document  # beside the document, wherever it is moved
    assert f"sweep={parent.info.run_id}" in document and f"{os.cpu_count()} CPU cores" in document
    # The table's means are the runs' own numbers.
    for preset in ("tutorial_seq2seq", "stateless"):
        exact = [r.data.metrics["eval_exact"] for r in jobs if r.info.run_name == preset]
        row = next(line for line in document.splitlines() if line.startswith(f"| {preset} |"))
        cells = [c.strip() for c in row.split("|")[1:-1]]
        assert cells[1] == "2"
        assert re.match(rf"{100 * sum(exact) / 2:.2f} ± ", cells[3]), cells
        assert cells[4] == "not reached"  # neither preset trains to a target

    # The document can be written again from MLflow alone, without training.
    output.unlink()
    again = run_cli(
        [f"sweep={parent.info.run_id}", f"folder={output.parent}", "seeds=2"],
        tmp_path,
        uri,
        module="echo.study",
    )
    assert again.returncode == 0, again.stderr[-3000:]
    assert output.read_text() == document

    # Resumed (as a killed study would be), it trains nothing that had finished.
    resumed = run_cli([*args, f"resume={parent.info.run_id}"], tmp_path, uri, module="echo.study")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert (resumed.stdout + resumed.stderr).count("ended FINISHED before") == 4
    assert len(runs_of(uri, "echo-study")) == len(runs)  # no new run


def test_study_refuses_an_unknown_preset_in_one_line(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    result = run_cli(["presets=[tutorial_seq2seq,nope]"], tmp_path, uri, module="echo.study")
    assert result.returncode == 2
    assert (
        len(result.stderr.strip().splitlines()) == 1
        and "presets: no preset 'nope'" in result.stderr
    )
    assert "Traceback" not in result.stderr and not (tmp_path / "mlflow.db").exists()


def test_study_writes_into_experiments_of_its_source_tree_unless_told():
    assert check(StudyConfig()).folder == str(SOURCE_TREE / "experiments")
    assert check(StudyConfig(folder="elsewhere")).folder == "elsewhere"
