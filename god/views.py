"""Queue-shaped views of the default queue for clients written for the tutorials.

``pq``/``cq``, ``get_task_queue``/``get_result_queue`` and ``getTaskQueue``/``getResultQueue``
all give these. Their calls run in the stock manager server's threads, and those that wait
park in god's one implementation of waiting calls (god/waits.py) and block until answered.
"""

from __future__ import annotations

import math
import queue
from collections.abc import Callable
from typing import Any

from god.broker import Broker
from god.waits import Wait, Waits


class _Until(Wait):
    """Wait for a call that answers (True, value) once it can go on."""

    def __init__(self, call: Callable[[], tuple[bool, Any]], deadline: float) -> None:
        self.call = call
        self.deadline = deadline

    def attempt(self, late: bool) -> tuple[bool, Any]:
        ok, value = self.call()
        if ok or late:
            return True, (ok, value)
        return False, None


def _deadline(waits: Waits, block: bool, timeout: float | None) -> float:
    if not block:
        return waits.now()
    if timeout is None:
        return math.inf
    if timeout < 0:
        raise ValueError("'timeout' must be a non-negative number")
    return waits.now() + timeout


class TaskQueueView:
    """The task queue as ``queue.Queue``: a payload put here becomes a task.

    Tasks taken with ``get`` are delivered at most once: a tutorial client cannot ack.
    """

    def __init__(self, broker: Broker, waits: Waits) -> None:
        self._broker = broker
        self._waits = waits

    def put(self, item: Any, block: bool = True, timeout: float | None = None) -> None:
        """Queue a task; raises queue.Full if god stays full for the timeout."""
        wait = _Until(lambda: (self._broker.put_one(item), None), _deadline(self._waits, block, timeout))
        if not self._waits.call(wait)[0]:
            raise queue.Full

    def put_nowait(self, item: Any) -> None:
        """Queue a task or raise queue.Full at once."""
        self.put(item, block=False)

    def get(self, block: bool = True, timeout: float | None = None) -> Any:
        """Take a task's payload; raises queue.Empty if none comes within the timeout."""
        ok, payload = self._waits.call(_Until(self._broker.take_one, _deadline(self._waits, block, timeout)))
        if not ok:
            raise queue.Empty
        return payload

    def get_nowait(self) -> Any:
        """Take a task's payload or raise queue.Empty at once."""
        return self.get(block=False)

    def qsize(self) -> int:
        """Tasks waiting."""
        return self._broker.queue_sizes()[0]

    def empty(self) -> bool:
        """No task waiting."""
        return self.qsize() == 0

    def full(self) -> bool:
        """God is at capacity."""
        return not self._broker.has_room()


class ResultQueueView:
    """The result queue as ``queue.Queue``: a value put here is a result god prints and records
    (of the oldest task handed out through the task queue view without one); ``get``
    returns those, and the results of tasks put through the task queue view."""

    def __init__(self, broker: Broker, waits: Waits) -> None:
        self._broker = broker
        self._waits = waits

    def put(self, item: Any, block: bool = True, timeout: float | None = None) -> None:
        """Record a result value."""
        self._broker.put_value(item)

    def put_nowait(self, item: Any) -> None:
        """Record a result value."""
        self._broker.put_value(item)

    def get(self, block: bool = True, timeout: float | None = None) -> Any:
        """Take the next result; raises queue.Empty if none comes within the timeout."""
        ok, value = self._waits.call(_Until(self._broker.get_value, _deadline(self._waits, block, timeout)))
        if not ok:
            raise queue.Empty
        return value

    def get_nowait(self) -> Any:
        """Take the next result or raise queue.Empty at once."""
        return self.get(block=False)

    def qsize(self) -> int:
        """Results waiting for a reader."""
        return self._broker.queue_sizes()[1]

    def empty(self) -> bool:
        """No result waiting."""
        return self.qsize() == 0

    def full(self) -> bool:
        """Never: old unread results make way for new ones."""
        return False
