"""Results kept for the producers that asked for them (``--wait``, the Python API).

A producer that says so in its hello gets a mailbox: the results of its tasks are posted
there as they come, a run of tasks at a time, numbered, and stay until the producer
confirms it has them (the number it sends with its next call). A retried call after a lost
reply so gets the same results again, and nothing is dropped. Mailboxes live in god's
memory: a restarted god starts without them (the results stay in its results file).
"""

from __future__ import annotations

import threading
from collections import deque

#: A run of results: (lo, hi, pickled list of Value for seqs [lo, hi), consumer, attempt).
Item = tuple[int, int, bytes, str, int]
#: What a mailbox holds: (number, item).
Posted = tuple[int, Item]


class Mailboxes:
    """One mailbox per producer that wants its results; thread-safe, and nothing here waits."""

    def __init__(self) -> None:
        self._boxes: dict[str, deque[Posted]] = {}
        self._numbers: dict[str, int] = {}
        self._lock = threading.Lock()

    def __contains__(self, producer: object) -> bool:
        return producer in self._boxes

    def open(self, producer: str) -> None:
        """Keep results for this producer from now on (again after a reconnect: same box)."""
        with self._lock:
            self._boxes.setdefault(producer, deque())
            self._numbers.setdefault(producer, 0)

    def post(self, producer: str, item: Item) -> None:
        """Results of the producer's tasks, if it has a mailbox."""
        with self._lock:
            box = self._boxes.get(producer)
            if box is None:
                return
            self._numbers[producer] += 1
            box.append((self._numbers[producer], item))

    def take(self, producer: str, confirmed: int, max_n: int) -> list[Posted]:
        """Drop what the producer confirmed (numbers up to ``confirmed``), then return up to
        max_n runs of results."""
        with self._lock:
            box = self._boxes.get(producer)
            if box is None:
                return []
            while box and box[0][0] <= confirmed:
                box.popleft()
            return [box[i] for i in range(min(max_n, len(box)))]

    def holds(self, producer: str) -> set[int]:
        """Seqs of the tasks whose results wait in the producer's mailbox."""
        with self._lock:
            return {seq for _, item in self._boxes.get(producer, ()) for seq in range(item[0], item[1])}

    def close(self, producer: str) -> None:
        """Forget a producer's mailbox (it is gone for good)."""
        with self._lock:
            self._boxes.pop(producer, None)
            self._numbers.pop(producer, None)
