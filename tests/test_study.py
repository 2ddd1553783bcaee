"""The extension presets and the study that compares them, run for real on tiny budgets."""

import os
import re

import numpy as np
import pandas as pd
import pytest
from conftest import compose_config, run_cli
from mlflow.tracking import MlflowClient

from echo.config import SOURCE_TREE, flat_params
from echo.study import (
    ALL_PRESETS,
    PARAMS,
    QUESTIONS,
    Stats,
    StudyConfig,
    check,
    compare,
    question_table,
)


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
        assert re.match(rf"{100 * sum(exact) / 2:.2f} ± ", cells[4]), cells
        assert cells[5] == "no target"  # neither preset sets one

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


# What the document says, from made-up runs: every preset's real composed config, scores set
# by each test. No training: the writer is judged on what it is given.
SEEDS = 3


@pytest.fixture(scope="module")
def configs():
    return {preset: flat_params(compose_config([f"experiment={preset}"])) for preset in ALL_PRESETS}


@pytest.fixture
def runs(configs):
    """Three seeds per preset, scoring alike with a little spread; presets with a target meet
    it, later the more values they echo."""
    rows = []
    for preset, params in configs.items():
        for seed in range(1, SEEDS + 1):
            row = {name: params[key] for key, name in PARAMS.items()}
            target = row["target_exact"]
            row.update(
                preset=preset,
                seed=seed,
                status="FINISHED",
                val_acc=0.995,
                val_exact=0.990 + 0.001 * seed,
                eval_acc=0.995,
                eval_exact=0.990 + 0.001 * seed,
                train_seconds=2.0 + seed,
                parameters=1000.0,
                epochs_trained=float(row["epochs"]),
                target_exact=np.nan if target is None else target,
                epochs_to_target=np.nan if target is None else 1000.0 * row["n_out"] + seed,
            )
            rows.append(row)
    return pd.DataFrame(rows)


def set_metric(runs, preset, metric, values):
    runs.loc[runs["preset"] == preset, metric] = values


def answer(runs, slug):
    question = next(q for q in QUESTIONS if q.slug == slug)
    return question.answer(Stats(runs))


def test_better_or_worse_is_judged_against_the_spread_over_seeds():
    tight, lower = pd.Series([0.990, 0.991, 0.992]), pd.Series([0.980, 0.981, 0.982])
    assert compare(tight, lower) == 1 and compare(lower, tight) == -1
    # The same means, spread wide: within the spread, about the same.
    assert compare(pd.Series([0.95, 0.99, 1.03]), pd.Series([0.94, 0.98, 1.02])) == 0
    # One seed each has no spread; the binomial error of the windows scored stands in.
    assert compare(pd.Series([1.0]), pd.Series([0.99]), (2100, 2100)) == 1
    assert compare(pd.Series([1.0]), pd.Series([0.99]), (21, 21)) == 0


def test_no_target_and_a_missed_target_are_different_cells(runs):
    set_metric(runs, "longest", "epochs_to_target", np.nan)
    set_metric(runs, "longer", "epochs_to_target", [5000.0, np.nan, 5002.0])
    s = Stats(runs)
    longer = next(q for q in QUESTIONS if q.slug == "longer")
    rows = {line.split(" | ")[0][2:]: line for line in question_table(s, longer).splitlines()}
    assert "| target missed (3 of 3) |" in rows["longest"]
    assert "| 5,001 ± 1 (2 of 3 reached) |" in rows["longer"]
    claims = question_table(s, next(q for q in QUESTIONS if q.slug == "claims"))
    assert "| tutorial_seq2seq | 3 |" in claims and "| no target |" in claims
    assert "target missed" not in claims


@pytest.mark.parametrize(
    ("slug", "sentence", "contradict"),
    [
        # The stateless LSTM changes skill on validation beyond the spread: no "little change".
        (
            "stateless",
            "little to no change on validation, as the tutorial expects",
            [("stateless", "val_exact", [0.95, 0.951, 0.952])],
        ),
        (
            "stateless",
            "state carried from window to window has nothing to add",
            [("stateless", "val_exact", [0.95, 0.951, 0.952])],
        ),
        # The longer echo met its target sooner than the shorter one.
        (
            "longer",
            "Longer echoes needed more training here",
            [("longer", "epochs_to_target", [1500.0, 1501.0, 1502.0])],
        ),
        # The shorter echo's need is unknown when it missed its target.
        (
            "longer",
            "Longer echoes needed more training here",
            [("encdec_fast", "epochs_to_target", np.nan)],
        ),
        (
            "topologies",
            "Neither falls short of the encoder-decoder on validation",
            [("one_to_one", "val_exact", [0.5, 0.51, 0.52])],
        ),
        (
            "linear",
            "is about the same as the one-hot model's",
            [("linear", "val_exact", [0.2, 0.21, 0.22])],
        ),
        (
            "attention",
            "about as many windows exactly as RepeatVector alone",
            [("longest", "val_exact", [0.2, 0.21, 0.22])],
        ),
        (
            "claims",
            "within 1% of it",
            [("tutorial_encdec", "eval_acc", [0.95, 0.96, 0.97])],
        ),
    ],
)
def test_a_sentence_the_runs_contradict_is_left_out(runs, slug, sentence, contradict):
    assert sentence in answer(runs, slug)  # the made-up runs bear it out
    for preset, metric, values in contradict:
        set_metric(runs, preset, metric, values)
    assert sentence not in answer(runs, slug)


def test_the_opposite_verdicts_are_printed_when_the_runs_say_so(runs):
    set_metric(runs, "stateless", "val_exact", [0.95, 0.951, 0.952])
    assert "worse by 4.10 points of exact echoes on validation" in answer(runs, "stateless")
    set_metric(runs, "one_to_one", "val_exact", [0.5, 0.51, 0.52])
    assert "one_to_one falls short of the encoder-decoder" in answer(runs, "topologies")
    set_metric(runs, "linear", "val_exact", [0.2, 0.21, 0.22])
    assert "falls short of the one-hot model's" in answer(runs, "linear")
    for program in ("tutorial_seq2seq", "tutorial_encdec"):
        set_metric(runs, program, "eval_acc", 1.0)
    assert 'The claim of 100% "pretty much every time" holds' in answer(runs, "claims")


def test_verdicts_read_validation_and_only_report_test(runs):
    set_metric(runs, "stateless", "eval_exact", [0.5, 0.51, 0.52])  # test alone much worse
    text = answer(runs, "stateless")
    assert "little to no change on validation" in text and "51.00% of held-out" in text


def test_numbers_in_the_answers_come_from_the_configs(runs):
    assert "7 times as many weight updates (21 against 3 per sequence)" in answer(runs, "stateless")
    set_metric(runs, "stateless", "batch_size", 3)
    assert "2.33 times as many weight updates (7 against 3 per sequence)" in answer(
        runs, "stateless"
    )
    assert "25 windows per sequence instead of 21" in answer(runs, "masked")
    for preset in ("masked", "tutorial_seq2seq"):
        set_metric(runs, preset, "length", 30)
    assert "30 windows per sequence instead of 26" in answer(runs, "masked")
    set_metric(runs, "tutorial_encdec", "epochs", 800)
    assert "instead of for 800 sequences" in answer(runs, "claims")


def test_masking_is_judged_on_the_same_full_windows(runs):
    # Runs logged before full windows were scored: no comparison is made.
    assert "do not compare with the unpadded model's" in answer(runs, "masked")
    set_metric(runs, "masked", "eval_full_exact", [0.9801, 0.9802, 0.9803])
    set_metric(runs, "masked", "eval_full_acc", 0.99)
    set_metric(runs, "masked", "val_full_exact", [0.990, 0.991, 0.992])
    text = answer(runs, "masked")
    assert "On the same 21 full windows of each sequence" in text
    assert "echoes 98.02% of held-out windows exactly against 99.20% without padding" in text
    assert "padding adds 4 windows per sequence to train on and no skill on them" in text
    set_metric(runs, "masked", "val_full_exact", [0.999, 0.9995, 1.0])
    assert "and better skill on them than without padding" in answer(runs, "masked")
    masked = next(q for q in QUESTIONS if q.slug == "masked")
    row = next(
        line
        for line in question_table(Stats(runs), masked).splitlines()
        if line.startswith("| masked |")
    )
    assert "| 99.95 ± 0.05% | 98.02 ± 0.01% |" in row  # val and test on full windows


def test_the_topologies_verdict_needs_the_same_units_and_sequences(runs):
    """A larger one_to_one network says nothing of whether it needs a larger network."""
    assert "not borne out here" in answer(runs, "topologies")
    set_metric(runs, "one_to_one", "units", 300)
    said = answer(runs, "topologies")
    assert "not borne out" not in said and "falls short" not in said
    assert "these runs do not test the tutorial's expectation" in said
