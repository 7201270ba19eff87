"""The durable record of results: lines to the results file first, then the runs they settle
to the journal, with how far the file got; and the release of finished batches.

God's loop (god/service.py) runs the recorder before anything shows a result: the monitor
prints what the recorder has kept, never the other way round.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Protocol

from god.journal.results_file import ResultsFile
from god.journal.journal import Journal
from god.store.outbox import Outgoing
from shared.records import Run

COMPACT_EVERY_S = 1.0  # seconds between releases of finished batches from the journal
MAIL_WAIT_S = 1.0  # longest wait for results posted to producers to be journaled before their lines are written
#: Seconds the recorder lets results gather after the first one. Woken for each result, god's
#: loop took the GIL from the hub right when the hub was sending that result on to its producer
#: and the next task to a consumer: single-task latency 0.30 ms, 0.24 ms with this pause.
GATHER_S = 0.002


class Recorded(Protocol):
    """Where the results come from (god/rules/broker.py)."""

    @property
    def results_ready(self) -> threading.Event: ...

    @property
    def kept_ticket(self) -> int: ...

    def take_results(self) -> tuple[list[Outgoing], list[tuple[str, int]]]: ...


class Recorder:
    """Takes the broker's results and keeps them: the results file, then the journal.

    A restarted god finds in the file what a crash kept from the journal (Journal.recover).
    """

    def __init__(self, source: Recorded, *, results_path: Path | None, journal: Journal | None,
                 sync_full: bool = False) -> None:
        self.source = source
        self.journal = journal
        self.results = ResultsFile(results_path.resolve(), fsync=sync_full) if results_path is not None else None
        self._compacted_at = time.monotonic()
        self._finished: list[tuple[str, int]] = []  # batches to release once their results are journaled

    @property
    def unwritten(self) -> int:
        """Results the results file has refused so far."""
        return sum(text.count("\n") for text in self.results.unwritten) if self.results is not None else 0

    def step(self, timeout: float) -> list[Outgoing]:
        """Wait up to timeout for results, then keep what came (``take``); returns it."""
        if self.source.results_ready.wait(timeout):
            time.sleep(GATHER_S)
        return self.take()

    def take(self) -> list[Outgoing]:
        """Take what the broker recorded since the last call and keep it; returns it."""
        if self.unwritten:
            self._write([], [])
        journal = self.journal
        out, finished = self.source.take_results()
        self._finished += finished
        if out and journal is not None and self.results is not None:
            # A restarted god takes a task whose line it finds in the file as done: the value
            # posted to its producer (god/store/mailboxes.py), and what it gave for the tasks
            # that wait for it (god/rules/graph.py), must be in the journal by then.
            # (A journal that cannot commit for longer, a full disk, does not hold the file up:
            # such a value is then in its results line only.)
            journal.wait(self.source.kept_ticket, MAIL_WAIT_S)
        if out:
            runs = [r for _, rs in out for r in rs]
            if self.results is not None:
                self._write([lines for lines, _ in out], runs)
            elif journal is not None and runs:
                journal.add_results(runs)
        now = time.monotonic()
        if journal is not None and now - self._compacted_at >= COMPACT_EVERY_S:
            self._compacted_at = now
            if self._finished and not self.unwritten:  # results the file refused are not journaled yet
                journal.compact(self._finished)
                self._finished = []
        return out

    def _write(self, lines: list[str], runs: list[Run]) -> None:
        assert self.results is not None
        written = self.results.write(lines, runs)
        if written is not None and self.journal is not None:
            self.journal.add_results(written, str(self.results.path), self.results.offset)

    def close(self) -> list[Outgoing]:
        """Keep what is left (returned), and close the results file."""
        out = self.take()
        if self.results is not None:
            if self.unwritten:
                self._write([], [])
            self.results.close()
        return out
