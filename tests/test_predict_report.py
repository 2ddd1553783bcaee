"""echo.predict and echo.report against runs logged to a real MLflow store."""

import json
from pathlib import Path

import pandas as pd
import pytest
from conftest import TINY, compose_config, run_cli

from echo import predict, report
from echo import train as echo_train
from echo.errors import BadRequest, UnknownRun

# A stateful seq2seq model that learns the tiny echo perfectly in a few hundred epochs.
LEARNS = [
    *TINY,
    "model=seq2seq",
    "data.n_out=2",
    "model.units=16",
    "trainer.epochs=300",
    "trainer.log_every=100",
    "trainer.learning_rate=0.02",
    "trainer.eval_sequences=20",
]


@pytest.fixture
def learned_run(tracking_uri):
    metrics = echo_train.train(compose_config(LEARNS))
    assert metrics["eval_exact"] == 1.0  # so that right answers are known below
    (run_id,) = report.main([])["run_id"]
    return run_id


def printed_echoes(capsys):
    return [json.loads(line) for line in capsys.readouterr().out.splitlines()]


def test_predict_windows_and_whole_sequences(learned_run, capsys):
    predict.main([f"run_id={learned_run}", "sequences=[[1,2,3],[9,8,7],[0,0,5]]"])
    assert printed_echoes(capsys) == [[1, 2], [9, 8], [0, 0]]
    # Any length >= n_in: every window's echo, in order (7 windows, padded to batches of 3).
    sequence = [4, 8, 1, 6, 2, 4, 7, 3, 9]
    predict.main([f"run_id={learned_run}", f"sequence={sequence}"])
    assert printed_echoes(capsys) == [sequence[i : i + 2] for i in range(len(sequence) - 2)]


@pytest.mark.parametrize(
    "args, message",
    [
        (["sequences=[[1,2]]"], "window [1, 2] has 2 values; the model takes data.n_in=3"),
        (["sequences=[[1,2,10]]"], "value 10 is outside 0..9"),
        (["sequence=[1,2]"], "needs at least data.n_in=3 values"),
        ([], "give either sequences="),
    ],
)
def test_predict_refuses_bad_requests(learned_run, args, message):
    with pytest.raises(
        BadRequest, match=message.replace("[", r"\[").replace("]", r"\]").replace(".", r"\.")
    ):
        predict.main([f"run_id={learned_run}", *args])


def test_predict_cli_unknown_run_is_one_line(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    result = run_cli(["run_id=nope", "sequences=[[1,2,3]]"], tmp_path, uri, module="echo.predict")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1] == f"echo: run_id=nope: no such run in {uri}"
    assert "Traceback" not in result.stderr


def test_report_tables_runs_best_first(tracking_uri, tmp_path, capsys):
    for units in (4, 16):
        echo_train.train(
            compose_config([*LEARNS, f"model.units={units}", "mlflow.log_model=false"])
        )
    csv, png = tmp_path / "runs.csv", tmp_path / "runs.png"
    table = report.main([f"csv={csv}", f"png={png}"])
    assert list(table.columns) == ["run_name", "status", "model.units", *report.METRICS, "run_id"]
    assert sorted(table["model.units"]) == [4, 16]
    assert table["val_exact"].is_monotonic_decreasing  # ordered by validation, not test
    assert "model.units" in capsys.readouterr().out
    assert pd.read_csv(csv)["run_id"].tolist() == table["run_id"].tolist()
    assert png.read_bytes()[:4] == b"\x89PNG"
    with pytest.raises(UnknownRun):
        report.main(["experiment=nope"])


def test_predict_gives_one_echo_per_window_for_a_padded_run(tracking_uri, capsys):
    cfg = compose_config([*TINY, "data.pad_incomplete=true", "trainer.batch_size=4"])
    echo_train.train(cfg)
    (run_id,) = report.main([])["run_id"]
    capsys.readouterr()
    predict.main([f"run_id={run_id}", "sequences=[[1,2,3],[9,8,7]]"])
    assert [len(echo) for echo in printed_echoes(capsys)] == [2, 2]  # one echo, of n_out values
    # A whole sequence runs as in training: padded windows too, one ending at each value.
    predict.main([f"run_id={run_id}", "sequence=[4,8,1,6,2,4,7,3]"])
    assert len(printed_echoes(capsys)) == 8


def test_a_run_saved_before_a_config_key_existed_still_loads_and_predicts(tracking_uri, capsys):
    """Runs logged by an earlier echo have no trainer.validate_every in their config.yaml: it
    takes today's default."""
    from mlflow.tracking import MlflowClient

    from echo.config import from_saved

    echo_train.train(compose_config(TINY))
    (run_id,) = report.main([])["run_id"]
    client = MlflowClient(tracking_uri)
    saved = Path(client.download_artifacts(run_id, "config.yaml")).read_text()
    older = "\n".join(line for line in saved.splitlines() if "validate_every" not in line)
    client.log_text(run_id, older, "config.yaml")  # as an earlier version wrote it
    assert from_saved(older).trainer.validate_every == compose_config([]).trainer.validate_every
    capsys.readouterr()
    predict.main([f"run_id={run_id}", "sequences=[[1,2,3]]"])
    assert len(printed_echoes(capsys)) == 1
