"""Wire records: tasks and results as plain tuples on the wire, and the Result god records.

Batches cross the network as lists of plain tuples: pickle handles those in C, about 20x
faster per item than frozen dataclasses (measured: 0.06 us vs 1.1 us to load one record),
and every task crosses the wire three times. Code reads them through the index names below.
"""

from __future__ import annotations

import json
import json.encoder
import time
import traceback
from dataclasses import dataclass
from collections.abc import Callable
from typing import Any, Final

#: A task as a producer puts it: (task_id, payload).
TaskIn = tuple[str, Any]
#: A task as a consumer leases it: (task_id, payload, attempt), attempt counting from 1.
Leased = tuple[str, Any, int]
#: A result as a consumer acks it: (task_id, ok, value, error, traceback).
ResultIn = tuple[str, bool, Any, "str | None", "str | None"]

_dumps = json.JSONEncoder(default=repr, ensure_ascii=False).encode
_quote: Callable[[str], str] = json.encoder.encode_basestring  # C, as json.dumps uses

# Final: mypy then reads them as literals and keeps each tuple field's own type.
ID: Final = 0
PAYLOAD: Final = 1
ATTEMPT: Final = 2
OK: Final = 1
VALUE: Final = 2
ERROR: Final = 3
TRACEBACK: Final = 4


def json_line(tid: str | None, payload: Any, ok: bool, value: Any, error: str | None, tb: str | None,
              consumer: str, attempts: int, at: float) -> str:
    """A result as god records it, one JSON line (no newline); what ``Result.to_json`` gives.

    God writes one for every result, so this is its hottest code: fields are formatted
    one by one, strings and integers without the general encoder (0.8 us a result against
    2 us for json.dumps of a dict, and 40 us through a Result and dataclasses.asdict).
    """
    return (f'{{"id": {_string(tid)}, "payload": {_value(payload)}, "ok": {"true" if ok else "false"}, '
            f'"value": {_value(value)}, "error": {_string(error)}, "traceback": {_string(tb)}, '
            f'"consumer": {_string(consumer)}, "attempts": {attempts}, "time": {at!r}}}')


def _string(s: str | None) -> str:
    return "null" if s is None else _quote(s)


def _value(v: Any) -> str:
    kind = type(v)
    if kind is str:
        return _quote(v)
    if kind is int:
        return str(v)
    if kind is float and v - v == 0:  # finite: json writes floats as repr does
        return repr(v)
    return _dumps(v)


def success(task_id: str, value: Any) -> ResultIn:
    """The wire result of a task function that returned ``value``."""
    return (task_id, True, value, None, None)


def failure(task_id: str, exc: BaseException) -> ResultIn:
    """The wire result of a task function that raised ``exc``: type, message and traceback."""
    tb = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    return (task_id, False, None, describe(exc), tb)


def describe(exc: BaseException) -> str:
    """One line naming an exception: ``ZeroDivisionError: division by zero``."""
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


@dataclass(frozen=True, slots=True)
class Result:
    """A result as god records it: one JSON line in the results file, one line on screen."""

    id: str | None
    payload: Any
    ok: bool
    value: Any = None
    error: str | None = None
    traceback: str | None = None
    consumer: str = ""
    attempts: int = 1
    time: float = 0.0

    @classmethod
    def from_wire(cls, r: ResultIn, *, payload: Any, consumer: str, attempts: int) -> Result:
        """Build the record god keeps from an acked wire result."""
        return cls(r[ID], payload, r[OK], r[VALUE], r[ERROR], r[TRACEBACK], consumer, attempts, time.time())

    def to_json(self) -> str:
        """One JSON line; values JSON cannot carry are written as their repr."""
        return json_line(self.id, self.payload, self.ok, self.value, self.error, self.traceback, self.consumer,
                         self.attempts, self.time)

    def line(self) -> str:
        """What a person reads: the tutorial's ``3411 * 3411 = 11634921``, or why it failed."""
        if self.ok:
            return str(self.value)
        return f"task {self.id} failed ({self.payload!r}): {self.error}"
