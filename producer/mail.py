"""A producer's results as god's mailbox hands them over: runs of results, numbered, each
number confirmed by the next call, and told apart across a restart of god.

One implementation for ``Producer.results()`` (the producer's own connection) and the
executor's results thread (a connection of its own, so that puts never wait behind it).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from shared import items, values
from shared.client import GodClient
from shared.output import Posted
from shared.records import V_VALUE, Value, describe, task_id, value_names
from shared.values import names_values

RESULTS_WAIT_S = 1.0  # seconds one results call may wait at god for the next result
RESULTS_BATCH = 1000  # runs of results fetched per call

#: A run of results: (seq of the first, their values, the consumer that gave them, attempt).
Run = tuple[int, list[Value], str, int]


def _unloadable(e: Exception) -> Value:
    """What a task gave, when it does not load here (a class this program does not have)."""
    return False, None, f"the task's value cannot be loaded here: {describe(e)}", None


class Mail:
    """The mailbox of one producer at god, read through one client."""

    def __init__(self, client: GodClient, producer: str,
                 on_output: Callable[[list[Posted]], None] | None = None) -> None:
        """``on_output``: shows the tasks' lines (producer/output.py), before their results; None:
        they are not asked for."""
        self.client = client
        self.producer = producer
        self.on_output = on_output
        self._confirmed = 0  # the last result number taken
        self._lines: int | None = 0 if on_output is not None else None  # the last number of lines taken
        self._run = ""  # the god run those numbers belong to
        self.started = False  # a fetch was sent whose answer is not read yet (start)
        self.fetched = 0  # bytes of large values fetched
        self._memo = values.Last(2)  # the last large values loaded that cannot change (bytes, str)

    def start(self, outstanding: Callable[[], Iterable[int]], wait_s: float | None = None) -> None:
        """Send the next fetch and return at once; ``fetch`` reads its answer. God answers it
        when a result comes, when wait_s (default RESULTS_WAIT_S) passes, or at once when
        another call comes behind it on the connection (the call yields: god/transport/api.py)."""
        self.client.send("results_for", *self._ask(outstanding, RESULTS_WAIT_S if wait_s is None else wait_s))
        self.started = True

    def fetch(self, outstanding: Callable[[], Iterable[int]], wait_s: float = RESULTS_WAIT_S
              ) -> tuple[list[Run], list[str]]:
        """The next runs of results (waiting up to wait_s for one), and the ids of tasks
        outstanding (seqs) that god says finished before it restarted without keeping their
        results for us: those are in god's results file only. Reads the answer to the fetch
        ``start`` sent, if there is one.

        Raises:
            GodError: as ``GodClient.call`` (god unreachable, and so on).
        """
        if self.started:
            self.started = False
            answer = self.client.reply()
        else:
            answer = self.client.call("results_for", *self._ask(outstanding, wait_s))
        posted, gone = answer[0], answer[1]
        if len(answer) > 2 and answer[2] and self.on_output is not None:
            self._lines = answer[2][-1][0]
            self.on_output([item for _, item in answer[2]])
        runs: list[Run] = []
        for number, (lo, _, blob, consumer, attempts) in posted:
            self._confirmed = number
            got = items.unpack(blob, _unloadable)
            if names_values(blob):  # results with large values apart: fetched now, before god may let go
                got = [self._loaded(v) if value_names(v) else v for v in got]
            runs.append((lo, got, consumer, attempts))
        return runs, list(gone)

    def _loaded(self, v: Value) -> Value:
        """A call's value whose large values god holds apart, loaded with them (shared/values.py)."""
        try:
            return True, values.loads(v[V_VALUE], True, self._fetch, self._memo), None, None
        except Exception as e:
            return _unloadable(e)

    def _fetch(self, digest: str, size: int) -> bytes:
        data = values.fetch(self.client.call, self.producer, digest, size)
        self.fetched += size
        return data

    def _ask(self, outstanding: Callable[[], Iterable[int]], wait_s: float) -> tuple[Any, ...]:
        """The arguments of god's results_for, confirming what was taken so far."""
        run = str(self.client.server_info.get("run", ""))
        check = None
        if run and self._run and run != self._run:  # god restarted since the last call
            check = [task_id(self.producer, seq) for seq in outstanding()]
        if run != self._run:
            if self._run and self._lines is not None:  # (lines are numbered anew: not before the first answer)
                self._lines = 0
            self._run, self._confirmed = run, 0
        return self.producer, run, self._confirmed, RESULTS_BATCH, wait_s, check, self._lines
