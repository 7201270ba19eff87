"""Queue-shaped views of the broker for clients written for the tutorial (``pq``/``cq``)."""

from __future__ import annotations

import queue
from typing import Any

from god.broker import Broker


def _timeout(block: bool, timeout: float | None) -> float | None:
    if not block:
        return 0.0
    if timeout is not None and timeout < 0:
        raise ValueError("'timeout' must be a non-negative number")
    return timeout


class TaskQueueView:
    """The task queue as ``queue.Queue``: a payload put here becomes a task.

    Tasks taken with ``get`` are delivered at most once: a tutorial client cannot ack.
    """

    def __init__(self, broker: Broker) -> None:
        self._broker = broker

    def put(self, item: Any, block: bool = True, timeout: float | None = None) -> None:
        """Queue a task; raises queue.Full if god stays full for the timeout."""
        if not self._broker.put_one(item, _timeout(block, timeout)):
            raise queue.Full

    def put_nowait(self, item: Any) -> None:
        """Queue a task or raise queue.Full at once."""
        self.put(item, block=False)

    def get(self, block: bool = True, timeout: float | None = None) -> Any:
        """Take a task's payload; raises queue.Empty if none comes within the timeout."""
        ok, payload = self._broker.take_one(_timeout(block, timeout))
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
        """The queue is at capacity."""
        return self.qsize() >= self._broker.capacity


class ResultQueueView:
    """The result queue as ``queue.Queue``: values put here are results god prints and records;
    ``get`` returns them, and the results of tasks put through the task queue view."""

    def __init__(self, broker: Broker) -> None:
        self._broker = broker

    def put(self, item: Any, block: bool = True, timeout: float | None = None) -> None:
        """Record a result value (it has no task id)."""
        self._broker.put_value(item)

    def put_nowait(self, item: Any) -> None:
        """Record a result value."""
        self._broker.put_value(item)

    def get(self, block: bool = True, timeout: float | None = None) -> Any:
        """Take the next result; raises queue.Empty if none comes within the timeout."""
        ok, value = self._broker.get_value(_timeout(block, timeout))
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
