"""Results kept for the producers that asked for them (``--wait``, the Python API).

A producer that says so in its hello gets a mailbox: every result of a task it put is
posted there, numbered, and stays until the producer confirms it has it (the number it
sends with its next call). A retried call after a lost reply so gets the same results
again, and nothing is dropped. Mailboxes live in god's memory: a restarted god starts
without them (the results stay in its results file).
"""

from __future__ import annotations

import bisect
import threading
import time
from collections import deque
from typing import Any

#: What a mailbox holds: (number, (wire result, consumer, attempts)).
Posted = tuple[int, tuple[Any, ...]]


class Mailboxes:
    """One mailbox per producer that wants its results; thread-safe."""

    def __init__(self) -> None:
        self._boxes: dict[str, deque[Posted]] = {}
        self._numbers: dict[str, int] = {}
        self._cond = threading.Condition()

    def __bool__(self) -> bool:
        return bool(self._boxes)

    def open(self, producer: str) -> None:
        """Keep results for this producer from now on (again after a reconnect: same box)."""
        with self._cond:
            self._boxes.setdefault(producer, deque())
            self._numbers.setdefault(producer, 0)

    def post(self, task_id: str, item: tuple[Any, ...]) -> None:
        """A result: into its producer's mailbox, if it has one (ids are PRODUCER/SEQ)."""
        producer = task_id.rpartition("/")[0]
        with self._cond:
            box = self._boxes.get(producer)
            if box is None:
                return
            self._numbers[producer] += 1
            box.append((self._numbers[producer], item))
            self._cond.notify_all()

    def take(self, producer: str, confirmed: int, max_n: int, timeout: float) -> list[Posted]:
        """Drop what the producer confirmed (numbers up to ``confirmed``), then return up to
        max_n results, waiting up to timeout for the first."""
        deadline = time.monotonic() + timeout
        with self._cond:
            box = self._boxes.get(producer)
            if box is None:
                return []
            while box and box[0][0] <= confirmed:
                box.popleft()
            while not box and (left := deadline - time.monotonic()) > 0:
                self._cond.wait(left)
                box = self._boxes.get(producer)
                if box is None:
                    return []
            return [box[i] for i in range(min(max_n, len(box)))]

    def holds(self, producer: str) -> set[str]:
        """Ids of the tasks whose results wait in the producer's mailbox."""
        with self._cond:
            return {item[0][0] for _, item in self._boxes.get(producer, ())}

    def close(self, producer: str) -> None:
        """Forget a producer's mailbox (it is gone for good)."""
        with self._cond:
            self._boxes.pop(producer, None)
            self._numbers.pop(producer, None)
            self._cond.notify_all()



class Arrivals:
    """When the tasks still waiting arrived, by the second, for the oldest waiting task's age.

    Counting beats a time stamp per task (a million queued tasks would carry 80 MB of them):
    tasks leave the queue for the first time in the order they came, so the oldest one
    never served is the one after ``served`` in arrival order. A task served and requeued
    is older still; the age reported is then a lower bound. Call under the broker's lock.
    """

    KEEP = 4096  # seconds of arrivals kept before the fully served ones are pruned

    def __init__(self) -> None:
        self._times: list[float] = []  # second each bucket started
        self._upto: list[int] = []  # tasks accepted up to the end of each bucket
        self._accepted = 0
        self._served = 0

    def accepted(self, n: int, now: float) -> None:
        if not n:
            return
        self._accepted += n
        if self._times and now - self._times[-1] < 1.0:
            self._upto[-1] = self._accepted
            return
        self._times.append(now)
        self._upto.append(self._accepted)
        if len(self._times) > 2 * self.KEEP:
            drop = min(bisect.bisect_right(self._upto, self._served), self.KEEP)
            del self._times[:drop], self._upto[:drop]

    def served(self, n: int = 1) -> None:
        """n tasks left the queue for the first time (negative: came back unstarted)."""
        self._served += n

    def oldest_age(self, now: float) -> float:
        """Seconds since the oldest task never served arrived; 0 when there is none."""
        i = bisect.bisect_right(self._upto, self._served)
        return now - self._times[i] if i < len(self._times) else 0.0
