"""The process environment echo sets and checks: variables set for a block and restored after
it, and TensorFlow as Keras's backend.

echo's training loop, its models' state handling and its checkpoints are TensorFlow's. Keras 3
picks its backend once, when it is first imported: from KERAS_BACKEND, else from
~/.keras/keras.json. A keras.json that names jax or torch would otherwise surface as an import
error deep inside Keras, or as a TensorFlow call on another backend's tensors."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager

from echo.errors import WrongBackend

BACKEND_VARIABLE = "KERAS_BACKEND"
BACKEND = "tensorflow"


@contextmanager
def environment(**values: str) -> Iterator[None]:
    """Set environment variables inside the block; as they were after it."""
    before = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in before.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def check_keras_backend() -> None:
    """Raise WrongBackend, naming what chose it, unless Keras runs, or will run, on TensorFlow."""
    given = os.environ.get(BACKEND_VARIABLE)
    if given not in (None, BACKEND):
        raise WrongBackend(
            f"{BACKEND_VARIABLE}={given}: echo trains with TensorFlow only; "
            f"unset {BACKEND_VARIABLE} or set it to {BACKEND}"
        )
    keras = sys.modules.get("keras")
    # Imported already (a notebook, say), Keras keeps the backend it chose then.
    if keras is not None and keras.backend.backend() != BACKEND:
        raise WrongBackend(
            f"Keras was imported with the {keras.backend.backend()} backend before echo could "
            f"set {BACKEND_VARIABLE}; echo trains with TensorFlow only: set "
            f"{BACKEND_VARIABLE}={BACKEND} before Keras is imported"
        )


@contextmanager
def keras_on_tensorflow() -> Iterator[None]:
    """Inside the block, Keras imports with TensorFlow as its backend, whatever keras.json says;
    KERAS_BACKEND is as it was after it. Raises WrongBackend when another backend is asked for."""
    check_keras_backend()
    with environment(**{BACKEND_VARIABLE: BACKEND}):
        yield
