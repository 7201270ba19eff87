"""An executor's futures, and the table of what waits for each of its tasks' results.

The bottom of the executor: a call's ``TaskFuture``, a map's ``Window`` of tasks in flight,
and ``Targets``, which the executor's results thread fills (``resolve``) and the program's
threads wait on. Nothing here talks to god.
"""

from __future__ import annotations

import concurrent.futures as cf
import itertools
import threading
import time
from collections import deque
from collections.abc import Callable, Generator
from typing import Any

from shared.calls import RemoteError, outcome
from shared.records import CANCELLED_BY_PROGRAM, V_ERROR, V_OK, V_VALUE, Value


class TaskFuture(cf.Future):  # type: ignore[type-arg]
    """A standard Future of a task at god, with its id; ``cancel`` asks god. It may be an
    argument of another call (``submit(f, future)``, or in a list, tuple or dict argument):
    that call waits at god for its result, and gets its value in its place. (A future that
    failed before the call is made fails the call at once, in the program: its id is None.)"""

    def __init__(self, owner: object, tid: str | None, cancel: Callable[[TaskFuture], bool]) -> None:
        """Args:
            owner: what made it (its executor's sender): only that one's calls may take it.
            cancel: asks god to cancel the task; True if it did.
        """
        super().__init__()
        self.task_id = tid
        self.owner = owner
        self._cancel_at_god = cancel
        self.notified = False  # its waiters were told of its cancel (once only; Targets' lock)
        self.label = "task"  # its function's name, which marks its lines (producer/output.py)
        #: What the task last said of how far it is (``producer.report``): (done, total or None).
        self.progress: tuple[float, float | None] | None = None

    def cancel(self) -> bool:
        """Cancel the task at god if it still waits there: True; False once a consumer runs it
        or it has its result (as ``concurrent.futures`` does)."""
        if self.done() or self.task_id is None:
            return self.cancelled()
        return self._cancel_at_god(self)

    def __await__(self) -> Generator[Any, None, Any]:
        """``await future`` in a coroutine: its result (or its exception raised), on the loop
        that awaits (asyncio.wrap_future: the loop is not blocked meanwhile)."""
        import asyncio  # (programs that never await do not load it)

        return asyncio.wrap_future(self).__await__()


class Window:
    """A map's tasks in flight, in input order, and the results come for them."""

    def __init__(self) -> None:
        self.order: deque[int] = deque()  # seqs not yielded yet, in order
        self.values: dict[int, tuple[Value, str]] = {}  # results come, not yielded yet: (value, consumer)
        self.exhausted = False  # the input iterables are used up
        self.closed = False  # its iterator ended: results that come are dropped
        self.label = "task"  # its function's name, which marks its lines (producer/output.py)
        self.progress: dict[int, tuple[float, float | None]] = {}  # what its running tasks reported, by seq
        self.on_report: Callable[[], None] | None = None  # called when one reports
        self.result_bytes: float | None = None  # a result's size, about (the largest lately): None before the first

    def seen(self, v: Value) -> None:
        """A result came (Targets' lock held): how large results are, about. Bytes and strings
        by their length (a call's value comes as its pickle), anything else as small: what a
        map of large results holds at once follows it (producer/mapping.py)."""
        value = v[V_VALUE]
        size = float(len(value)) if type(value) in (bytes, str, bytearray) else 64.0
        last = self.result_bytes
        self.result_bytes = size if last is None or size > last else last * 0.99 + size * 0.01


class Targets:
    """Per seq of the executor's tasks, what waits for its result: a future, or a map's window."""

    def __init__(self) -> None:
        self.cond = threading.Condition()  # the targets, and each window's values
        self._targets: dict[int, TaskFuture | Window] = {}
        self._local = itertools.count(-1, -1)  # keys of a map's items that failed here (what they waited for had)
        self._closing = False  # the results thread ends once nothing is outstanding

    def register(self, seqs: range, target: TaskFuture | Window) -> None:
        with self.cond:
            for seq in seqs:
                self._targets[seq] = target
            self.cond.notify_all()

    def unregister(self, seqs: range) -> None:
        with self.cond:
            for seq in seqs:
                self._targets.pop(seq, None)

    def failed_here(self, window: Window, v: Value) -> None:
        """A map's item that failed in the program (what it waited for had): its place in order."""
        with self.cond:
            key = next(self._local)
            window.order.append(key)
            window.values[key] = (v, "")

    def label(self, seq: int) -> str:
        """The name that marks a task's lines: its function's."""
        with self.cond:
            return getattr(self._targets.get(seq), "label", "task")

    def reported(self, seq: int, progress: tuple[float, float | None]) -> None:
        """A task's progress, as it reported it: on its future, or its map's window."""
        with self.cond:
            target = self._targets.get(seq)
            if type(target) is Window:
                target.progress[seq] = progress
            elif target is not None:
                target.progress = progress
        if type(target) is Window and target.on_report is not None:
            target.on_report()

    def outstanding(self) -> list[int]:
        """The seqs whose results have not come."""
        return list(self._targets)

    def wait_outstanding(self) -> bool:
        """Wait until a result is outstanding (True), or the executor closes with none (False)."""
        with self.cond:
            while not self._targets and not self._closing:
                self.cond.wait()
            return bool(self._targets)

    def close(self) -> None:
        """No more calls: the results thread ends once nothing is outstanding."""
        with self.cond:
            self._closing = True
            self.cond.notify_all()

    def take_ready(self, window: Window, ready: deque[tuple[Value, str]], end: float | None,
                   late: Callable[[int], str]) -> None:
        """Wait for the window's next result in order; take it and those ready after it.

        Raises:
            TimeoutError: not there by end (``late(seq)`` says which).
        """
        with self.cond:
            first = window.order[0]
            while first not in window.values:
                left = None if end is None else end - time.monotonic()
                if left is not None and left <= 0:
                    raise cf.TimeoutError(late(first))
                self.cond.wait(left)
            values, order = window.values, window.order
            while order and order[0] in values:
                ready.append(values.pop(order.popleft()))

    def resolve(self, lo: int, values: list[Value], consumer: str) -> None:
        """Results for seqs from lo on: to their futures and windows."""
        futures: list[tuple[TaskFuture, Value]] = []
        sized: Window | None = None  # (a run's results are alike: the first of each window's tells their size)
        with self.cond:
            pop = self._targets.pop
            for seq, v in enumerate(values, lo):
                target = pop(seq, None)
                if target is None:
                    continue  # a result had come already (god restarted), or the call's put failed
                if type(target) is Window:
                    if target.progress:
                        target.progress.pop(seq, None)
                    if not target.closed:
                        target.values[seq] = (v, consumer)
                        if target is not sized:
                            target.seen(v)
                            sized = target
                else:
                    futures.append((target, v))  # type: ignore[arg-type]
            self.cond.notify_all()
        for future, v in futures:  # outside the lock: done callbacks may call the executor
            if not v[V_OK] and v[V_VALUE] is None and (v[V_ERROR] or "").endswith(CANCELLED_BY_PROGRAM):
                self.cancelled(future)
                continue
            ok, value = outcome(v, consumer)
            try:
                future.set_result(value) if ok else future.set_exception(value)
            except cf.InvalidStateError:
                pass  # cancelled meanwhile

    def cancelled(self, future: TaskFuture) -> bool:
        """Mark a future cancelled and tell whoever waits for it (``as_completed``, ``wait``)."""
        if not cf.Future.cancel(future):
            return False  # its result came first
        with self.cond:
            first, future.notified = not future.notified, True
        if first:
            future.set_running_or_notify_cancel()
        return True

    def fail_all(self, error: str) -> None:
        """Nothing more will come: every outstanding call fails with error."""
        with self.cond:
            targets, self._targets = self._targets, {}
            for seq, t in targets.items():
                if type(t) is Window:
                    t.values[seq] = ((False, None, error, None), "")
            self.cond.notify_all()
        for t in targets.values():
            if type(t) is TaskFuture:
                try:
                    t.set_exception(RemoteError(error))
                except cf.InvalidStateError:
                    pass
