"""Results in a worker: a task call's outcome as a result, and results cut into acks of runs.

The worker formats each result's JSON line itself (it has the id, payload, attempt and
time), so god only appends lines; an ack carries a run's lines, its failures, and the values
when the task's producer waits for them.
"""

from __future__ import annotations

import pickle
import time
from collections.abc import Callable
from typing import Any

from consumer.tasks import Retry
from shared.records import (
    G_ATTEMPT, G_FIRST, G_KEEP, G_PRODUCER, G_QUEUE, G_TASK, V_ERROR, V_OK, V_TRACEBACK, V_VALUE, Ack, Failed,
    Grant, Value, failure, json_line, ok_lines, task_id,
)

PLAIN = (str, int, float, bool, type(None))  # values that always pickle
CANCELLED: Value = (False, None, "cancelled by an operator (python -m god cancel)", None)


def unpicklable(value: Any) -> str | None:
    """Why the value cannot be pickled; None if it can."""
    try:
        pickle.dumps(value, pickle.HIGHEST_PROTOCOL)
        return None
    except Exception as e:
        return f"the task's return value cannot be pickled: {e}"


def outcome(value: Any, exc: BaseException | None) -> tuple[Value, BaseException | None]:
    """What a task call gave, as a result: its value, or its failure (an unpicklable value is one)."""
    if exc is not None:
        return failure(exc), exc
    why = None if type(value) in PLAIN else unpicklable(value)
    if why is not None:
        e = TypeError(why)
        return failure(e), e
    return (True, value, None, None), None


class Acks:
    """Results of the tasks of one grant after another, cut into acks of runs.

    The worker's loop appends the lines of successes to ``lines`` itself, with ``ok_line``
    and the time in ``stamp`` (the hot path); everything else goes through ``add``.
    """

    def __init__(self, consumer: str) -> None:
        self.consumer = consumer
        self.done: list[Ack] = []  # closed runs
        self.count = 0  # tasks in them
        self.grant: Grant | None = None  # the open run's grant
        self.ok_line: Callable[[int, Any, Any, str], str] = lambda seq, payload, v, at: ""
        self.stamp = repr(time.time())  # the time written in result lines
        self.lines: list[str] = []
        self._lo = 0
        self._failed: list[Failed] = []
        self._values: list[Value] = []

    def begin(self, g: Grant, seq: int) -> None:
        """Results of grant g follow, from seq on, in order (a gap starts a new run)."""
        if g is self.grant and seq == self._lo + len(self.lines):
            return
        self.close()
        self.grant, self._lo = g, seq
        self.ok_line = ok_lines(g[G_PRODUCER], self.consumer, g[G_ATTEMPT], g[G_QUEUE], g[G_TASK])

    def add(self, g: Grant, seq: int, payload: Any, v: Value, exc: BaseException | None = None) -> None:
        """The result of task seq of grant g; exc: the exception a failed task raised, if any."""
        self.begin(g, seq)
        if v[V_OK]:
            self.lines.append(self.ok_line(seq, payload, v[V_VALUE], self.stamp))
        else:
            self.lines.append(json_line(task_id(g[G_PRODUCER], seq), payload, False, v[V_VALUE], v[V_ERROR],
                                        v[V_TRACEBACK], self.consumer, g[G_ATTEMPT], float(self.stamp), g[G_QUEUE],
                                        g[G_TASK]))
            self._failed.append((seq, type(exc).__name__ if exc is not None else "Error",
                                 exc.after if isinstance(exc, Retry) else None))
        if g[G_KEEP]:
            self._values.append(v)

    def close(self) -> None:
        """End the open run: it becomes an ack."""
        g = self.grant
        if g is None or not self.lines:
            return
        n = len(self.lines)
        values = pickle.dumps(self._values, pickle.HIGHEST_PROTOCOL) if g[G_KEEP] else None
        self.done.append((g[G_PRODUCER], g[G_FIRST], self._lo, self._lo + n, "\n".join(self.lines) + "\n",
                          tuple(self._failed), values))
        self.count += n
        self._lo += n
        self.lines, self._failed, self._values = [], [], []

    def take(self) -> tuple[list[Ack], int]:
        """The acks so far, and how many tasks they hold."""
        self.close()
        out, n = self.done, self.count
        self.done, self.count = [], 0
        return out, n
