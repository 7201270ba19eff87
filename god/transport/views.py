"""The tutorials' queue views of the default queue, and what they stand on.

``pq``/``cq``, ``get_task_queue``/``get_result_queue`` and ``getTaskQueue``/``getResultQueue``
all give these. Their calls run in the stock manager server's threads; those that wait go
through god's one implementation of waiting calls (god/transport/waits.py) and block until answered.
A tutorial put is a producer's put of one task (``Api.put_many``), under the name
``tutorial:RUN``, so its ids are unique to this god's run (a restarted god must not take
them for tasks of the last run, which its journal knows are done).
"""

from __future__ import annotations

import math

import queue
import threading
from collections import deque
from collections.abc import Callable
from typing import Any

from god.rules.broker import Broker
from god.rules.handout import TUTORIAL
from god.store.batches import Batch
from god.transport.api import Api
from god.transport.waits import Wait, Waits
from shared import items
from shared.records import DEFAULT_QUEUE, V_ERROR, V_OK, V_VALUE, Put

KEEP = 100_000  # values kept for readers of the result queue, and tasks handed out waiting for one
FETCH = 1000  # runs of results taken from the mailbox at a time


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


class Tutorial:
    """The tutorial clients' side of god: tasks put and handed out one at a time, and values.

    Each task handed out waits for a value on the result queue view, oldest first: a value put
    there is that task's result (exact with one tutorial worker). What the result view hands
    to readers: those values, and the results of tasks put through the task view.
    """

    def __init__(self, broker: Broker, api: Api, waits: Waits) -> None:
        self.broker, self.api, self.waits = broker, api, waits
        self.name = f"{TUTORIAL}:{broker.state.run}"
        broker.state.mailboxes.open(self.name)  # results of its tasks, whoever runs them
        self._lock = threading.Lock()  # guards what is handed out and the values
        self._put_lock = threading.Lock()  # one put at a time: numbers rise in the order god takes them
        self._seq = 0
        self._handed: deque[tuple[Batch, int, Any]] = deque(maxlen=KEEP)
        self._values: deque[Any] = deque(maxlen=KEEP)
        self._confirmed = 0

    def deadline(self, block: bool, timeout: float | None) -> float:
        if not block:
            return self.waits.now()
        if timeout is None:
            return math.inf
        if timeout < 0:
            raise ValueError("'timeout' must be a non-negative number")
        return self.waits.now() + timeout

    def put(self, payload: Any, deadline: float) -> bool:
        """Put one task, as a producer would; False if god stayed full until the deadline."""
        with self._put_lock:
            put: Put = (self._seq + 1, 1, items.dump([payload]), DEFAULT_QUEUE, None, 0, None, None, None, None, None)  # (data)
            reply = self.api.put_many(self.name, put, max(0.0, deadline - self.waits.now()))
            taken = bool(self.waits.call(reply) if isinstance(reply, Wait) else reply)
            if taken:
                self._seq += 1
            return taken

    def take(self) -> tuple[bool, Any]:
        """Hand out the next waiting task's payload, at most once."""
        task = self.broker.tutorial.hand_out(DEFAULT_QUEUE)
        if task is None:
            return False, None
        with self._lock:
            self._handed.append(task)
        return True, task[2]

    def put_value(self, value: Any) -> None:
        """A value on the result queue view: the result of the oldest task handed out without one."""
        with self._lock:
            task = self._handed.popleft() if self._handed else None
            self._values.append(value)
        # Our producer's task: its producer gets it too. The tutorial's own: readers have it now.
        self.broker.tutorial.record_value(value, task, post=task is not None and task[0].producer != self.name)

    def take_value(self) -> tuple[bool, Any]:
        """The next value for a reader of the result queue view."""
        with self._lock:
            self._fetch()
            if not self._values:
                return False, None
            return True, self._values.popleft()

    def values_waiting(self) -> int:
        with self._lock:
            self._fetch()
            return len(self._values)

    def _fetch(self) -> None:
        """Results of the tutorial's tasks that consumers ran, from its mailbox (lock held)."""
        for number, item in self.broker.state.mailboxes.take(self.name, self._confirmed, FETCH):
            self._confirmed = number
            loaded = items.load(item[2])
            for i in range(items.count(loaded)):
                data, v = items.item(loaded, i)  # (one god does not load: its pickle, bytes)
                self._values.append(v if not data else v[V_VALUE] if v[V_OK] else v[V_ERROR])


class TaskQueueView:
    """The task queue as ``queue.Queue``: a payload put here becomes a task.

    Tasks taken with ``get`` are delivered at most once: a tutorial client cannot ack.
    """

    def __init__(self, tutorial: Tutorial) -> None:
        self._t = tutorial

    def put(self, item: Any, block: bool = True, timeout: float | None = None) -> None:
        """Queue a task; raises queue.Full if god stays full for the timeout."""
        if not self._t.put(item, self._t.deadline(block, timeout)):
            raise queue.Full

    def put_nowait(self, item: Any) -> None:
        """Queue a task or raise queue.Full at once."""
        self.put(item, block=False)

    def get(self, block: bool = True, timeout: float | None = None) -> Any:
        """Take a task's payload; raises queue.Empty if none comes within the timeout."""
        ok, payload = self._t.waits.call(_Until(self._t.take, self._t.deadline(block, timeout)))
        if not ok:
            raise queue.Empty
        return payload

    def get_nowait(self) -> Any:
        """Take a task's payload or raise queue.Empty at once."""
        return self.get(block=False)

    def qsize(self) -> int:
        """Tasks waiting."""
        return self._t.broker.tutorial.waiting(DEFAULT_QUEUE)

    def empty(self) -> bool:
        """No task waiting."""
        return self.qsize() == 0

    def full(self) -> bool:
        """God is at capacity."""
        return not self._t.broker.intake.has_room()


class ResultQueueView:
    """The result queue as ``queue.Queue``: a value put here is a result god prints and records;
    ``get`` returns those, and the results of tasks put through the task queue view."""

    def __init__(self, tutorial: Tutorial) -> None:
        self._t = tutorial

    def put(self, item: Any, block: bool = True, timeout: float | None = None) -> None:
        """Record a result value."""
        self._t.put_value(item)

    def put_nowait(self, item: Any) -> None:
        """Record a result value."""
        self._t.put_value(item)

    def get(self, block: bool = True, timeout: float | None = None) -> Any:
        """Take the next result; raises queue.Empty if none comes within the timeout."""
        ok, value = self._t.waits.call(_Until(self._t.take_value, self._t.deadline(block, timeout)))
        if not ok:
            raise queue.Empty
        return value

    def get_nowait(self) -> Any:
        """Take the next result or raise queue.Empty at once."""
        return self.get(block=False)

    def qsize(self) -> int:
        """Results waiting for a reader."""
        return self._t.values_waiting()

    def empty(self) -> bool:
        """No result waiting."""
        return self.qsize() == 0

    def full(self) -> bool:
        """Never: old unread results make way for new ones."""
        return False
