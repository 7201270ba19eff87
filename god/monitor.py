"""God's monitor: gives up silent consumers, prints results or a summary, writes the results file."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, TextIO

from loguru import logger
from rich.console import Console
from rich.live import Live
from rich.text import Text

from god.broker import Broker
from god.journal import Journal
from god.live import render
from god.results import ResultsFile
from shared.log import redirect_logging
from shared.records import ERROR, ID, OK, TRACEBACK, VALUE, Result, json_line

PRINT_PER_S = 20  # result lines a second a person can follow; above that, a summary line
SUMMARY_EVERY_S = 1.0  # seconds between summary lines while results come fast
COMPACT_EVERY_S = 1.0  # seconds between releases of finished task batches from the journal
COMPACT_BATCHES = 16  # oldest journal task batches looked at each time
#: Seconds the monitor lets results gather after the first one. Woken for each result, it
#: took the GIL from the hub right when the hub was sending that result on to its producer
#: and the next task to a consumer: single-task latency 0.30 ms, 0.24 ms with this pause.
GATHER_S = 0.002


def summary_line(stats: dict[str, Any], rate: float) -> str:
    """One line of counts: done, pending, in flight, failed, dead, rate, consumers alive."""
    return (
        f"done {stats['done']} | pending {stats['pending']} | in flight {stats['in_flight']} | "
        f"failed {stats['failed']} | dead {stats['dead']} | {rate:,.0f}/s | "
        f"consumers alive {stats['consumers_alive']}"
    )


def status_text(where: str, stats: dict[str, Any]) -> str:
    """God's figures for a person: the summary line, then a line per consumer and producer."""
    lines = [f"god at {where}, up {stats['uptime_s']:.0f}s: " + summary_line(stats, 0.0).rsplit(" | ", 2)[0]
             + f" | duplicates {stats['duplicates']} | consumers alive {stats['consumers_alive']}"
             + (f" | connections {stats['connections']} | refused {stats['refused']}" if "connections" in stats else "")]
    for c in stats["consumers"]:
        lines.append(f"  consumer {c['name']} on {c['host']}: {c['processes']} processes, "
                     f"{'alive' if c['alive'] else 'lost'}, done {c['done']}, failed {c['failed']}, "
                     f"in flight {c['in_flight']}, last heard {c['last_seen_s']:.1f}s ago")
    for p in stats["producers"]:
        lines.append(f"  producer {p['name']} on {p['host']}: put {p['put']}, last heard {p['last_seen_s']:.1f}s ago")
    return "\n".join(lines)


class Monitor:
    """Turns what the broker records into lines on screen, results-file lines and journal rows.

    A result goes to the results file first, then to the journal with the file's new size;
    a restarted god finds in the file what a crash kept from the journal (Journal.recover).
    """

    def __init__(
        self, broker: Broker, *, out: TextIO, results_path: Path | None, quiet: bool = False,
        journal: Journal | None = None,
    ) -> None:
        self.broker = broker
        self.out = out
        self.quiet = quiet
        self.journal = journal
        self.results = ResultsFile(results_path.resolve()) if results_path is not None else None
        self._live: Live | None = None
        self._compacted_at = time.monotonic()
        self._where = ""
        self._window_start = time.monotonic()
        self._window_count = 0
        self._summarising = False
        self._last_total = 0
        self._last_rate_at = time.monotonic()
        self.rate = 0.0
        self._log = logger.bind(role="god")

    @property
    def unwritten(self) -> list[str]:
        """Result lines the results file has refused so far."""
        return self.results.unwritten if self.results is not None else []

    def step(self, timeout: float) -> None:
        """One round: wait up to timeout for results, reap lost consumers, record and print."""
        if self.broker.results_ready.wait(timeout):
            time.sleep(GATHER_S)
        if self.unwritten:
            self._write([], [])
        for name, n in self.broker.reap():
            self._log.warning("consumer {} lost (no heartbeat for {:.0f}s); {} tasks served again",
                              name, self.broker.lease_s, n)
        now = time.monotonic()
        compacting = self.journal is not None and now - self._compacted_at >= COMPACT_EVERY_S
        batch, finished = self.broker.take_results(
            self.journal.oldest_open(COMPACT_BATCHES) if self.journal is not None and compacting else None)
        self._record(batch)
        if compacting and self.journal is not None:
            self._compacted_at = now
            if finished and not self.unwritten:  # results the file refused are not journaled yet
                self.journal.compact(finished)
        if now - self._window_start >= SUMMARY_EVERY_S:
            stats = self.broker.stats()
            total = stats["done"] + stats["failed"] + stats["dead"]
            self.rate = (total - self._last_total) / (now - self._last_rate_at)
            self._last_total, self._last_rate_at = total, now
            if self._live is not None:
                self._live.update(render(stats, self.rate, self._where))
            elif self._window_count > PRINT_PER_S and not self.quiet:
                self._print(summary_line(stats, self.rate))
            self._summarising = self._window_count > PRINT_PER_S
            self._window_start, self._window_count = now, 0

    def _record(self, batch: list[Any]) -> None:
        if not batch:
            return
        done = [(r[ID], r[OK]) for r, _, _, _ in batch if r[ID] is not None]
        if self.results is not None:
            now = time.time()
            self._write([json_line(r[ID], p, r[OK], r[VALUE], r[ERROR], r[TRACEBACK], c, a, now) + "\n"
                         for r, p, c, a in batch], done)
        elif self.journal is not None and done:
            self.journal.add_results(done)
        if not self.quiet:
            self._show(batch)

    def _write(self, lines: list[str], done: list[tuple[str, bool]]) -> None:
        assert self.results is not None
        written = self.results.write(lines, done)
        if written and self.journal is not None:
            self.journal.add_results(written, str(self.results.path), self.results.offset)

    def _show(self, batch: list[Any]) -> None:
        """Print results a person can follow: at most PRINT_PER_S a second, and every dead letter."""
        lines = []
        for r, p, c, a in batch:
            self._window_count += 1
            shown = not self._summarising and self._window_count <= PRINT_PER_S
            if shown or (r[ERROR] is not None and r[ERROR].startswith("dead letter")):
                lines.append(Result.from_wire(r, payload=p, consumer=c, attempts=a).line())
        if lines:
            self._print("\n".join(lines))

    def start_live(self, where: str) -> None:
        """Show the live view at the bottom of the terminal; results scroll above it."""
        self._where = where
        console = Console(file=self.out)
        self._live = Live(render(self.broker.stats(), 0.0, where), console=console, refresh_per_second=4,
                          redirect_stdout=False, redirect_stderr=False)
        self._live.start()
        live = self._live
        redirect_logging(lambda line: live.console.print(Text(line.rstrip("\n")), soft_wrap=True))

    def _print(self, text: str) -> None:
        if self._live is not None:
            self._live.console.print(Text(text))
            return
        self.out.write(text + "\n")
        self.out.flush()

    def close(self) -> None:
        """Record what is left and print the final summary."""
        self._record(self.broker.take_results()[0])
        stats = self.broker.stats()
        total = stats["done"] + stats["failed"] + stats["dead"]
        if self._live is not None:
            self._live.update(render(stats, self.rate, self._where))
            self._live.stop()
            self._live = None
            redirect_logging(None)
        self._print("final: " + summary_line(stats, total / max(stats["uptime_s"], 1e-9)))
        if self.results is not None:
            if self.unwritten:
                self._write([], [])
            self.results.close()
