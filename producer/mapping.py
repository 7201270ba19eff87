"""``Executor.map``: the items put in batches as its window has room, the results in input order.

A map makes no Future per item: its window holds the seqs of its tasks in flight, in input
order, and the results the executor's reader thread gives it (``Executor._resolve``) until
they are yielded. At most ``buffersize`` tasks are in flight, so an endless iterable runs in
bounded memory at both ends.
"""

from __future__ import annotations

import concurrent.futures as cf
import itertools
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from producer.producer import PutOptions
from shared.calls import Packed, call_task, outcome
from shared.errors import GodError
from shared.records import CANCELLED_BY_PROGRAM, Value, describe, task_id

if TYPE_CHECKING:
    from producer.executor import Executor, TaskFuture

MAP_WINDOW = 16_384  # tasks of a map in flight at most, unless its buffersize says otherwise
MAP_BATCH = 4_096  # tasks of a map put at a time, at most


class Window:
    """A map's tasks in flight, in input order, and the results come for them."""

    def __init__(self) -> None:
        self.order: deque[int] = deque()  # seqs not yielded yet, in order
        self.values: dict[int, tuple[Value, str]] = {}  # results come, not yielded yet: (value, consumer)
        self.exhausted = False  # the input iterables are used up
        self.closed = False  # its iterator ended: results that come are dropped


class Map:
    """One map of an executor: made, it checks its arguments and puts its first items."""

    def __init__(self, ex: Executor, o: PutOptions, fn: Callable[..., Any], iterables: tuple[Iterable[Any], ...],
                 timeout: float | None, chunksize: int, buffersize: int | None) -> None:
        if type(chunksize) is not int or chunksize < 1:
            raise ValueError("chunksize must be >= 1")
        if buffersize is not None and (type(buffersize) is not int or buffersize < 1):
            raise ValueError("buffersize must be None or > 0")
        self.ex = ex
        self.end = None if timeout is None else time.monotonic() + timeout
        with ex._put_lock:
            if ex._shutdown:
                raise RuntimeError("cannot submit calls after the executor's shutdown")
            self.name, self.ref = ex._pickler.function(fn)
        self.o = replace(o, task=call_task(self.name))
        self.items = zip(*iterables)
        self.window = Window()
        self.size = buffersize or MAP_WINDOW
        self.batch = max(1, min(MAP_BATCH, self.size // 4))
        self._fill(self.size)

    def results(self) -> Iterator[Any]:
        """The calls' values in input order; a call's exception at its item."""
        window, ready = self.window, deque[tuple[Value, str]]()
        try:
            while window.order or ready:
                if not ready:
                    self._take_ready(ready)
                if not window.exhausted and self.size - len(window.order) >= self.batch:
                    self._fill(self.size - len(window.order))
                v, consumer = ready.popleft()
                ok, value = outcome(v, consumer)
                if not ok:
                    raise value
                yield value
        finally:
            window.closed = True
            if window.order:
                self._abandon()

    def _fill(self, room: int) -> None:
        """Put up to room more of the items, in batches."""
        ex, window, name, ref = self.ex, self.window, self.name, self.ref
        while room > 0 and not window.exhausted:
            chunk = list(itertools.islice(self.items, min(room, MAP_BATCH)))
            if not chunk:
                window.exhausted = True
                return
            room -= len(chunk)
            with ex._put_lock:
                if ex._shutdown:
                    raise RuntimeError("cannot submit calls after the executor's shutdown")
                run: list[tuple[Any, ...]] = []  # items that wait for nothing go in one put
                for item in chunk:
                    args, kwargs, after, failed = ex._awaited(item, {})
                    if failed is None and not after:
                        run.append(ex._arguments(name, ref, args, kwargs))
                        continue
                    self._put_run(run)
                    run = []
                    if failed is not None:
                        with ex._cond:
                            key = next(ex._local)
                            window.order.append(key)
                            window.values[key] = (self._failure(failed), "")
                    else:
                        window.order.extend(ex._put([ex._arguments(name, ref, args, kwargs)], self.o, after, window,
                                                    lambda i: f"the call of {name} on an item"))
                self._put_run(run)

    def _put_run(self, payloads: list[tuple[Any, ...]]) -> None:
        if payloads:
            name = self.name
            self.window.order.extend(self.ex._put(payloads, self.o, (), self.window,
                                                  lambda i: f"the call of {name} on item {i + 1} of a batch"))

    def _failure(self, f: TaskFuture) -> Value:
        """What an item that waits for a failed (or cancelled) future gives: its exception."""
        exc = cf.CancelledError() if f.cancelled() else f.exception()
        assert exc is not None
        try:
            packed = Packed(self.ex._pickler.dumps(exc))
        except Exception:
            return False, None, describe(exc), None
        return False, packed, describe(exc), None

    def _take_ready(self, ready: deque[tuple[Value, str]]) -> None:
        """Wait for the next result in order; take it and those ready after it."""
        ex, window = self.ex, self.window
        with ex._cond:
            first = window.order[0]
            while first not in window.values:
                left = None if self.end is None else self.end - time.monotonic()
                if left is not None and left <= 0:
                    raise cf.TimeoutError(f"a result of the map was not there within its timeout (task "
                                          f"{task_id(ex.name, first)})")
                ex._cond.wait(left)
            values, order = window.values, window.order
            while order and order[0] in values:
                ready.append(values.pop(order.popleft()))

    def _abandon(self) -> None:
        """The iterator ended early (an exception, a timeout, a break): cancel at god what of
        the map has not started."""
        ex, window = self.ex, self.window
        ids = [task_id(ex.name, seq) for seq in window.order if seq > 0]
        window.order.clear()
        try:
            with ex._put_lock:
                ex._producer.flush()
                ex._producer.client.cancel(ids, started=False, why=CANCELLED_BY_PROGRAM)
        except (GodError, ValueError) as e:  # its tasks run on: their results are dropped
            ex._log.warning("could not cancel the {} tasks left of a map: {}", len(ids), e)
