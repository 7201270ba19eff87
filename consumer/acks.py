"""Results in a worker: a task call's outcome as a result, and results cut into acks of runs.

The worker formats each result's JSON line itself (it has the id, payload, attempt and
time), so god only appends lines; an ack carries a run's lines, its failures, and the values
when the task's producer waits for them.
"""

from __future__ import annotations

import functools
import json
import pickle
import time
from collections.abc import Callable
from typing import Any

from consumer.callers import Caller
from consumer.functions import Functions
from consumer.tasks import Retry
from shared import items, records
from shared.calls import is_call
from shared.records import (
    A_LINES, A_VALUES, F_SEQ, G_ATTEMPT, G_FIRST, G_KEEP, G_PRODUCER, G_QUEUE, G_TASK, MAX_PAYLOAD, V_ERROR, V_OK,
    V_TRACEBACK, Ack, Failed, Grant, Value, failure, grant_origin, json_line, ok_lines, payload_json, task_id,
    value_names,
)

FRAME_SLACK = 1 << 20  # characters of lines past which their UTF-8 is measured, not guessed at 4 a character

PLAIN = (str, int, float, bool, type(None))  # values that always pickle
CANCELLED: Value = (False, None, records.CANCELLED, None)


def unpicklable(value: Any) -> str | None:
    """Why the value cannot be pickled; None if it can."""
    try:
        pickle.dumps(value, pickle.HIGHEST_PROTOCOL)
        return None
    except Exception as e:
        return f"the task's return value cannot be pickled: {e}"


def ack_size(lines: str, values: bytes | None) -> int:
    """The bytes an ack's lines and values take in a request, at most (4 a character: UTF-8)."""
    n = len(lines)
    if n * 4 > FRAME_SLACK:
        n = len(lines.encode("utf-8", "surrogatepass"))
    return n + (len(values) if values is not None else 0)


def in_frames(acks: list[Ack], limit: int) -> list[list[Ack]]:
    """Acks in groups whose sizes add up to at most limit each (one ack over it alone)."""
    groups: list[list[Ack]] = [[]]
    room = limit
    for a in acks:
        size = ack_size(a[A_LINES], a[A_VALUES])
        if groups[-1] and size > room:
            groups.append([])
            room = limit
        groups[-1].append(a)
        room -= size
    return groups


def never(value: Any) -> None:
    """No reason: a call's value is checked as it is packed (Caller.pack), with cloudpickle."""
    return None


def outcome(value: Any, exc: BaseException | None, check: Callable[[Any], str | None] = unpicklable
            ) -> tuple[Value, BaseException | None]:
    """What a task call gave, as a result: its value, or its failure (a value ``check`` finds
    unpicklable is one)."""
    if exc is not None:
        return failure(exc), exc
    why = None if type(value) in PLAIN else check(value)
    if why is not None:
        e = TypeError(why)
        return failure(e), e
    return (True, value, None, None), None


class Acks:
    """Results of the tasks of one grant after another, cut into acks of runs.

    The worker's loop appends the lines of successes to ``lines`` itself, with ``ok_line``
    and the time in ``stamp`` (the hot path); everything else goes through ``add``.
    """

    def __init__(self, consumer: str, functions: Functions,
                 payload_max: Callable[[], int | None] = lambda: None,
                 frame_max: Callable[[], int] = lambda: MAX_PAYLOAD) -> None:
        """``payload_max``: god's --results-payload-max; ``frame_max``: its --max-payload, the
        most an ack's lines and values may take (god says both when the worker connects)."""
        self.consumer = consumer
        self.functions = functions
        self.payload_max = payload_max
        self.frame_max = frame_max
        self.caller: Caller | None = None  # the open run's, when its tasks are calls
        self.check: Callable[[Any], str | None] = unpicklable  # why a value cannot go back (None: it can)
        self.done: list[Ack] = []  # closed runs
        self.count = 0  # tasks in them
        self.grant: Grant | None = None  # the open run's grant
        self.ok_line: Callable[[int, Any, Any, str], str] = lambda seq, payload, v, at: ""
        self.stamp = repr(time.time())  # the time written in result lines
        self.lines: list[str] = []
        self._shown_max: int | None = None  # the open run's payload_max
        self._lo = 0
        self._failed: list[Failed] = []
        self._values: list[Value] = []
        self.origin: Callable[[int], str | None] | None = None  # the open run's ids as dead letters (requeued)

    def begin(self, g: Grant, seq: int) -> None:
        """Results of grant g follow, from seq on, in order (a gap starts a new run)."""
        if g is self.grant and seq == self._lo + len(self.lines):
            return
        self.close()
        self.grant, self._lo = g, seq
        task = g[G_TASK]
        caller = self.functions.get(task) if is_call(task) else None
        self.caller = caller if isinstance(caller, Caller) else None
        self.check = never if self.caller is not None else unpicklable
        self._shown_max = payload_max = self.payload_max()
        shown = functools.partial(self.caller.json, payload_max=payload_max) if self.caller is not None else None
        self.origin = grant_origin(g)
        self.ok_line = ok_lines(g[G_PRODUCER], self.consumer, g[G_ATTEMPT], g[G_QUEUE], task, shown, payload_max,
                                self.origin)

    def add(self, g: Grant, seq: int, payload: Any, v: Value, exc: BaseException | None = None) -> None:
        """The result of task seq of grant g; exc: the exception a failed task raised, if any."""
        self.begin(g, seq)
        value = v[1]
        if self.caller is not None and g[G_KEEP]:
            v, exc = self.caller.pack(v, exc)
            if value_names(v):  # (its line names its large values, as god holds them)
                value = self.caller.shown(v)
        if v[V_OK]:
            self.lines.append(self.ok_line(seq, payload, value, self.stamp))
        else:
            shown = (self.caller.json(payload, self._shown_max) if self.caller is not None
                     else payload_json(payload, self._shown_max))
            self.lines.append(json_line(task_id(g[G_PRODUCER], seq), payload, False, None, v[V_ERROR],
                                        v[V_TRACEBACK], self.consumer, g[G_ATTEMPT], float(self.stamp), g[G_QUEUE],
                                        g[G_TASK], shown=shown,
                                        requeued_from=self.origin(seq) if self.origin is not None else None))
            self._failed.append((seq, type(exc).__name__ if exc is not None else "Error",
                                 exc.after if isinstance(exc, Retry) else None, v[V_ERROR], v[V_TRACEBACK], shown))
        if g[G_KEEP]:
            self._values.append(v)

    def close(self) -> None:
        """End the open run: it becomes an ack (several, if it is over what one request to god
        may hold: ``frame_max``)."""
        g = self.grant
        if g is None or not self.lines:
            return
        n = len(self.lines)
        self._emit(g, self._lo, self.lines, self._failed, self._values if g[G_KEEP] else None)
        self.count += n
        self._lo += n
        self.lines, self._failed, self._values = [], [], []

    def _emit(self, g: Grant, lo: int, lines: list[str], failed: list[Failed], values: list[Value] | None) -> None:
        """Results of tasks lo.. of grant g as acks of at most ``frame_max`` bytes: halved until
        they fit; a task whose result alone is over fails, saying so."""
        text = "\n".join(lines) + "\n"
        blob = items.pack(values) if values is not None else None
        limit = self.frame_max()
        size = ack_size(text, blob)
        if size > limit and len(lines) > 1:
            k, cut = len(lines) // 2, lo + len(lines) // 2
            self._emit(g, lo, lines[:k], [f for f in failed if f[F_SEQ] < cut], values[:k] if values is not None else None)
            self._emit(g, cut, lines[k:], [f for f in failed if f[F_SEQ] >= cut], values[k:] if values is not None else None)
            return
        if size > limit:
            error = (f"ValueError: its result is {size:,} bytes, over god's --max-payload of {limit:,}: return "
                     "a path to the data instead")
            line = json.loads(text)
            shown = json.dumps(line.get("payload"), ensure_ascii=False)
            line.update(ok=False, value=None, error=error, traceback=None)
            text = json.dumps(line, ensure_ascii=False) + "\n"
            failed = [(lo, "ValueError", None, error, None, shown)]
            blob = items.pack([(False, None, error, None)]) if values is not None else None
        self.done.append((g[G_PRODUCER], g[G_FIRST], lo, lo + len(lines), text, tuple(failed), blob))

    def take(self) -> tuple[list[Ack], int]:
        """The acks so far, and how many tasks they hold."""
        self.close()
        out, n = self.done, self.count
        self.done, self.count = [], 0
        return out, n
