"""Wire records: task ids, puts, grants and acks as plain tuples, and the Result god records.

Task ids are ``PRODUCER/SEQ``: the producer's name (it has no ``/``) and the producer's own
sequence number, counting from 1. A producer's tasks are put in batches of consecutive
numbers, so god names a batch by (producer, first) and a run of its tasks by [lo, hi):
god's hot path never builds a Python object per task.

Batches cross the network as plain tuples: pickle handles those in C, about 20x faster per
item than frozen dataclasses (measured: 0.06 us vs 1.1 us to load one record). Each tuple
type has its own index names below, and code reads fields only through them.
"""

from __future__ import annotations

import hashlib
import json
import json.encoder
import re
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Final, overload

DEFAULT_QUEUE = "default"
#: Bytes of a put's payloads, as one blob, god takes at most (god --max-payload); also the most
#: an ack's lines and values may take. Until god says its own limit, clients use this one.
MAX_PAYLOAD = 16 * 2**20
#: Bytes a request may hold beyond --max-payload: the record around a put's payloads or an
#: ack's results (ids a put waits for: up to MAX_AFTER of them). God closes a connection that
#: announces a bigger request, before reading it.
FRAME_OVERHEAD = 4 * 2**20
QUEUE_RULE = "[A-Za-z0-9_.-], 1 to 64 characters"
_QUEUE_RX = re.compile(r"[A-Za-z0-9_.-]{1,64}")
PRIORITIES = range(10)  # 0..9, higher first

#: How a batch's failed tasks are tried again: (retries, backoff seconds, longest backoff
#: seconds, exception class names to retry or None for any).
RetryPolicy = tuple[int, float, float, "tuple[str, ...] | None"]
RP_RETRIES: Final = 0
RP_BACKOFF: Final = 1
RP_MAX_BACKOFF: Final = 2
RP_ON: Final = 3
MAX_BACKOFF_S = 300.0  # the default longest wait before a retry

#: A producer's batch as it puts it: (first seq, count, pickled list of payloads, queue,
#: task function or None for the consumer's own, priority, retry policy or None, the Unix
#: time before which it is not served or None, the ids of the tasks whose results its tasks
#: wait for (god/rules/graph.py) or None, the digests of the large values its calls name or None,
#: what each of its tasks needs of a consumer (shared/resources.py) or None).
Put = tuple[int, int, bytes, str, "str | None", int, "RetryPolicy | None", "float | None", "tuple[str, ...] | None",
            "tuple[str, ...] | None", "tuple[tuple[str, float], ...] | None"]
PUT_FIRST: Final = 0
PUT_N: Final = 1
PUT_PAYLOADS: Final = 2
PUT_QUEUE: Final = 3
PUT_TASK: Final = 4
PUT_PRIORITY: Final = 5
PUT_RETRY: Final = 6
PUT_DUE: Final = 7
PUT_AFTER: Final = 8
#: A put's 10th field (a god before 0.4 took 9): the digests of the large values its calls
#: name (shared/values.py), or None; god keeps them while the batch has tasks.
PUT_VALUES: Final = 9
#: A put's 11th field (a god before 0.5 took 10): what each task needs of a consumer's
#: resources, as (name, amount) pairs (shared/resources.py), or None.
PUT_RESOURCES: Final = 10
MAX_AFTER = 100_000  # task ids one put may wait for

#: A run of a batch leased to a consumer: (producer, batch's first seq, lo, hi, attempt,
#: payloads of [lo, hi) as a pickled list or a list, task function or None, queue, keep, alone,
#: origin). ``keep``: someone waits for the values (a producer's results(), a tutorial reader),
#: so the ack carries them. ``alone``: its tasks were running, among others, in a worker that
#: died; each is to run with no other beside it, so that a second death names its cause.
#: ``origin``: when the tasks are dead letters served again, the ids they had, one per task
#: (their results lines say ``requeued_from``), else None; a god before 0.2 sent no origin.
Grant = tuple[str, int, int, int, int, "bytes | list[Any]", "str | None", str, bool, bool, "list[str] | None",
              "tuple[str, ...] | None"]
G_PRODUCER: Final = 0
G_FIRST: Final = 1
G_LO: Final = 2
G_HI: Final = 3
G_ATTEMPT: Final = 4
G_PAYLOADS: Final = 5
G_TASK: Final = 6
G_QUEUE: Final = 7
G_KEEP: Final = 8
G_ALONE: Final = 9
G_ORIGIN: Final = 10
#: A grant's 12th field (a god before 0.5 sent 11): on a consumer that has GPUs, the GPU ids
#: its one task may use (shared/resources.py; () for none), which its worker makes the only
#: ones the task sees; None on a consumer without GPUs, or for tasks that said nothing of
#: resources (they see what the worker saw as it started).
G_GPUS: Final = 11

#: A task that failed, in an ack, as data: (seq, the exception's class name, seconds after
#: which it asked to be tried again (it raised consumer.Retry) or None, the error and the
#: traceback as its results line has them, its payload's JSON as its line shows it). God
#: reads a failure from these fields, never from its line. (A consumer before 0.2 sent the
#: first three only: ``failure_fields`` gives the rest as None.)
Failed = tuple[int, str, "float | None", "str | None", "str | None", "str | None"]
F_SEQ: Final = 0
F_NAME: Final = 1
F_AFTER: Final = 2
F_ERROR: Final = 3
F_TRACEBACK: Final = 4
F_PAYLOAD: Final = 5

#: Results of a run of tasks of one grant: (producer, batch's first seq, lo, hi, their JSON
#: lines joined by newlines (with a final one), those that failed, values or None).
#: ``values`` (only when the grant said keep) is a pickled list of Value, one per task.
Ack = tuple[str, int, int, int, str, tuple[Failed, ...], "bytes | None"]
A_PRODUCER: Final = 0
A_FIRST: Final = 1
A_LO: Final = 2
A_HI: Final = 3
A_LINES: Final = 4
A_FAILED: Final = 5
A_VALUES: Final = 6

def grant_gpus(g: Grant) -> tuple[str, ...] | None:
    """The GPU ids a grant's task may use (``G_GPUS``)."""
    return g[G_GPUS] if len(g) > G_GPUS else None


def grant_origin(g: Grant) -> Callable[[int], str | None] | None:
    """The ids a grant's tasks had as dead letters, by seq, when they are ones served again."""
    origin = g[G_ORIGIN] if len(g) > G_ORIGIN else None
    if origin is None:
        return None
    lo = g[G_LO]
    return lambda seq: origin[seq - lo]


def failure_fields(f: Failed) -> tuple[str | None, str | None, str | None]:
    """A failure's error (its class name if the consumer sent no more), traceback and payload JSON."""
    if len(f) > F_PAYLOAD:
        return f[F_ERROR], f[F_TRACEBACK], f[F_PAYLOAD]
    return f[F_NAME], None, None


#: A run of tasks of one batch, handed back: (producer, batch's first seq, lo, hi).
Run = tuple[str, int, int, int]
R_PRODUCER: Final = 0
R_FIRST: Final = 1
R_LO: Final = 2
R_HI: Final = 3

#: What a task gave: (ok, value, error, traceback[, packed[, names]]). ``packed`` (a call's,
#: when True): the value is the returned object's, or the raised exception's, cloudpickle
#: (shared/calls.py): bytes to god, loaded only by the program and the calls that use it.
#: ``names``: the digests of the large values that pickle names (shared/values.py), which
#: god holds apart and keeps while the result is kept.
Value = tuple[Any, ...]
V_OK: Final = 0
V_VALUE: Final = 1
V_ERROR: Final = 2
V_TRACEBACK: Final = 3
V_PACKED: Final = 4
V_NAMES: Final = 5


def is_packed(v: Value) -> bool:
    """Whether a Value's value is a pickle to load where it is used (a call's)."""
    return len(v) > V_PACKED and bool(v[V_PACKED])


def value_names(v: Value) -> tuple[str, ...]:
    """The digests of the large values a Value's pickle names (none: an empty tuple)."""
    if len(v) > V_NAMES and type(v[V_NAMES]) is tuple:
        return v[V_NAMES]
    return ()

_dumps = json.JSONEncoder(default=repr, ensure_ascii=False).encode
_quote: Callable[[str], str] = json.encoder.encode_basestring  # C, as json.dumps uses


def task_id(producer: str, seq: int) -> str:
    """The id of a producer's seq-th task."""
    return f"{producer}/{seq}"


class TaskIds(Sequence[str]):
    """The ids of a run of a producer's tasks, made when asked for (a put of a million tasks
    need not make a million strings)."""

    __slots__ = ("producer", "first", "n")

    def __init__(self, producer: str, first: int, n: int) -> None:
        self.producer, self.first, self.n = producer, first, n

    def __len__(self) -> int:
        return self.n

    @overload
    def __getitem__(self, i: int) -> str: ...

    @overload
    def __getitem__(self, i: slice) -> list[str]: ...

    def __getitem__(self, i: int | slice) -> str | list[str]:
        seqs = range(self.first, self.first + self.n)
        if isinstance(i, slice):
            return [task_id(self.producer, seq) for seq in seqs[i]]
        return task_id(self.producer, seqs[i])

    def __eq__(self, other: object) -> bool:
        return list(self) == (list(other) if isinstance(other, Sequence) else other)

    def __repr__(self) -> str:
        return f"TaskIds({self.producer!r}, {self.first}, {self.n})"


def split_id(tid: str) -> tuple[str, int]:
    """(producer, seq) of a task id.

    Raises:
        ValueError: not of the form PRODUCER/SEQ.
    """
    producer, sep, seq = tid.rpartition("/")
    if not sep or not producer or not seq.isdigit():
        raise ValueError(f"task id {tid!r} is not PRODUCER/SEQ")
    return producer, int(seq)


def check_queue(name: str) -> str:
    """The queue name, if it follows the rule.

    Raises:
        ValueError: naming the rule.
    """
    if not isinstance(name, str) or not _QUEUE_RX.fullmatch(name):
        raise ValueError(f"queue name {name!r} is not allowed: use {QUEUE_RULE}")
    return name


def check_retry(policy: RetryPolicy | None) -> RetryPolicy | None:
    """The retry policy, if it makes sense.

    Raises:
        ValueError: naming what does not.
    """
    if policy is None:
        return None
    retries, backoff, longest, on = policy
    if type(retries) is not int or retries < 0:
        raise ValueError(f"retries {retries!r} is not a whole number from 0")
    for what, seconds in (("retry backoff", backoff), ("longest retry backoff", longest)):
        if not isinstance(seconds, (int, float)) or not 0 <= seconds < float("inf"):
            raise ValueError(f"{what} {seconds!r} is not a number of seconds from 0")
    if on is not None and (not isinstance(on, tuple) or not all(isinstance(n, str) and n for n in on)):
        raise ValueError(f"retry-on {on!r} is not a list of exception class names")
    return policy


def check_after(after: tuple[str, ...] | None) -> tuple[str, ...] | None:
    """The ids of the tasks a put waits for (None: none), if each is a task id and they are
    not too many.

    Raises:
        ValueError: naming what is wrong.
    """
    if after is None:
        return None
    if not isinstance(after, tuple) or not after:
        raise ValueError(f"after {after!r} is not a tuple of task ids")
    if len(after) > MAX_AFTER:
        raise ValueError(f"after: {len(after):,} task ids, over the {MAX_AFTER:,} one put may wait for")
    for tid in after:
        try:
            split_id(tid)
        except (ValueError, AttributeError, TypeError):
            raise ValueError(f"after: {tid!r} is not a task id (PRODUCER/SEQ, as put_many and god task show)") from None
    return after


def check_rate(rate: float | None) -> float | None:
    """A rate limit in tasks a second (None: none), if it is a number above 0.

    Raises:
        ValueError: naming what is wrong.
    """
    if rate is None:
        return None
    if type(rate) not in (int, float) or not 0 < rate < float("inf"):
        raise ValueError(f"rate limit {rate!r} is not a number of tasks a second above 0")
    return float(rate)


def check_priority(priority: int) -> int:
    """The priority, if it is a whole number from 0 to 9.

    Raises:
        ValueError: naming the range.
    """
    if type(priority) is not int or priority not in PRIORITIES:
        raise ValueError(f"priority {priority!r} is not a whole number from 0 to 9")
    return priority


def json_line(tid: str | None, payload: Any, ok: bool, value: Any, error: str | None, tb: str | None,
              consumer: str, attempts: int, at: float, queue: str = DEFAULT_QUEUE, task: str | None = None,
              payload_max: int | None = None, *, shown: str | None = None, requeued_from: str | None = None) -> str:
    """A result as god records it, one JSON line (no newline); what ``Result.to_json`` gives.
    ``payload_max``: as ``payload_json``; ``shown``: the payload's JSON when the line shows
    other than the payload itself (a call's, shared/calls.py); ``requeued_from``: the id the
    task had as a dead letter, when it is one served again.

    Every result goes through here, so fields are formatted one by one, strings and
    integers without the general encoder (0.8 us a result against 2 us for json.dumps of a
    dict, and 40 us through a Result and dataclasses.asdict).
    """
    if shown is None:
        shown = payload_json(payload, payload_max)
    return (f'{{"id": {_string(tid)}, "payload": {shown}, "ok": {"true" if ok else "false"}, '
            f'"value": {json_value(value)}, "error": {_string(error)}, "traceback": {_string(tb)}, '
            f'"consumer": {_string(consumer)}, "attempts": {attempts}, "time": {at!r}, '
            f'"queue": {_string(queue)}, "task": {_string(task)}'
            + (f', "requeued_from": {_string(requeued_from)}}}' if requeued_from is not None else "}"))


def ok_lines(producer: str, consumer: str, attempts: int, queue: str, task: str | None,
             shown: Callable[[Any], str] | None = None, payload_max: int | None = None,
             origin: Callable[[int], str | None] | None = None) -> Callable[[int, Any, Any, str], str]:
    """``json_line`` for the successes of one grant, the time given as its repr: what is the
    same for all of them is formatted once (0.5 us a result against 1.3 us). ``shown``: the
    JSON a line shows of a payload, when not the payload itself (a call's, shared/calls.py);
    ``payload_max``: as ``payload_json``; ``origin``: the id a task of a requeued dead letter
    had, by seq (``grant_origin``)."""
    if origin is not None:  # dead letters served again: rare, each line made whole
        def requeued_line(seq: int, payload: Any, v: Any, at: str) -> str:
            return json_line(f"{producer}/{seq}", payload, True, v, None, None, consumer, attempts, float(at), queue,
                             task, payload_max, shown=shown(payload) if shown is not None else None,
                             requeued_from=origin(seq))

        return requeued_line
    head = '{"id": ' + _quote(f"{producer}/")[:-1]
    tail = (f'"error": null, "traceback": null, "consumer": {_string(consumer)}, "attempts": {attempts}, "time": ')
    end = f', "queue": {_string(queue)}, "task": {_string(task)}}}'
    value = json_value

    def line(seq: int, payload: Any, v: Any, at: str) -> str:
        return f'{head}{seq}", "payload": {value(payload)}, "ok": true, "value": {value(v)}, {tail}{at}{end}'

    def capped_line(seq: int, payload: Any, v: Any, at: str) -> str:
        text = payload_json(payload, payload_max)
        return f'{head}{seq}", "payload": {text}, "ok": true, "value": {value(v)}, {tail}{at}{end}'

    if shown is None:
        return line if payload_max is None else capped_line

    def shown_line(seq: int, payload: Any, v: Any, at: str) -> str:
        return f'{head}{seq}", "payload": {shown(payload)}, "ok": true, "value": {value(v)}, {tail}{at}{end}'

    return shown_line


def payload_json(payload: Any, payload_max: int | None) -> str:
    """A payload as a results line shows it: its JSON (``json_value``), or, when that would be
    over payload_max characters (god --results-payload-max; None: no limit), what it was in
    brief: ``{"large": KIND, "bytes": SIZE, "sha256": HEX}``, KIND ``bytes`` (the size and
    digest of the bytes themselves), ``str`` (of its UTF-8) or ``json`` (of the JSON it would
    have been). Bytes are not written out to be measured: as JSON 1 MiB took 3.9 ms, before
    the worker could send the result on."""
    kind = type(payload)
    if kind is int or payload_max is None:  # (ints: the most payloads, and far within any limit)
        return json_value(payload)
    raw = kind is bytes or kind is bytearray or kind is str
    if not (raw and len(payload) > payload_max):  # else its JSON is longer still: not made
        text = json_value(payload)
        if len(text) <= payload_max:
            return text
        if not raw:
            return _large("json", text.encode())
    if kind is str:
        return _large("str", payload.encode("utf-8", "surrogatepass"))
    return _large("bytes", payload)


def _large(kind: str, data: bytes | bytearray) -> str:
    return f'{{"large": "{kind}", "bytes": {len(data)}, "sha256": "{hashlib.sha256(data).hexdigest()}"}}'



def _string(s: str | None) -> str:
    return "null" if s is None else _quote(s)


def json_value(v: Any) -> str:
    """A value as results lines write it: JSON, or its repr as a JSON string when it has none."""
    kind = type(v)
    if kind is str:
        return _quote(v)
    if kind is int:
        return str(v)
    if kind is float and v - v == 0:  # finite: json writes floats as repr does
        return repr(v)
    return _dumps(v)


#: The error of a cancelled task's result.
CANCELLED = "cancelled by an operator (python -m god cancel)"
#: Why a task its program cancelled (producer.Executor) has no result.
CANCELLED_BY_PROGRAM = "cancelled by its program (Future.cancel or Executor.shutdown(cancel_futures=True))"


def failure(exc: BaseException) -> Value:
    """What a task function that raised ``exc`` gave: type, message and traceback."""
    tb = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    return (False, None, describe(exc), tb)


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
    queue: str = DEFAULT_QUEUE
    task: str | None = None

    @classmethod
    def made(cls, tid: str | None, payload: Any, v: Value, *, consumer: str, attempts: int, queue: str = DEFAULT_QUEUE,
             task: str | None = None, at: float | None = None) -> Result:
        """The record of a task that gave v."""
        return cls(tid, payload, v[V_OK], v[V_VALUE], v[V_ERROR], v[V_TRACEBACK], consumer, attempts,
                   time.time() if at is None else at, queue, task)

    @classmethod
    def from_json(cls, line: str) -> Result:
        """Read back a results line (values JSON could not carry come back as their repr)."""
        d = json.loads(line)
        return cls(d.get("id"), d.get("payload"), bool(d.get("ok")), d.get("value"), d.get("error"),
                   d.get("traceback"), d.get("consumer") or "", int(d.get("attempts") or 1),
                   float(d.get("time") or 0.0), d.get("queue") or DEFAULT_QUEUE, d.get("task"))

    def to_json(self) -> str:
        """One JSON line; values JSON cannot carry are written as their repr."""
        return json_line(self.id, self.payload, self.ok, self.value, self.error, self.traceback, self.consumer,
                         self.attempts, self.time, self.queue, self.task)

    def line(self) -> str:
        """What a person reads: the tutorial's ``3411 * 3411 = 11634921``, or why it failed."""
        if self.ok:
            return str(self.value)
        return f"task {self.id} failed ({self.payload!r}): {self.error}"
