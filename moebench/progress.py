"""A progress bar with elapsed and remaining time for each long phase of a run (models × batch sizes, kernel
points), on stderr, where the run's log lines go.

The command decides whether it is shown (`wanted`): only rank 0, only on an interactive terminal, never in CI
logs (CI=true) and never under --json. The runners take a `Progress` and call `phase`; a disabled one costs
nothing. The bar shares the log's console, so log lines print above it instead of through it.
"""

from __future__ import annotations

import contextlib
import os
from typing import Any, Callable, Iterator, Sequence, TypeVar

Advance = Callable[[], None]
T = TypeVar("T")


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def wanted(console: Any, *, json_: bool, rank0: bool) -> bool:
    """Whether a command should show progress on `console` (a rich Console on stderr)."""
    return rank0 and not json_ and not in_ci() and bool(getattr(console, "is_terminal", False))


class Progress:
    """`with progress.phase("models × batch sizes", 6) as advance: ... advance()`; shown only when `console`
    is given (see `wanted`)."""

    def __init__(self, console: Any = None) -> None:
        self.console = console

    @contextlib.contextmanager
    def phase(self, description: str, total: int) -> Iterator[Advance]:
        if self.console is None or total <= 0:
            yield lambda: None
            return
        from rich.progress import (BarColumn, MofNCompleteColumn, Progress as Bar, TextColumn, TimeElapsedColumn,
                                   TimeRemainingColumn)

        with Bar(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TextColumn("elapsed"),
                 TimeElapsedColumn(), TextColumn("remaining"), TimeRemainingColumn(), console=self.console,
                 transient=False) as bar:
            task = bar.add_task(description, total=total)
            yield lambda: bar.advance(task)

    def track(self, items: Sequence[T], description: str) -> Iterator[T]:
        """`items`, one at a time, advancing the bar as each one's work is done (when the next is asked for)."""
        with self.phase(description, len(items)) as advance:
            for x in items:
                yield x
                advance()


QUIET = Progress()


def progress_for(console: Any, *, json_: bool, rank0: bool) -> Progress:
    return Progress(console) if wanted(console, json_=json_, rank0=rank0) else QUIET
