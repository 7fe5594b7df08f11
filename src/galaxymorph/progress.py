"""The one kind of progress bar galaxymorph shows: Rich, on stderr, and only on a terminal.

Off a terminal (CI, logs, notebooks, ``--no-progress``) every bar is a no-op, so output that
scripts capture stays clean. ``unit`` picks the columns: a count with a rate in ``unit``/s
(``"images"``), or bytes with transfer speed (``"bytes"``, for downloads).
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

T = TypeVar("T")


class Bar:
    """A running bar (or an inert one when progress is off); the only handle callers get."""

    def __init__(self, progress: Any = None, task: Any = None):
        self._progress = progress
        self._task = task

    def advance(self, n: float = 1) -> None:
        if self._progress is not None:
            self._progress.advance(self._task, n)

    def reset(self, total: float | None, completed: float = 0) -> None:
        """Start over at ``completed`` of ``total`` (a download that restarts or resumes)."""
        if self._progress is not None:
            self._progress.reset(self._task, total=total, completed=completed)

    def note(self, text: str) -> None:
        """A line above the bar (a retry, a warning) that does not break it."""
        if self._progress is not None:
            self._progress.console.print(f"[yellow]{text}", highlight=False)


def _columns(unit: str) -> list[Any]:
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        MofNCompleteColumn,
        ProgressColumn,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
        TransferSpeedColumn,
    )
    from rich.text import Text

    if unit == "bytes":
        return [TextColumn("[bold]{task.description}"), BarColumn(), DownloadColumn(),
                TransferSpeedColumn(), TimeRemainingColumn()]

    class Rate(ProgressColumn):
        def render(self, task: Any) -> Text:
            speed = task.finished_speed or task.speed
            return Text(f"{speed:,.0f} {unit}/s" if speed else f"- {unit}/s", style="cyan")

    return [TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), Rate(),
            TimeElapsedColumn(), TimeRemainingColumn()]


def shows(enabled: bool = True) -> bool:
    """Whether a bar asked for with ``enabled`` would be drawn (so callers can skip counting)."""
    return enabled and sys.stderr.isatty()


@contextmanager
def progress_bar(description: str, total: float | None = None, *, unit: str = "items",
                 enabled: bool = True, transient: bool = True) -> Iterator[Bar]:
    """A bar for the ``with`` block; ``transient=False`` leaves the finished bar on screen."""
    if not shows(enabled):
        yield Bar()
        return
    from rich.console import Console
    from rich.progress import Progress

    with Progress(*_columns(unit), console=Console(stderr=True), transient=transient) as progress:
        yield Bar(progress, progress.add_task(description, total=total))


def track(items: Iterable[T], total: int | None = None, description: str = "working",
          enabled: bool = True, unit: str = "batches") -> Iterator[T]:
    """``items``, advancing a bar by one per item."""
    with progress_bar(description, total, unit=unit, enabled=enabled) as bar:
        for item in items:
            yield item
            bar.advance()
