"""Where ``chatd migrate`` reports progress: the ``Reporter`` port, a silent one, and
progress bars (rich, which typer brings along)."""

from __future__ import annotations

from typing import Any, Protocol

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.text import Text


class Reporter(Protocol):
    """Where progress goes (a progress bar in the CLI, nothing in tests)."""

    def step(self, name: str, total: int, done: int) -> None: ...

    def advance(self, name: str, count: int) -> None: ...

    def finish(self, name: str) -> None: ...

    def note(self, text: str) -> None: ...


class Quiet:
    def step(self, name: str, total: int, done: int) -> None:
        pass

    def advance(self, name: str, count: int) -> None:
        pass

    def finish(self, name: str) -> None:
        pass

    def note(self, text: str) -> None:
        pass


class RateColumn(ProgressColumn):
    """Records per second."""

    def render(self, task: Task) -> Text:
        speed = task.finished_speed or task.speed
        return Text(f"{speed:>9,.0f}/s" if speed else " " * 11)


class RichReporter:
    """One bar per step; notes print above the bars."""

    def __init__(self, console: Console | None = None) -> None:
        self.console = console or Console(stderr=True)
        self._progress = Progress(
            TextColumn("{task.description:<22}"),
            BarColumn(),
            MofNCompleteColumn(),
            RateColumn(),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=self.console,
        )
        self._tasks: dict[str, TaskID] = {}

    def __enter__(self) -> RichReporter:
        self._progress.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._progress.stop()

    def step(self, name: str, total: int, done: int) -> None:
        self._tasks[name] = self._progress.add_task(name, total=max(total, 0), completed=done)

    def advance(self, name: str, count: int) -> None:
        self._progress.advance(self._tasks[name], count)

    def finish(self, name: str) -> None:
        task = self._tasks[name]
        total = self._progress.tasks[task].total
        if total is not None:
            self._progress.update(task, completed=total)

    def note(self, text: str) -> None:
        self._progress.console.print(text)
