"""God's monitor: gives up silent consumers, prints results or a summary, writes the results file."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, TextIO

from loguru import logger

from god.broker import Broker
from god.journal import Journal, Recovered
from god.results import ResultsFile
from shared.records import Result

PRINT_PER_S = 20  # result lines a second a person can follow; above that, a summary line
SUMMARY_EVERY_S = 1.0  # seconds between summary lines while results come fast


def summary_line(stats: dict[str, Any], rate: float) -> str:
    """One line of counts: done, pending, in flight, failed, dead, rate, consumers alive."""
    return (
        f"done {stats['done']} | pending {stats['pending']} | in flight {stats['in_flight']} | "
        f"failed {stats['failed']} | dead {stats['dead']} | {rate:,.0f}/s | "
        f"consumers alive {stats['consumers_alive']}"
    )


class Monitor:
    """Turns what the broker records into lines on screen, journal rows and results-file lines.

    A result is committed to the journal before it goes to the results file, and the
    journal then notes how far the file got: so a restarted god writes what the file
    missed (``catch_up``) and nothing twice.
    """

    def __init__(
        self, broker: Broker, *, out: TextIO, results_path: Path | None, quiet: bool = False,
        journal: Journal | None = None,
    ) -> None:
        self.broker = broker
        self.out = out
        self.quiet = quiet
        self.journal = journal
        self.results_path = results_path.resolve() if results_path is not None else None
        self.results = ResultsFile(self.results_path) if self.results_path is not None else None
        self._sink_seq = 0  # journal seq of the newest result handed to the sink
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

    def catch_up(self, recovered: Recovered) -> int:
        """Write the results a killed god journaled but never got into the results file.

        Returns:
            How many lines were written now.
        """
        if not recovered.unwritten:
            return 0
        lines = [line + "\n" for _, _, line in recovered.unwritten]
        if self.results is not None and recovered.results_path == str(self.results_path):
            there = self.results.ids_after(recovered.results_offset)
            lines = [line + "\n" for _, tid, line in recovered.unwritten if tid not in there]
        self._sink_seq = recovered.unwritten[-1][0]
        if self.results is not None:
            self._write(lines)
        else:
            self._mark_written()
        return len(lines)

    def step(self, timeout: float) -> None:
        """One round: wait up to timeout for results, reap lost consumers, record and print."""
        self.broker.results_ready.wait(timeout)
        if self.unwritten:
            self._write([])
        for name, n in self.broker.reap():
            self._log.warning("consumer {} lost (no heartbeat for {:.0f}s); {} tasks served again",
                              name, self.broker.lease_s, n)
        self._record(self.broker.take_results())
        now = time.monotonic()
        if now - self._window_start >= SUMMARY_EVERY_S:
            stats = self.broker.stats()
            total = stats["done"] + stats["failed"] + stats["dead"]
            self.rate = (total - self._last_total) / (now - self._last_rate_at)
            self._last_total, self._last_rate_at = total, now
            if self._window_count > PRINT_PER_S and not self.quiet:
                self._print(summary_line(stats, self.rate))
            self._summarising = self._window_count > PRINT_PER_S
            self._window_start, self._window_count = now, 0

    def _record(self, batch: list[Any]) -> None:
        if not batch:
            return
        results = [Result.from_wire(r, payload=p, consumer=c, attempts=a) for r, p, c, a in batch]
        lines = [r.to_json() + "\n" for r in results]
        if self.journal is not None:
            rows = [(r.id, line[:-1]) for r, line in zip(results, lines) if r.id is not None]
            if rows:
                ticket, self._sink_seq = self.journal.add_results(rows)
                self.journal.wait(ticket)
        if self.results is not None:
            self._write(lines)
        else:
            self._mark_written()
        if not self.quiet:
            self._show(results)

    def _write(self, lines: list[str]) -> None:
        assert self.results is not None
        if self.results.write(lines):
            self._mark_written()

    def _mark_written(self) -> None:
        if self.journal is not None and self._sink_seq:
            where = self.results.offset if self.results is not None else 0
            self.journal.mark_written(self._sink_seq, str(self.results_path) if self.results_path else None, where)

    def _show(self, results: list[Result]) -> None:
        lines = []
        for r in results:
            self._window_count += 1
            if not self._summarising and self._window_count <= PRINT_PER_S:
                lines.append(r.line())
            elif r.error is not None and r.error.startswith("dead letter"):
                lines.append(r.line())  # rare and important: always shown
        if lines:
            self._print("\n".join(lines))

    def _print(self, text: str) -> None:
        self.out.write(text + "\n")
        self.out.flush()

    def close(self) -> None:
        """Record what is left and print the final summary."""
        self._record(self.broker.take_results())
        stats = self.broker.stats()
        total = stats["done"] + stats["failed"] + stats["dead"]
        self._print("final: " + summary_line(stats, total / max(stats["uptime_s"], 1e-9)))
        if self.results is not None:
            if self.unwritten:
                self._write([])
            self.results.close()
