"""God's monitor: shows the results the recorder kept, or a summary of them, and keeps the rate."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, TextIO

from god.operator.history import History
from god.operator.lines import summary_line
from god.rules.figures import Figures
from god.store.outbox import Outgoing
from shared.log import redirect_logging
from shared.records import Result
from shared.stats import Stats

if TYPE_CHECKING:
    from rich.live import Live

PRINT_PER_S = 20  # result lines a second a person can follow; above that, a summary line
SUMMARY_EVERY_S = 1.0  # seconds between summary lines while results come fast


class Monitor:
    """Shows results once they are kept (god/journal/recorder.py), and the figures."""

    def __init__(self, figures: Figures, *, out: TextIO, quiet: bool = False, history: History | None = None) -> None:
        self.figures = figures
        self.history = history  # a sample a second for the dashboard
        self.out = out
        self.quiet = quiet
        self._live: Live | None = None
        self._where = ""
        self._window_start = time.monotonic()
        self._window_count = 0
        self._summarising = False
        self._last_total = 0
        self._last_rate_at = time.monotonic()
        self.rate = 0.0
        self._first_at: float | None = None  # when the first and the last results came (this god's life)
        self._last_at = 0.0

    def step(self, out: list[Outgoing]) -> None:
        """One round: show results kept since the last (or a summary line), and the figures."""
        now = time.monotonic()
        if out:
            self._last_at = now
            if self._first_at is None:
                self._first_at = now
            if not self.quiet:
                self._show(out)
        if now - self._window_start >= SUMMARY_EVERY_S:
            stats = self.figures.stats()
            total = stats["done"] + stats["failed"] + stats["dead"]
            self.rate = (total - self._last_total) / (now - self._last_rate_at)
            self._last_total, self._last_rate_at = total, now
            if self.history is not None:
                self.history.add(stats, self.rate)
            if self._live is not None:
                self._refresh(stats)
            elif self._window_count > PRINT_PER_S and not self.quiet:
                self._print(summary_line(stats, self.rate))
            self._summarising = self._window_count > PRINT_PER_S
            self._window_start, self._window_count = now, 0

    def _show(self, out: list[Outgoing]) -> None:
        """Print results a person can follow: at most PRINT_PER_S a second, and every dead letter."""
        shown = []
        for text, _ in out:
            n = text.count("\n")
            room = 0 if self._summarising else max(0, PRINT_PER_S - self._window_count)
            self._window_count += n
            if not room and '"error": "dead letter' not in text:
                continue
            for i, line in enumerate(text.splitlines()):
                if i < room or '"error": "dead letter' in line:
                    shown.append(Result.from_json(line).line())
        if shown:
            self._print("\n".join(shown))

    def start_live(self, where: str) -> None:
        """Show the live view at the bottom of the terminal; results scroll above it."""
        # rich only here: god without a terminal (a service, a test) starts without it
        from rich.console import Console
        from rich.live import Live
        from rich.text import Text

        from god.operator.live import render

        self._where = where
        console = Console(file=self.out)
        self._live = Live(render(self.figures.stats(), 0.0, where), console=console, refresh_per_second=4,
                          redirect_stdout=False, redirect_stderr=False)
        self._live.start()
        live = self._live
        redirect_logging(lambda line: live.console.print(Text(line.rstrip("\n")), soft_wrap=True))

    def _refresh(self, stats: Stats) -> None:
        from god.operator.live import render

        assert self._live is not None
        self._live.update(render(stats, self.rate, self._where))

    def _print(self, text: str) -> None:
        if self._live is not None:
            from rich.text import Text

            self._live.console.print(Text(text))
            return
        self.out.write(text + "\n")
        self.out.flush()

    def close(self, out: list[Outgoing]) -> None:
        """Show the last results kept, and print the final summary."""
        if out and not self.quiet:
            self._show(out)
        stats = self.figures.stats()
        total = stats["done"] + stats["failed"] + stats["dead"]
        if self._live is not None:
            self._refresh(stats)
            self._live.stop()
            self._live = None
            redirect_logging(None)
        # The rate while results came, not over god's whole life (idle hours would drown it).
        working = self._last_at - self._first_at if self._first_at is not None else 0.0
        self._print("final: " + summary_line(stats, total / working if working > 0 else 0.0))
