"""The rooms of echo/ and the doors between them (docs/architecture.md), read from the source:
every import statement counts, at the top of a module or inside a function."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from echo import cli

PACKAGE = Path(cli.__file__).parent
CORE = ("data", "models", "trainer", "evaluation")


def imports_of(module: str, anywhere: bool = True) -> set[str]:
    """Every module `echo.<module>` imports (inside functions too, unless not `anywhere`):
    echo's own as `echo.x`, others by their top-level package."""
    tree = ast.parse((PACKAGE / f"{module}.py").read_text())
    found = set()
    for node in ast.walk(tree) if anywhere else tree.body:
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            names = [node.module]
            if node.module == "echo":  # from echo import data, tracking
                names = [f"echo.{alias.name}" for alias in node.names]
        else:
            continue
        for name in names:
            found.add(name if name.startswith("echo.") else name.split(".")[0])
    return found


def reachable(module: str) -> set[str]:
    """What `echo.<module>` imports anywhere, and what echo's modules among those load when
    imported, and so on. (A function of theirs that `module` never calls imports nothing.)"""
    seen, queue, outside = set(), [module], set()
    while queue:
        current = queue.pop()
        if current in seen:
            continue
        seen.add(current)
        for name in imports_of(current, anywhere=current == module):
            if name.startswith("echo."):
                queue.append(name.split(".")[1])
            else:
                outside.add(name)
    return outside | {f"echo.{m}" for m in seen - {module}}


@pytest.mark.parametrize("module", CORE)
def test_the_core_imports_neither_mlflow_nor_hydra(module):
    assert not {"mlflow", "hydra"} & reachable(module)


def test_the_config_imports_neither_tensorflow_nor_mlflow():
    assert not {"tensorflow", "keras", "mlflow"} & reachable("config")


def test_tracking_knows_nothing_of_training_drawing_or_reporting():
    assert not {"echo.trainer", "echo.figures", "echo.report", "echo.train"} & imports_of(
        "tracking"
    )


def test_the_checker_sees_what_it_checks():
    # The checks above mean something only if imports inside functions are found too.
    assert "tensorflow" in imports_of("train") and "echo.tracking" in reachable("train")
    assert "mlflow" in reachable("train") and "hydra" in reachable("sweep")


def test_hydra_private_api_is_used_in_one_place_only():
    users = [p.name for p in PACKAGE.glob("*.py") if "hydra._internal" in p.read_text()]
    assert users == ["cli.py"]


def test_hydra_reads_the_command_line_as_echo_expects():
    """echo reads Hydra's own argument parser (hydra._internal.utils.get_args_parser, checked
    against Hydra 1.3): this fails if that parser moves or changes its fields."""
    args = cli.hydra_arguments(["-m", "--cfg", "job", "model.units=4,8", "trainer.epochs=3"])
    assert args.multirun and args.cfg == "job" and not args.help
    assert args.overrides == ["model.units=4,8", "trainer.epochs=3"]
    assert args.config_name is None and not args.run and not args.info


def test_no_function_is_longer_than_60_lines():
    long = [
        f"{path.name}:{node.name} ({node.end_lineno - node.lineno + 1} lines)"
        for path in PACKAGE.glob("*.py")
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
        and node.end_lineno - node.lineno + 1 > 60
    ]
    assert long == []
