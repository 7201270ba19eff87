"""God's monitor: gives up silent consumers, prints results or a summary, writes the results file."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, TextIO

from loguru import logger

from god.broker import Broker
from shared.errors import ConfigError
from shared.records import Result

PRINT_PER_S = 20  # result lines a second a person can follow; above that, a summary line
SUMMARY_EVERY_S = 1.0  # seconds between summary lines while results come fast
WRITE_ERROR_EVERY_S = 10.0  # seconds between repeats of a results-file error


def summary_line(stats: dict[str, Any], rate: float) -> str:
    """One line of counts: done, pending, in flight, failed, dead, rate, consumers alive."""
    return (
        f"done {stats['done']} | pending {stats['pending']} | in flight {stats['in_flight']} | "
        f"failed {stats['failed']} | dead {stats['dead']} | {rate:,.0f}/s | "
        f"consumers alive {stats['consumers_alive']}"
    )


class Monitor:
    """Turns what the broker records into lines on screen and JSON lines in the results file."""

    def __init__(self, broker: Broker, *, out: TextIO, results_path: Path | None, quiet: bool = False) -> None:
        self.broker = broker
        self.out = out
        self.quiet = quiet
        self._results: TextIO | None = None
        if results_path is not None:
            try:
                self._results = open(results_path, "a", encoding="utf-8")
            except OSError as e:
                raise ConfigError(f"cannot open results file {results_path}: {e.strerror}") from None
        self.results_path = results_path
        self.unwritten: list[str] = []  # result lines the file refused; written when it takes them
        self._write_error_at = 0.0
        self._window_start = time.monotonic()
        self._window_count = 0
        self._summarising = False
        self._last_total = 0
        self._last_rate_at = time.monotonic()
        self.rate = 0.0
        self._log = logger.bind(role="god")

    def step(self, timeout: float) -> None:
        """One round: wait up to timeout for results, reap lost consumers, record and print."""
        self.broker.results_ready.wait(timeout)
        self._write_results()
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
        if self._results is not None:
            self.unwritten += [r.to_json() + "\n" for r in results]
            self._write_results()
        if self.quiet:
            return
        lines = []
        for r in results:
            self._window_count += 1
            if not self._summarising and self._window_count <= PRINT_PER_S:
                lines.append(r.line())
            elif r.error is not None and r.error.startswith("dead letter"):
                lines.append(r.line())  # rare and important: always shown
        if lines:
            self._print("\n".join(lines))

    def _write_results(self) -> None:
        """Append what the file has not taken yet; on a full or broken disk keep it and say so."""
        if self._results is None or not self.unwritten:
            return
        try:
            self._results.write("".join(self.unwritten))
            self._results.flush()
        except OSError as e:
            # Some lines may have reached the file before the error; rewinding the buffer
            # is not possible, so the file may repeat lines from this batch once it recovers.
            self._reopen()
            now = time.monotonic()
            if now - self._write_error_at > WRITE_ERROR_EVERY_S:
                self._write_error_at = now
                self._log.error("cannot write results file {}: {}; {} results kept in memory, retrying",
                                self.results_path, e.strerror or e, len(self.unwritten))
            return
        self.unwritten = []

    def _reopen(self) -> None:
        if self._results is not None and self.results_path is not None:
            try:
                self._results.close()
            except OSError:
                pass
            try:
                self._results = open(self.results_path, "a", encoding="utf-8")
            except OSError:
                pass

    def _print(self, text: str) -> None:
        self.out.write(text + "\n")
        self.out.flush()

    def close(self) -> None:
        """Record what is left and print the final summary."""
        self._record(self.broker.take_results())
        stats = self.broker.stats()
        total = stats["done"] + stats["failed"] + stats["dead"]
        self._print("final: " + summary_line(stats, total / max(stats["uptime_s"], 1e-9)))
        if self._results is not None:
            self._write_results()
            try:
                self._results.close()
            except OSError:
                pass
