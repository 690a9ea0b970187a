"""Progress bars for long steps (rich), as one callback shape the library's loops can call."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.progress import (
    BarColumn,
    Progress,
    TaskID,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
)

__all__ = ["ProgressCallback", "progress_bar"]

#: Called as ``progress(description, done, total)``; one bar per description.
ProgressCallback = Callable[[str, int, int], None]


@contextmanager
def progress_bar(console: Console) -> Iterator[ProgressCallback]:
    """A progress callback that draws on ``console`` and disappears when done."""
    with Progress(TextColumn("{task.description}"), BarColumn(), TaskProgressColumn(),
                  TimeElapsedColumn(), console=console, transient=True) as bar:
        tasks: dict[str, TaskID] = {}

        def update(description: str, done: int, total: int) -> None:
            if description not in tasks:
                tasks[description] = bar.add_task(description, total=total)
            bar.update(tasks[description], completed=done, total=total)

        yield update
