"""The capacity study: its search as pure functions on hand-written pass/fail tables, its
sentences on made-up ladders, and a tiny real study read back from MLflow."""

import math
import re

import pandas as pd
import pytest
from conftest import run_cli
from mlflow.tracking import MlflowClient

from echo.capacity import choose_setting, fewest_passing, next_run, rung_verdict
from echo.capacity_results import fewer_units_sentence, longer_needs_more_sentence
from echo.marked import kept_blocks, with_block

LADDER, SEEDS = [4, 8, 16, 32, 64, 128], [1, 2, 3]


def passes(*units):
    return {(u, s): True for u in units for s in SEEDS}


def test_a_size_fails_at_its_first_seed_that_misses():
    assert rung_verdict({1: True, 2: True, 3: True}, SEEDS) is True
    assert rung_verdict({1: True, 2: False}, SEEDS) is False  # seed 3 need not run
    assert rung_verdict({1: True}, SEEDS) is None


def test_bisection_finds_the_fewest_passing_size():
    reached = {}
    assert next_run(LADDER, SEEDS, reached) == (32, 1)  # the middle of the ladder first
    reached.update(passes(32))
    assert next_run(LADDER, SEEDS, reached) == (8, 1)
    reached[(8, 1)] = False
    assert next_run(LADDER, SEEDS, reached) == (16, 1)
    reached.update({(16, 1): True, (16, 2): True})
    assert next_run(LADDER, SEEDS, reached) == (16, 3)
    assert fewest_passing(LADDER, SEEDS, reached) is None  # not settled yet
    reached[(16, 3)] = True
    assert next_run(LADDER, SEEDS, reached) is None
    assert fewest_passing(LADDER, SEEDS, reached) == 16


def test_a_ladder_that_fails_at_every_size_up_to_the_top_ran_out():
    reached = {(32, 1): False}
    assert next_run(LADDER, SEEDS, reached) == (128, 1)  # the middle of what is left
    assert next_run(LADDER, SEEDS, {**reached, (128, 1): False}) is None
    assert fewest_passing(LADDER, SEEDS, {**reached, (128, 1): False}) is None
    reached.update(passes(128))
    assert next_run(LADDER, SEEDS, reached) == (64, 1)
    reached.update({(64, 1): True, (64, 2): False})  # 64 fails at its second seed
    assert next_run(LADDER, SEEDS, reached) is None
    assert fewest_passing(LADDER, SEEDS, reached) == 128
    # The smallest size passing settles the ladder there.
    assert fewest_passing(LADDER, SEEDS, {**passes(32, 8), **passes(4)}) == 4


def test_the_setting_is_chosen_on_seeds_reached_then_sequences_then_val_exact():
    runs = pd.DataFrame(
        [
            (4, 0.01, 2000.0, 0.9995),
            (4, 0.03, 1000.0, 0.9991),  # fastest to the target
            (8, 0.01, math.nan, 0.999),
            (8, 0.03, math.nan, 0.2),
        ],
        columns=["batch_sequences", "learning_rate", "epochs_to_target", "val_exact"],
    )
    assert choose_setting(runs) == (4, 0.03)
    none_reached = runs.assign(epochs_to_target=math.nan)
    assert choose_setting(none_reached) == (4, 0.01)  # then the best val_exact


def ladders(units: dict[tuple[str, str], float]) -> pd.DataFrame:
    """Made-up settled ladders: (topology, task) -> fewest units (NaN: the budget ran out)."""
    rows = []
    for (topology, task), fewest in units.items():
        n_out, n_in = (int(x) for x in task.split("of"))
        rows.append(
            {
                "topology": topology,
                "task": task,
                "n_out": n_out,
                "n_in": n_in,
                "fewest": fewest,
                "settled": True,
                "largest": 128.0,
            }
        )
    return pd.DataFrame(rows)


def test_a_comparison_is_printed_only_where_the_ladders_support_it():
    supported = ladders(
        {
            ("encdec", "1of5"): 8,
            ("attention", "1of5"): 4,
            ("encdec", "5of5"): math.nan,  # ran out: needs more than any size tried
            ("attention", "5of5"): 16,
        }
    )
    said = fewer_units_sentence(supported, "attention", "encdec")
    assert said == (
        "The attention decoder needed fewer units than the RepeatVector one on 2 of the 2 "
        "tasks both settled, and more on none."
    )
    assert fewer_units_sentence(supported, "encdec", "attention") is None
    contradicted = supported.copy()
    contradicted.loc[contradicted["topology"] == "attention", "fewest"] = [4, 64]
    contradicted.loc[
        (contradicted["topology"] == "encdec") & (contradicted["task"] == "5of5"), "fewest"
    ] = 32
    assert fewer_units_sentence(contradicted, "attention", "encdec") is None


def test_longer_needs_more_is_said_only_when_units_never_fall_with_length():
    grows = ladders({("encdec", "1of5"): 4, ("encdec", "2of5"): 8, ("encdec", "3of5"): math.nan})
    said = longer_needs_more_sentence(grows, "encdec", 5)
    assert said is not None and "grew (1 value: 4, 2 values: 8, 3 values: more than 128)" in said
    falls = ladders({("encdec", "1of5"): 16, ("encdec", "2of5"): 8})
    assert longer_needs_more_sentence(falls, "encdec", 5) is None


def test_a_rewritten_document_keeps_the_blocks_of_other_commands(tmp_path):
    path = tmp_path / "RESULTS.md"
    path.write_text(with_block("# Old\n\nold text\n", "capacity", "the section"))
    new = kept_blocks(path, "# New\n")
    assert new.startswith("# New") and "old text" not in new
    assert "<!-- capacity:start -->\nthe section\n<!-- capacity:end -->" in new
    again = with_block(new, "capacity", "the new section")
    assert again.count("capacity:start") == 1 and "the new section" in again


TINY_STUDY = [
    "tasks=[1of3]",
    "ladder=[2,8]",
    "seeds=[1,2]",
    "calibration_seeds=[9]",
    "calibration_task=1of3",
    "calibration_units=8",
    "batch_sequences=[1]",
    "learning_rates=[0.03]",
    "budget=200",
    "tutorial_outs=[1]",
    "tutorial_cap=12",
    "overrides=[debug=tiny,trainer.log_every=20]",
]


@pytest.mark.slow
def test_a_tiny_study_runs_under_one_parent_and_its_section_comes_from_mlflow(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    results = tmp_path / "out" / "RESULTS.md"
    results.parent.mkdir()
    results.write_text("# What the tutorial left open\n\nkept as it was\n")
    result = run_cli(
        [*TINY_STUDY, f"folder={results.parent}"], tmp_path, uri, module="echo.capacity"
    )
    assert result.returncode == 0, result.stderr[-3000:]

    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name("echo-capacity")
    runs = client.search_runs([experiment.experiment_id], max_results=1000)
    (parent,) = [r for r in runs if r.data.tags.get("echo.role") == "sweep"]
    children = [r for r in runs if r is not parent]
    assert parent.info.status == "FINISHED" and children
    assert all(r.data.tags["mlflow.parentRunId"] == parent.info.run_id for r in children)
    stages = [r.data.tags["echo.capacity.stage"] for r in children]
    assert stages.count("calibrate") == 2 and stages.count("tutorial") == 1
    ladder = [r for r in children if r.data.tags["echo.capacity.stage"] == "ladder"]
    assert {r.data.params["model.units"] for r in ladder} <= {"2", "8"}

    document = results.read_text()
    assert document.startswith("# What the tutorial left open\n\nkept as it was")
    assert f"sweep={parent.info.run_id}" in document
    assert (results.parent / "results" / "capacity.png").stat().st_size > 1000
    # Each topology's row agrees with its runs: the fewest size at which every seed reached.
    for topology, name in (("encdec", "RepeatVector"), ("attention", "attention")):
        mine = [r for r in ladder if r.data.tags["echo.capacity.topology"] == topology]
        passed = sorted(
            int(u)
            for u in {r.data.params["model.units"] for r in mine}
            if sum(
                "epochs_to_target" in r.data.metrics
                for r in mine
                if r.data.params["model.units"] == u
            )
            == 2
        )
        row = next(
            line for line in document.splitlines() if line.startswith(f"| 1 of 3 | {name} |")
        )
        cell = row.split("|")[3].strip()
        assert cell == (str(passed[0]) if passed else "budget ran out (up to 8)"), row

    # From MLflow alone: the section is written again, the same but for what moves on.
    section = re.search(r"<!-- capacity:start -->.*<!-- capacity:end -->", document, re.S).group(0)
    results.write_text("# Rewritten by another command\n")
    again = run_cli(
        [f"sweep={parent.info.run_id}", f"folder={results.parent}"],
        tmp_path,
        uri,
        module="echo.capacity",
    )
    assert again.returncode == 0, again.stderr[-3000:]
    rewritten = results.read_text()
    assert rewritten.startswith("# Rewritten by another command")
    assert section in rewritten

    # Resumed, the study keeps its finished runs and trains again only the one that failed.
    failed = ladder[0]
    client.set_terminated(failed.info.run_id, "FAILED")
    resumed = run_cli(
        [f"resume={parent.info.run_id}", f"folder={results.parent}"],
        tmp_path,
        uri,
        module="echo.capacity",
    )
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert resumed.stdout.count("kept from before") == len(children) - 1
    after = client.search_runs([experiment.experiment_id], max_results=1000)
    assert len(after) == len(runs) + 1
    (again,) = [r for r in after if r.info.run_id not in {r.info.run_id for r in runs}]
    assert again.data.tags["echo.sweep_job"] == failed.data.tags["echo.sweep_job"]
    assert again.info.status == "FINISHED"


def test_a_bad_task_is_refused_in_one_line(tmp_path):
    result = run_cli(["tasks=[3by5]"], tmp_path, module="echo.capacity")
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    assert "tasks: '3by5' is not a task" in result.stderr.strip().splitlines()[-1]
