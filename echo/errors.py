"""Failures worth one line to the user rather than a traceback, each with its exit code."""

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Callable, Optional


class EchoError(Exception):
    exit_code = 1
    run_id: Optional[str] = None  # the MLflow run it ended, when it happened in one


@contextmanager
def in_run(run_id: str) -> Iterator[None]:
    """EchoErrors raised inside name the run they ended (`run_id`), so that the command line
    can say where that run is."""
    try:
        yield
    except EchoError as err:
        if err.run_id is None:
            err.run_id = run_id
        raise


class RunFailed(EchoError):
    """The run ended FAILED for a reason that is not a bug (a diverged loss, say)."""


class Interrupted(EchoError):
    """A signal stopped training; the run is KILLED and holds a checkpoint to resume from."""

    exit_code = 130


class TrackingUnavailable(EchoError):
    """The tracking store cannot be reached; nothing was started."""


class SweepFailed(EchoError):
    """Some jobs of a sweep failed; the others ran to the end."""


class UnknownRun(EchoError):
    """No run with that id, or it lacks what was asked of it."""

    exit_code = 2


class BadRequest(EchoError):
    """Arguments to echo.predict or echo.report, or a setting, that cannot work."""

    exit_code = 2


class WrongBackend(EchoError):
    """Keras is asked to run on a backend other than TensorFlow, the only one echo trains on."""

    exit_code = 2


def exit_with(err: EchoError) -> None:
    print(f"echo: {err}", file=sys.stderr)
    sys.exit(err.exit_code)


def run_command(main: Callable[[list[str]], object], usage: str) -> None:
    """Run a command's `main(argv)`, its EchoErrors as one line and their exit code; -h or
    --help prints `usage` (the command module's docstring) instead."""
    argv = sys.argv[1:]
    if {"-h", "--help"} & set(argv):
        print((usage or "").strip())
        return
    try:
        main(argv)
    except EchoError as err:
        exit_with(err)
