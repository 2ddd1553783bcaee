"""A quiet start: the first screen of a run holds echo's lines, not its libraries' notices.

On a machine without a GPU, TensorFlow's C++ runtime writes a handful of notices straight to
file descriptor 2 while it loads and looks for GPUs: absl's preamble, `Could not find cuda
drivers`, and `failed call to cuInit` at ERROR level. They come before absl's logging is set
up, so TF_CPP_MIN_LOG_LEVEL does not hold them back, and a level that would (3) also hides real
errors. So, while TensorFlow starts and only then, fd 2 goes to a temporary file; after it,
every line is written back to fd 2 except the known notices below. (If the process died inside
that window, what it held would be lost; TensorFlow's import is the whole window.)

MLflow announces creating a new store's tables through its own logger; that is dropped too,
inside `store_notices_filtered`.
"""

from __future__ import annotations

import logging
import os
import re
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager

# The prefix of TensorFlow's C++ log lines: severity, date, time, thread, then file:line].
_CPP = r"^[IWE]\d{4} [\d:.]+\s+\d+ "
# What TensorFlow writes at start on a machine without a GPU (TensorFlow 2.16 to 2.21), and
# nothing else: any other line, an error above all, is written back.
NOTICES = tuple(
    re.compile(pattern)
    for pattern in (
        r"^WARNING: All log messages before absl::InitializeLog\(\) is called are written to "
        r"STDERR$",
        _CPP + r"cudart_stub\.cc:\d+\] Could not find cuda drivers on your machine",
        _CPP + r"[\w.]+\.cc:\d+\] failed call to cuInit: ",
        _CPP + r"cuda_diagnostics\.cc:\d+\] ",
        _CPP + r"[\w.]+\.cc:\d+\] Unable to register cu(DNN|FFT|BLAS) factory",
        _CPP + r"port\.cc:\d+\] oneDNN custom operations are on",
        _CPP + r"cpu_feature_guard\.cc:\d+\] This TensorFlow binary is optimized to use",
        r"^To enable the following instructions: .*rebuild TensorFlow with the appropriate "
        r"compiler flags\.$",
        r"TF-TRT Warning: Could not find TensorRT$",
    )
)
# MLflow's announcements of a new sqlite store (mlflow.store.db.utils, MLflow 3).
STORE_NOTICES = ("Creating initial MLflow database tables...", "Updating database tables")


def is_notice(line: str) -> bool:
    return any(pattern.search(line) for pattern in NOTICES)


@contextmanager
def notices_filtered() -> Iterator[None]:
    """Hold back what is written to fd 2 inside the block; after it, write it back to fd 2
    without TensorFlow's known start-up notices."""
    sys.stderr.flush()
    try:
        saved = os.dup(2)
    except OSError:  # no fd 2 to filter
        yield
        return
    with tempfile.TemporaryFile() as held:
        os.dup2(held.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            held.seek(0)
            kept = [
                line
                for line in held.read().splitlines(keepends=True)
                if not is_notice(line.decode(errors="replace").rstrip("\r\n"))
            ]
            data = b"".join(kept)
            while data:
                data = data[os.write(2, data) :]


def start_tensorflow() -> None:
    """Import Keras and TensorFlow and let TensorFlow look for GPUs (when cuInit fails on a
    machine without one), with the notices filtered."""
    with notices_filtered():
        import keras  # noqa: F401
        import tensorflow as tf

        tf.config.list_physical_devices()


def _not_a_store_notice(record: logging.LogRecord) -> bool:
    return record.getMessage() not in STORE_NOTICES


@contextmanager
def store_notices_filtered() -> Iterator[None]:
    """Inside the block, MLflow does not announce creating a store's tables; the command's
    own last lines say where the store is."""
    logger = logging.getLogger("mlflow.store.db.utils")
    logger.addFilter(_not_a_store_notice)
    try:
        yield
    finally:
        logger.removeFilter(_not_a_store_notice)
