"""A worker process: runs task functions on batches its consumer sends, returns results.

No network here: the consumer process talks to god, so a task that holds the CPU (or
the GIL) for minutes never makes its consumer miss a heartbeat.
"""

from __future__ import annotations

import pickle
import signal
import time
from collections import deque
from multiprocessing.connection import Connection
from typing import Any

from consumer.tasks import resolve_task
from shared.log import setup_logging
from shared.records import ID, PAYLOAD, Leased, ResultIn, failure

FLUSH_S = 0.02  # seconds a finished result may wait to be sent with the next ones
POLL_EVERY = 64  # tasks run between looks for new messages while there is work in hand

# Messages from the consumer: ("tasks", [Leased, ...]) or ("drain",).
# Messages to the consumer: ("results", [ResultIn, ...], seconds spent) and, last, ("unstarted", [id, ...]).


def _picklable(results: list[ResultIn]) -> list[ResultIn]:
    """Replace results whose value cannot be pickled by failures that say so."""
    out = []
    for r in results:
        try:
            pickle.dumps(r)
            out.append(r)
        except Exception as e:
            out.append(failure(r[ID], TypeError(f"the task's return value cannot be pickled: {e}")))
    return out


def _send_results(conn: Connection, results: list[ResultIn], spent: float) -> None:
    try:
        conn.send(("results", results, spent))
    except (pickle.PicklingError, TypeError, AttributeError):
        conn.send(("results", _picklable(results), spent))


def worker_main(
    task_spec: str, tasks_in: Connection, results_out: Connection, started: Any, busy_since: Any,
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
    fn = resolve_task(task_spec)
    todo: deque[Leased] = deque()
    results: list[ResultIn] = []
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
            if results:
                _send_results(results_out, results, spent)
                results, spent, last_flush = [], 0.0, time.monotonic()
            try:
                msg = tasks_in.recv()
            except EOFError:
                return  # the consumer is gone; god serves our tasks again
            if msg[0] == "tasks":
                todo.extend(msg[1])
            else:
                draining = True
        elif due:
            since_poll, last_poll = 0, now
        if draining:
            results_out.send(("unstarted", [t[ID] for t in todo]))
            return
        if not todo:
            continue
        task = todo.popleft()
        started.value += 1
        # One clock for both: monotonic is system-wide, so the consumer can compare busy_since.
        busy_since.value = t0 = time.monotonic()
        try:
            r: ResultIn = (task[ID], True, fn(task[PAYLOAD]), None, None)  # records.success, inlined: hot loop
        except BaseException as e:  # a task that calls sys.exit() fails; the worker goes on
            r = failure(task[ID], e)
        busy_since.value = 0.0
        now = time.monotonic()
        spent += now - t0
        results.append(r)
        if not todo or now - last_flush >= FLUSH_S:
            _send_results(results_out, results, spent)
            results, spent, last_flush = [], 0.0, time.monotonic()
