"""A producer's results as god's mailbox hands them over: runs of results, numbered, each
number confirmed by the next call, and told apart across a restart of god.

One implementation for ``Producer.results()`` (the producer's own connection) and the
executor's results thread (a connection of its own, so that puts never wait behind it).
"""

from __future__ import annotations

import pickle
from collections.abc import Callable, Iterable

from shared.client import GodClient
from shared.records import Value, task_id

RESULTS_WAIT_S = 1.0  # seconds one results call may wait at god for the next result
RESULTS_BATCH = 1000  # runs of results fetched per call

#: A run of results: (seq of the first, their values, the consumer that gave them, attempt).
Run = tuple[int, list[Value], str, int]


class Mail:
    """The mailbox of one producer at god, read through one client."""

    def __init__(self, client: GodClient, producer: str) -> None:
        self.client = client
        self.producer = producer
        self._confirmed = 0  # the last result number taken
        self._run = ""  # the god run those numbers belong to

    def fetch(self, outstanding: Callable[[], Iterable[int]], wait_s: float = RESULTS_WAIT_S
              ) -> tuple[list[Run], list[str]]:
        """The next runs of results (waiting up to wait_s for one), and the ids of tasks
        outstanding (seqs) that god says finished before it restarted without keeping their
        results for us: those are in god's results file only.

        Raises:
            GodError: as ``GodClient.call`` (god unreachable, and so on).
        """
        run = str(self.client.server_info.get("run", ""))
        check = None
        if run and self._run and run != self._run:  # god restarted since the last call
            check = [task_id(self.producer, seq) for seq in outstanding()]
        if run != self._run:
            self._run, self._confirmed = run, 0
        posted, gone = self.client.results_for(run, self._confirmed, RESULTS_BATCH, wait_s, check)
        runs: list[Run] = []
        for number, (lo, _, blob, consumer, attempts) in posted:
            self._confirmed = number
            runs.append((lo, pickle.loads(blob), consumer, attempts))
        return runs, gone
