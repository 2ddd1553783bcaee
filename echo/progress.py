"""Training progress a person can read: epochs done, the rate, the latest loss, acc and
val_exact, an ETA and, before the first line, where training will stop.

`Lines` logs one line per compiled call, as the trainer always did: to Hydra's console and its
log file, to CI logs, to a notebook's logging. `Bar` draws the same on a terminal as one rich
progress bar and keeps the lines for every handler that is not a terminal (Hydra's log file, a
redirected stdout). `display` picks one. The trainer shows a point between compiled calls only,
so a display costs nothing inside the loop (`benchmarks/progress_overhead.py` measures it).
"""

from __future__ import annotations

import logging
import math
import sys
from dataclasses import dataclass
from typing import Optional

# The trainer's logger: progress lines keep the name they always had in logs.
log = logging.getLogger("echo.trainer")

# The attribute that marks a log record as a progress line, which a live bar shows instead.
MARK = "echo_progress"


@dataclass(frozen=True)
class Point:
    """Where training stands after one compiled call."""

    began: int  # epochs done before this call
    done: int  # epochs done after it
    total: int  # the last epoch training may reach
    loss: float
    acc: float
    val_exact: Optional[float]  # None when this call was not validated
    windows: Optional[int]  # the validation windows val_exact was scored on
    seconds: float  # since this training started
    target: Optional[float]  # trainer.target_exact

    @property
    def final(self) -> bool:
        """Training stops after this call: the last epoch, or the target met (the trainer
        scores a met target on every validation window, so a partial score never passes)."""
        met = self.target is not None and self.val_exact is not None
        return self.done >= self.total or (met and self.val_exact >= self.target)


def stop_rule(point: Point) -> str:
    if point.target is None:
        return f"stops at epoch {point.total}"
    return f"stops at val_exact ≥ {point.target:g} or epoch {point.total}"


def clock(seconds: float) -> str:
    """`seconds` as m:ss, or h:mm:ss from an hour."""
    minutes, secs = divmod(int(round(seconds)), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


class Pace:
    """Epochs per second, and the time left at that pace. The first call's time includes
    tracing the training function, a one-off, so later rates count from the end of it."""

    def __init__(self) -> None:
        self.first: Optional[Point] = None

    def rate(self, point: Point) -> float:
        if self.first is None:
            self.first = point
        first = self.first
        if point is first or point.seconds <= first.seconds:
            return (point.done - point.began) / max(point.seconds, 1e-9)
        return (point.done - first.done) / (point.seconds - first.seconds)

    @staticmethod
    def left(point: Point, rate: float) -> str:
        """The ETA; with a target, an upper bound, since the target may stop training first."""
        if point.final:
            return "ETA 0:00"
        bound = "≤ " if point.target is not None else ""
        # Rounded up: an unfinished run never reads 0:00.
        return f"ETA {bound}{clock(math.ceil((point.total - point.done) / max(rate, 1e-9)))}"


def scores_text(point: Point) -> str:
    text = f"loss {point.loss:.4f}  acc {point.acc:.4f}"
    if point.val_exact is not None:
        text += f"  val_exact {point.val_exact:.4f} of {point.windows} windows"
    return text


def pace_text(point: Point, rate: float) -> str:
    per_second = f"{rate:,.0f}" if rate >= 10 else f"{rate:.2g}"
    return f"{per_second} epochs/s  {Pace.left(point, rate)}"


class Lines:
    """Progress as log lines: a first line that says where training stops, then one line per
    compiled call. Enter it once per training (`train` does)."""

    def __init__(self) -> None:
        self.pace = Pace()

    def __enter__(self) -> Lines:
        self.pace = Pace()
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        """Nothing to end: lines are written as they come."""

    def show(self, point: Point) -> float:
        """Log `point`; return the rate it was shown with."""
        if self.pace.first is None:
            start = f" from epoch {point.began}" if point.began else ""
            log.info("training%s: %s", start, stop_rule(point))
        rate = self.pace.rate(point)
        log.info(
            "epoch %d/%d  %s  %s  (%.1f s)",
            point.done,
            point.total,
            scores_text(point),
            pace_text(point, rate),
            point.seconds,
            extra={MARK: True},
        )
        return rate


def _is_terminal(stream) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # no isatty, or closed
        return False


def _not_progress(record: logging.LogRecord) -> bool:
    return not getattr(record, MARK, False)


def terminal_handlers() -> list[logging.StreamHandler]:
    """The handlers the progress lines reach that write to a terminal."""
    found, logger = [], log
    while logger is not None:
        found += [
            handler
            for handler in logger.handlers
            if isinstance(handler, logging.StreamHandler)
            and not isinstance(handler, logging.FileHandler)
            and _is_terminal(handler.stream)
        ]
        logger = logger.parent if logger.propagate else None
    return found


class Bar(Lines):
    """Progress as one rich bar on a terminal. The lines still reach every handler that is not
    a terminal; the terminal's handlers skip them while the bar is live, and write their other
    lines above it (through rich's stand-ins for stdout and stderr). All restored at `close`."""

    def __init__(self, console=None) -> None:
        import rich.progress  # noqa: F401 - loaded now rather than at the first point, mid-training

        super().__init__()
        self.console = console  # rich's Console; stderr's when None
        self.bar = None
        self.task = None
        self.hidden: list[tuple[logging.StreamHandler, object]] = []

    def show(self, point: Point) -> float:
        if self.bar is None:
            self._start(point)
        rate = super().show(point)
        stats = f"{scores_text(point)}  {pace_text(point, rate)}"
        self.bar.update(self.task, completed=point.done, stats=stats, refresh=True)
        if point.final:
            self.close()
        return rate

    def _start(self, point: Point) -> None:
        from rich.console import Console
        from rich.progress import BarColumn, Progress, TextColumn

        self.bar = Progress(
            TextColumn("epoch {task.completed:.0f}/{task.total:.0f}"),
            BarColumn(bar_width=24),
            TextColumn("{task.fields[stats]}"),
            console=self.console or Console(file=sys.stderr),
            auto_refresh=False,  # redrawn at each point: no thread of its own
        )
        self.task = self.bar.add_task(
            "training", total=point.total, completed=point.began, stats=""
        )
        streams = (sys.stdout, sys.stderr)
        self.bar.start()  # rich's stand-ins replace sys.stdout and sys.stderr until stop
        stand_ins = {id(streams[0]): sys.stdout, id(streams[1]): sys.stderr}
        for handler in terminal_handlers():
            handler.addFilter(_not_progress)
            self.hidden.append((handler, handler.stream))
            stand_in = stand_ins.get(id(handler.stream))
            if stand_in is not None:
                handler.setStream(stand_in)

    def close(self) -> None:
        if self.bar is None:
            return
        try:
            for handler, stream in self.hidden:
                handler.removeFilter(_not_progress)
                handler.setStream(stream)
        finally:
            self.hidden = []
            bar, self.bar = self.bar, None
            bar.stop()


def display(parallel: bool = False) -> Lines:
    """A bar when stderr is a terminal, lines otherwise; lines for the jobs of a parallel
    launcher, which share the terminal and would draw over each other."""
    if not parallel and _is_terminal(sys.stderr):
        return Bar()
    return Lines()
