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
from multiprocessing.connection import Connection
from typing import Any

from consumer.tasks import TaskFunction, resolve_task
from shared.errors import ConfigError
from shared.log import setup_logging
from shared.records import (
    G_ATTEMPT, G_FIRST, G_HI, G_KEEP, G_LO, G_PAYLOADS, G_PRODUCER, G_QUEUE, G_TASK, Ack, Grant, Run, Value, failure,
    json_line, task_id,
)

_PLAIN = (str, int, float, bool, type(None))  # values that always pickle
FLUSH_S = 0.02  # seconds a finished result may wait to be sent with the next ones
POLL_EVERY = 64  # tasks run between looks for new messages while there is work in hand

# Messages from the consumer: ("tasks", [Grant with a list of payloads, ...]) or ("drain",).
# Messages to the consumer: ("results", [Ack, ...], tasks, seconds spent) and, last,
# ("unstarted", [Run, ...]).


class Acks:
    """Results of the tasks of one grant after another, cut into acks of runs."""

    def __init__(self, consumer: str) -> None:
        self.consumer = consumer
        self.done: list[Ack] = []  # closed runs
        self.count = 0  # tasks in them
        self._grant: Grant | None = None
        self._lo = 0
        self._lines: list[str] = []
        self._failed: list[int] = []
        self._values: list[Value] = []

    def add(self, g: Grant, seq: int, payload: Any, v: Value) -> None:
        """The result of task seq of grant g (each grant's tasks in order)."""
        if g is not self._grant:
            self.close()
            self._grant, self._lo = g, seq
        ok = v[0]
        self._lines.append(json_line(task_id(g[G_PRODUCER], seq), payload, ok, v[1], v[2], v[3], self.consumer,
                                     g[G_ATTEMPT], time.time(), g[G_QUEUE], g[G_TASK]))
        if not ok:
            self._failed.append(seq)
        if g[G_KEEP]:
            self._values.append(v)

    def close(self) -> None:
        """End the open run: it becomes an ack."""
        g = self._grant
        if g is None or not self._lines:
            return
        n = len(self._lines)
        values = pickle.dumps(self._values, pickle.HIGHEST_PROTOCOL) if g[G_KEEP] else None
        self.done.append((g[G_PRODUCER], g[G_FIRST], self._lo, self._lo + n, "\n".join(self._lines) + "\n",
                          tuple(self._failed), values))
        self.count += n
        self._lo += n
        self._lines, self._failed, self._values = [], [], []

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
    log_level: str, log_json: bool,
) -> None:
    """Run tasks until told to drain or until the consumer goes away.

    ``started`` is a shared counter incremented before each task, so the consumer knows
    which task was running if this process dies. ``busy_since`` holds the monotonic time
    the running task started (0 between tasks), for the consumer's ``--task-timeout``.
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
    draining = False
    while True:
        # Look for new messages when out of work, else every POLL_EVERY tasks or FLUSH_S
        # seconds: a poll is a system call, and at tiny tasks it cost more than the task
        # (py-spy and CPU time of the workers: 3.4 us a task with a poll each, 0.9 without).
        since_poll += 1
        due = since_poll >= POLL_EVERY or now - last_poll >= FLUSH_S
        if not todo or (due and tasks_in.poll()):
            since_poll, last_poll = 0, now
            out, n = acks.take()
            if n:
                results_out.send(("results", out, n, spent))
                spent, last_flush = 0.0, time.monotonic()
            try:
                msg = tasks_in.recv()
            except EOFError:
                return  # the consumer is gone; god serves our tasks again
            if msg[0] == "tasks":
                if not todo and msg[1]:
                    at = msg[1][0][G_LO]
                todo.extend(msg[1])
            else:
                draining = True
        elif due:
            since_poll, last_poll = 0, now
        if draining:
            out, n = acks.take()
            if n:
                results_out.send(("results", out, n, spent))
            results_out.send(("unstarted", unstarted(todo, at)))
            return
        if not todo:
            continue
        g = todo[0]
        seq = at
        payload = g[G_PAYLOADS][seq - g[G_LO]]
        at += 1
        if at >= g[G_HI]:
            todo.popleft()
            if todo:
                at = todo[0][G_LO]
        fn = fns.get(g[G_TASK])
        started.value += 1
        # One clock for both: monotonic is system-wide, so the consumer can compare busy_since.
        busy_since.value = t0 = time.monotonic()
        if isinstance(fn, str):
            v: Value = (False, None, fn, None)
        else:
            try:
                value = fn(payload)
            except BaseException as e:  # a task that calls sys.exit() fails; the worker goes on
                v = failure(e)
            else:  # a value must be able to reach whoever waits for it
                why = None if type(value) in _PLAIN else _unpicklable(value)
                v = (True, value, None, None) if why is None else failure(TypeError(why))
        busy_since.value = 0.0
        now = time.monotonic()
        spent += now - t0
        acks.add(g, seq, payload, v)
        if not todo or now - last_flush >= FLUSH_S:
            out, n = acks.take()
            results_out.send(("results", out, n, spent))
            spent, last_flush = 0.0, time.monotonic()
