"""A worker process: runs task functions on the runs of tasks its consumer sends, returns acks.

No network here: the consumer process talks to god, so a task that holds the CPU (or
the GIL) for minutes never makes its consumer miss a heartbeat. The worker formats each
result's JSON line itself (it has the id, payload, attempt and time), so god only appends
lines, and acks a run of a grant at a time.
"""

from __future__ import annotations

import pickle
import signal
import time
from collections import deque
from collections.abc import Callable
from multiprocessing.connection import Connection
from typing import Any

from consumer.tasks import Retry, TaskFunction, resolve_task
from shared.errors import ConfigError
from shared.log import setup_logging
from shared.records import (
    G_ATTEMPT, G_FIRST, G_HI, G_KEEP, G_LO, G_PAYLOADS, G_PRODUCER, G_QUEUE, G_TASK, V_ERROR, V_OK, V_TRACEBACK,
    V_VALUE, Ack, Failed, Grant, Run, Value, failure, json_line, ok_lines, task_id,
)

_PLAIN = (str, int, float, bool, type(None))  # values that always pickle
FLUSH_S = 0.02  # seconds a finished result may wait to be sent with the next ones
POLL_EVERY = 64  # tasks run between looks for new messages while there is work in hand

# Messages from the consumer: ("tasks", [Grant with a list of payloads, ...]) or ("drain",).
# Messages to the consumer: ("results", [Ack, ...], tasks, seconds spent) and, last,
# ("unstarted", [Run, ...]).


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
        """Results of grant g follow, from seq on (each grant's tasks in order)."""
        if g is self.grant:
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


def _unpicklable(value: Any) -> str | None:
    """Why the value cannot be pickled; None if it can."""
    try:
        pickle.dumps(value, pickle.HIGHEST_PROTOCOL)
        return None
    except Exception as e:
        return f"the task's return value cannot be pickled: {e}"


def unstarted(todo: deque[Grant], at: int) -> list[Run]:
    """The runs of tasks not started: of the first grant from seq at, then every other one."""
    runs: list[Run] = []
    for i, g in enumerate(todo):
        lo = at if i == 0 else g[G_LO]
        if lo < g[G_HI]:
            runs.append((g[G_PRODUCER], g[G_FIRST], lo, g[G_HI]))
    return runs


class Functions:
    """Task functions by name, imported on first use and kept; the consumer's own for None."""

    def __init__(self, default: str, consumer: str) -> None:
        self.consumer = consumer
        self._fns: dict[str | None, TaskFunction | str] = {None: resolve_task(default)}

    def get(self, name: str | None) -> TaskFunction | str:
        """The function, or why it cannot be had (a message naming it and this consumer)."""
        fn = self._fns.get(name)
        if fn is None:
            assert name is not None
            try:
                fn = resolve_task(name)
            except ConfigError as e:
                fn = f"task function {name!r} cannot be used on consumer {self.consumer}: " \
                     f"{str(e).removeprefix(f'--task {name!r}: ')}"
            self._fns[name] = fn
        return fn


def worker_main(
    task_spec: str, consumer: str, tasks_in: Connection, results_out: Connection, started: Any, busy_since: Any,
    timed: bool, log_level: str, log_json: bool,
) -> None:
    """Run tasks until told to drain or until the consumer goes away.

    ``started`` is a shared counter incremented before each task, so the consumer knows
    which task was running if this process dies. With ``timed`` (a --task-timeout),
    ``busy_since`` holds the monotonic time the running task started (0 between tasks).
    """
    # Ctrl-C reaches the whole process group; the consumer decides how to stop, not us.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    setup_logging("consumer", level=log_level, json=log_json)
    fns = Functions(task_spec, consumer)
    todo: deque[Grant] = deque()
    acks = Acks(consumer)
    at = 0  # the next seq of todo[0]
    spent = 0.0
    last_flush = last_poll = now = time.monotonic()
    since_poll = 0
    monotonic = time.monotonic
    while True:
        # Look for new messages when out of work, else every POLL_EVERY tasks or FLUSH_S
        # seconds: a poll is a system call, and at tiny tasks it cost more than the task
        # (py-spy and CPU time of the workers: 3.4 us a task with a poll each, 0.9 without).
        if not todo or ((since_poll >= POLL_EVERY or now - last_poll >= FLUSH_S) and tasks_in.poll()):
            since_poll, last_poll = 0, now
            out, n = acks.take()
            if n:
                results_out.send(("results", out, n, spent))
                spent, last_flush = 0.0, monotonic()
            try:
                msg = tasks_in.recv()
            except EOFError:
                return  # the consumer is gone; god serves our tasks again
            if msg[0] != "tasks":  # drain: say which were not started, and end
                results_out.send(("unstarted", unstarted(todo, at)))
                return
            if not todo and msg[1]:
                at = msg[1][0][G_LO]
            todo.extend(msg[1])
            continue
        if since_poll >= POLL_EVERY:
            since_poll, last_poll = 0, now
        # Run the tasks of the first grant, in one loop: up to the next look for messages,
        # or until results have waited FLUSH_S.
        g = todo[0]
        fn = fns.get(g[G_TASK])
        payloads, lo, hi = g[G_PAYLOADS], g[G_LO], g[G_HI]
        seq, stop = at, min(hi, at + POLL_EVERY - since_poll)
        acks.begin(g, seq)
        acks.stamp = stamp = repr(time.time())  # a time per round of tasks: at most FLUSH_S off
        add, lines, ok_line, fast = acks.add, acks.lines, acks.ok_line, not g[G_KEEP]
        t0 = monotonic()
        while seq < stop:
            payload = payloads[seq - lo]
            started.value += 1
            if timed:  # one clock for both: monotonic is system-wide, so the consumer can compare
                busy_since.value = t0
            v: Value | None
            exc: BaseException | None = None
            if isinstance(fn, str):
                v = (False, None, fn, None)
            else:
                try:
                    value = fn(payload)
                except BaseException as e:  # a task that calls sys.exit() fails; the worker goes on
                    v, exc = failure(e), e
                else:  # a value must be able to reach whoever waits for it
                    why = None if type(value) in _PLAIN else _unpicklable(value)
                    if why is not None:
                        exc = TypeError(why)
                        v = failure(exc)
                    elif fast:  # the usual case: its line, without a tuple or a call
                        lines.append(ok_line(seq, payload, value, stamp))
                        v = None
                    else:
                        v = (True, value, None, None)
            if timed:
                busy_since.value = 0.0
            if v is not None:
                add(g, seq, payload, v, exc)
            seq += 1
            now = monotonic()
            spent += now - t0
            t0 = now
            if now - last_flush >= FLUSH_S:
                break
        since_poll += seq - at
        at = seq
        if at >= hi:
            todo.popleft()
            if todo:
                at = todo[0][G_LO]
        if not todo or now - last_flush >= FLUSH_S:
            out, n = acks.take()
            results_out.send(("results", out, n, spent))
            spent, last_flush = 0.0, monotonic()
