"""Where a program shows what its tasks wrote (shared/output.py), as god hands it over.

    Executor(output=True)        # the default: each line on stderr, "(square host:1234:ab12cd/17 on c1) text"
    Executor(output="logging")   # records of the logger "producer.output" (stdout INFO, stderr WARNING)
    Executor(output=False)       # not asked for: god keeps them for `god task ID --output` only
    Executor(output=some_file)   # lines written there, marked as on stderr

Lines come as the tasks write them (a running task's about every half second), in each task's
order, each marked with the task's function, its id and the consumer; a note a worker or god
adds (lines dropped) is marked so.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable
from typing import IO, Any, Union

from shared.errors import ConfigError
from shared.output import Posted
from shared.records import task_id

#: What ``output=`` takes.
Where = Union[bool, str, IO[str], None]

_LEVELS = {"out": logging.INFO, "err": logging.WARNING, "note": logging.WARNING}


class Show:
    """Shows a program's tasks' lines: ``show(posted)`` for each batch god hands over."""

    def __init__(self, producer: str, where: Where, label: Callable[[int], str] = lambda seq: "task",
                 progress: Callable[[int, tuple[float, float | None]], None] | None = None) -> None:
        """``label(seq)``: the name shown for a task (its function's); ``progress(seq, (done,
        total))``: what the task reported last (``producer.report``)."""
        self.producer, self.label, self.progress = producer, label, progress
        self._log = logging.getLogger("producer.output") if check_where(where) == "logging" else None
        self._file: IO[str] | None = where if hasattr(where, "write") else None  # type: ignore[assignment]

    def __call__(self, posted: list[Posted]) -> None:
        for seq, consumer, chunks, progress in posted:
            if progress is not None and self.progress is not None:
                self.progress(seq, progress)
            if not chunks:
                continue
            tid = task_id(self.producer, seq)
            mark = f"({self.label(seq)} {tid} on {consumer})"
            if self._log is not None:
                for stream, text in chunks:
                    for line in text.split("\n")[:-1]:
                        self._log.log(_LEVELS[stream], "%s %s", mark, line,
                                      extra={"task_id": tid, "consumer": consumer, "stream": stream})
                continue
            out = self._file if self._file is not None else sys.stderr  # (looked up now: a notebook swaps it)
            text = "".join(f"{mark}{' [note]' if stream == 'note' else ''} {line}\n"
                           for stream, text in chunks for line in text.split("\n")[:-1])
            out.write(text)
            out.flush()


def check_where(where: Any) -> Any:
    """``output=``'s value, if it is one.

    Raises:
        ConfigError: it is not.
    """
    if where in (True, False, None, "stderr", "logging") or hasattr(where, "write"):
        return where
    raise ConfigError(f"output={where!r}: True (stderr), False, 'logging', or a file open for writing")


def wants_output(where: Any) -> bool:
    """Whether ``output=`` asks god for the lines at all."""
    return where not in (False, None)
