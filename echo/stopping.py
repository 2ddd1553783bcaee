"""Stopping a run on request: SIGINT and SIGTERM (Ctrl-C, schedulers, Ray) ask training to stop
at the next boundary between compiled calls, where a checkpoint is exact."""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager

log = logging.getLogger(__name__)


class StopRequests:
    """Callable: has a stop been asked for? A second Ctrl-C stops at once."""

    def __init__(self):
        self.signal_name: str | None = None

    def __call__(self) -> bool:
        return self.signal_name is not None

    def _handle(self, signum, frame):
        if self.signal_name is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.signal_name = signal.Signals(signum).name
        log.warning(
            "%s received: stopping after the current call, then saving a checkpoint",
            self.signal_name,
        )

    @contextmanager
    def installed(self) -> Iterator[StopRequests]:
        """Handle SIGINT and SIGTERM inside the block; the previous handlers come back after."""
        if threading.current_thread() is not threading.main_thread():
            yield self  # signals reach the main thread only; nothing to install here
            return
        signals = (signal.SIGINT, signal.SIGTERM)
        previous = {sig: signal.signal(sig, self._handle) for sig in signals}
        try:
            yield self
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
