"""A progress bar over the producer's rounds or input file, on stderr when it is a terminal."""

from __future__ import annotations

import sys
from types import TracebackType
from typing import TYPE_CHECKING

from shared.log import redirect_logging

if TYPE_CHECKING:
    from rich.progress import Progress, TaskID


class PutProgress:
    """Shows how far the rounds or the file are; a no-op when stderr is not a terminal.

    ``total`` is rounds, or the file's size in characters (None: unknown, as for stdin).
    While it shows, log lines print above it.
    """

    def __init__(self, *, total: float | None, what: str, enabled: bool | None = None) -> None:
        self.enabled = sys.stderr.isatty() if enabled is None else enabled
        self.tasks_put = 0
        self._progress: Progress | None = None
        self._task: TaskID | None = None
        if self.enabled:
            # rich is imported only here: a producer whose output is not a terminal (scripts,
            # the benchmark) starts about 17 ms sooner without it.
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

            columns = [TextColumn("{task.description}"), BarColumn()]
            if what == "rounds" and total is not None:
                columns.append(MofNCompleteColumn())
            else:
                columns.append(TextColumn("{task.percentage:>3.0f}%"))
            columns += [TextColumn("{task.fields[put]:,} tasks put"), TimeElapsedColumn()]
            self._progress = Progress(*columns, console=Console(stderr=True), transient=False)
            self._task = self._progress.add_task(f"putting {what}", total=total, put=0)

    def __enter__(self) -> PutProgress:
        if self._progress is not None:
            from rich.text import Text

            self._progress.start()
            console = self._progress.console
            redirect_logging(lambda line: console.print(Text(line.rstrip("\n")), soft_wrap=True))
        return self

    def advance(self, tasks: int, amount: float) -> None:
        """tasks were put, and they took amount of the total (a round, or characters of the file)."""
        self.tasks_put += tasks
        if self._progress is not None and self._task is not None:
            self._progress.update(self._task, advance=amount, put=self.tasks_put)

    def __exit__(self, kind: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None) -> None:
        if self._progress is not None:
            if kind is None and self._task is not None:
                task = self._progress.tasks[0]
                if task.total is not None:
                    self._progress.update(self._task, completed=task.total)
            self._progress.stop()
            redirect_logging(None)
