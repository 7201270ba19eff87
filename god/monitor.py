"""God's monitor: gives up silent consumers, has results recorded, prints them or a summary."""

from __future__ import annotations

import time
from typing import TextIO

from loguru import logger
from rich.console import Console
from rich.live import Live
from rich.text import Text

from god.broker import Broker
from god.state import Outgoing
from god.history import History
from god.live import render
from god.record import Record
from shared.log import count, redirect_logging
from shared.records import Result
from shared.stats import Stats

PRINT_PER_S = 20  # result lines a second a person can follow; above that, a summary line
SUMMARY_EVERY_S = 1.0  # seconds between summary lines while results come fast
#: Seconds the monitor lets results gather after the first one. Woken for each result, it
#: took the GIL from the hub right when the hub was sending that result on to its producer
#: and the next task to a consumer: single-task latency 0.30 ms, 0.24 ms with this pause.
GATHER_S = 0.002


def summary_line(stats: Stats, rate: float) -> str:
    """One line of counts: done, pending, in flight, failed, dead, rate, consumers alive."""
    return (
        f"done {stats['done']} | pending {stats['pending']} | in flight {stats['in_flight']} | "
        f"failed {stats['failed']} | dead {stats['dead']} | {rate:,.0f}/s | "
        f"consumers alive {stats['consumers_alive']}"
    )


def status_text(where: str, stats: Stats) -> str:
    """God's figures for a person: the summary line, then a line per queue, consumer and producer."""
    lines = [f"god at {where}, up {stats['uptime_s']:.0f}s: " + summary_line(stats, 0.0).rsplit(" | ", 2)[0]
             + f" | duplicates {stats['duplicates']} | consumers alive {stats['consumers_alive']}"
             + f" | connections {stats['connections']} | refused {stats['refused']}"]
    for name, q in sorted(stats["queues"].items()):
        lines.append(f"  queue {name}: pending {q['pending']}, in flight {q['in_flight']}, scheduled {q['scheduled']}, "
                     f"blocked {q['blocked']}, done {q['done']}, "
                     f"failed {q['failed']}, dead {q['dead']}, oldest waiting {q['oldest_waiting_s']:.1f}s, "
                     f"consumers {q['consumers']}"
                     + (f", at most {q['rate_limit']:g} a second" if q["rate_limit"] is not None else "")
                     + (", paused" if q["paused"] else ""))
    for c in stats["consumers"]:
        lines.append(f"  consumer {c['name']} on {c['host']}: {count(c['processes'], 'process', 'processes')}, "
                     f"{'alive' if c['alive'] else 'lost'}, done {c['done']}, failed {c['failed']}, "
                     f"in flight {c['in_flight']}, queues {','.join(c['queues'])}, last heard {c['last_seen_s']:.1f}s ago"
                     + (f", oldest task held {c['oldest_held_s']:.1f}s" if c["in_flight"] else ""))
    for p in stats["producers"]:
        lines.append(f"  producer {p['name']} on {p['host']}: put {p['put']}, last heard {p['last_seen_s']:.1f}s ago")
    return "\n".join(lines)


class Monitor:
    """Gives up silent consumers, has results recorded (god/record.py), and shows them."""

    def __init__(self, broker: Broker, record: Record, *, out: TextIO, quiet: bool = False,
                 history: History | None = None) -> None:
        self.broker = broker
        self.history = history  # a sample a second for the dashboard
        self.record = record
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
        self._log = logger.bind(role="god")

    def step(self, timeout: float) -> None:
        """One round: wait up to timeout for results, reap lost consumers, record and print."""
        if self.broker.state.results_ready.wait(timeout):
            time.sleep(GATHER_S)
        for name, n in self.broker.reap():
            self._log.warning("consumer {} lost (no heartbeat for {:.0f}s); {} served again",
                              name, self.broker.state.lease_s, count(n, "task"))
        out = self.record.take()
        now = time.monotonic()
        if out:
            self._last_at = now
            if self._first_at is None:
                self._first_at = now
            if not self.quiet:
                self._show(out)
        if now - self._window_start >= SUMMARY_EVERY_S:
            stats = self.broker.figures.stats()
            total = stats["done"] + stats["failed"] + stats["dead"]
            self.rate = (total - self._last_total) / (now - self._last_rate_at)
            self._last_total, self._last_rate_at = total, now
            if self.history is not None:
                self.history.add(stats, self.rate)
            if self._live is not None:
                self._live.update(render(stats, self.rate, self._where))
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
        self._where = where
        console = Console(file=self.out)
        self._live = Live(render(self.broker.figures.stats(), 0.0, where), console=console, refresh_per_second=4,
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
        out = self.record.take()
        if out and not self.quiet:
            self._show(out)
        stats = self.broker.figures.stats()
        total = stats["done"] + stats["failed"] + stats["dead"]
        if self._live is not None:
            self._live.update(render(stats, self.rate, self._where))
            self._live.stop()
            self._live = None
            redirect_logging(None)
        # The rate while results came, not over god's whole life (idle hours would drown it).
        working = self._last_at - self._first_at if self._first_at is not None else 0.0
        self._print("final: " + summary_line(stats, total / working if working > 0 else 0.0))
        self.record.close()
