"""One line of a program's progress over its calls: done, failed, in flight, not sent yet, the
rate and the time left, from what the program knows already (no call to god).

Drawn on stderr in a terminal (the line redrawn in place, at most ten times a second), as text
in a notebook (one output updated in place: no widget extension to install), and not at all
elsewhere (a log), unless an output is given. ``ex.map(..., progress=True)`` draws one; for
``as_completed`` loops, ``producer.progress(futures_as_they_complete, total=N)``.
"""

from __future__ import annotations

import concurrent.futures as cf
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from typing import IO, Any, TypeVar

T = TypeVar("T")
EVERY_S = 0.1  # at most this often the line is drawn again


class ProgressLine:
    """Counts and draws; thread-safe (a map's items are counted by the program's thread, a
    future's by whatever thread iterates)."""

    def __init__(self, what: str, total: int | None, out: IO[str] | None = None,
                 now: Callable[[], float] = time.monotonic,
                 reports: Callable[[], Iterable[tuple[float, float | None]]] | None = None) -> None:
        """``reports``: what the calls in flight said of how far they are (``producer.report``)."""
        self.what, self.total, self.reports = what, total, reports
        self.done = self.failed = self.sent = 0
        self._now = now
        self._start = now()
        self._drawn = -EVERY_S
        self._lock = threading.Lock()
        self._notebook: Any = None
        if out is None and "ipykernel" in sys.modules:  # a notebook: one text output, updated
            from IPython.display import display  # type: ignore[import-not-found]

            self._notebook = display(self.line(), display_id=True)
            self._out: IO[str] | None = None
        else:
            self._out = out if out is not None else (sys.stderr if sys.stderr.isatty() else None)

    def add(self, *, done: int = 0, failed: int = 0, sent: int = 0) -> None:
        with self._lock:
            self.done += done
            self.failed += failed
            self.sent += sent
        if self._now() - self._drawn >= EVERY_S:
            self.draw()

    def line(self) -> str:
        """The line as it is now."""
        finished = self.done + self.failed
        seconds = max(self._now() - self._start, 1e-9)
        rate = finished / seconds
        parts = [f"{self.what}: {finished:,}" + (f"/{self.total:,}" if self.total is not None else ""),
                 f"{self.done:,} done", f"{self.failed:,} failed",
                 f"{max(0, self.sent - finished):,} in flight{self._reported()}"]
        if self.total is not None:
            parts.append(f"{max(0, self.total - self.sent):,} not sent")
        parts.append(f"{rate:,.0f}/s")
        if self.total is not None and rate > 0:
            parts.append(f"{_clock((self.total - finished) / rate)} left")
        parts.append(f"{_clock(seconds)} in")
        return ", ".join(parts)

    def _reported(self) -> str:
        """What the calls in flight that report (with a total) say, on average."""
        shares = [min(1.0, done / total) for done, total in self.reports() if total] if self.reports else []
        if not shares:
            return ""
        return f" ({len(shares):,} {'says' if len(shares) == 1 else 'say'} {100 * sum(shares) / len(shares):.0f}% through)"

    def draw(self, *, last: bool = False) -> None:
        self._drawn = self._now()
        text = self.line()
        if self._notebook is not None:
            self._notebook.update(text)
        elif self._out is not None:
            self._out.write(f"\r{text}\x1b[K" + ("\n" if last else ""))
            self._out.flush()


def _clock(seconds: float) -> str:
    s = int(seconds)
    return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}"


def progress(items: Iterable[T], total: int | None = None, *, what: str = "calls",
             out: IO[str] | None = None, futures: Iterable[Any] | None = None) -> Iterator[T]:
    """items as they come (``as_completed(futures)``, say), counting each: a future that
    raised (or was cancelled) as failed, anything else as done; one progress line meanwhile.
    ``futures``: those whose reports (``producer.report`` in the task) the line shows while
    they run."""
    if total is None and hasattr(items, "__len__"):
        total = len(items)  # type: ignore[arg-type]
    watched = list(futures) if futures is not None else None
    reports = None if watched is None else (
        lambda: [f.progress for f in watched if getattr(f, "progress", None) is not None and not f.done()])
    line = ProgressLine(what, total, out, reports=reports)
    line.sent = total or 0
    try:
        for item in items:
            failed = isinstance(item, cf.Future) and item.done() and (item.cancelled() or item.exception() is not None)
            line.add(failed=1) if failed else line.add(done=1)
            yield item
    finally:
        line.draw(last=True)
