"""Running up to N task calls at once in a worker process (``consumer --concurrency N``).

Plain functions run on up to N threads; ``async def`` functions run as coroutines on an
event loop in a thread of its own (told apart per function, not configured). Each call
ends as ``(key, value, exception, monotonic end time)`` on ``done``, and a byte on a pipe
wakes the worker's main thread, which waits in ``wait``.

A coroutine that runs over its time is cancelled here. A thread cannot be stopped: the
worker's main thread notices it is overdue (see consumer/concurrent.py).
"""

from __future__ import annotations

import functools
import inspect
import os
import select
import threading
import time
from collections.abc import Callable, Coroutine
from queue import Empty, SimpleQueue
from typing import TYPE_CHECKING, Any

from consumer.output import current_call

if TYPE_CHECKING:
    import asyncio  # imported where a coroutine first runs: 40 ms of a worker's start otherwise

#: One call that ended: (key, value, exception or None, monotonic time it ended).
Ended = tuple[Any, Any, "BaseException | None", float]


def is_async(fn: Callable[..., Any]) -> bool:
    """Whether fn is an ``async def`` function (its calls are coroutines to await). Asked for
    each run of tasks, twice: remembered (inspect takes 1.5 us, a lone tiny task 40 in all)."""
    try:
        return _is_async(fn)
    except TypeError:  # a callable that cannot be a key
        return inspect.iscoroutinefunction(fn)


_is_async = functools.lru_cache(maxsize=1024)(inspect.iscoroutinefunction)


class Calls:
    """Up to ``n`` calls at once: threads for plain functions, coroutines on one event loop."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.done: SimpleQueue[Ended] = SimpleQueue()
        self._work: SimpleQueue[tuple[Any, Callable[..., Any], tuple[Any, ...], dict[str, Any]]] = SimpleQueue()
        self._threads = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._running: dict[asyncio.Task[Any], Any] = {}  # the tasks of coroutines, to their keys
        self._waiting: set[asyncio.Task[None]] = set()  # what waits for each (the loop keeps weak references)
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)
        self._poller = select.poll()
        self._poller.register(self._wake_r, select.POLLIN)

    def submit(self, key: Any, fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any],
               timeout: float | None) -> None:
        """Start fn(*args, **kwargs); its end comes on ``done`` under key."""
        if is_async(fn):
            loop = self._loop if self._loop is not None else self._start_loop()
            loop.call_soon_threadsafe(self._start_coroutine, key, fn, args, kwargs, timeout)
            return
        if self._threads < self.n:
            self._threads += 1
            threading.Thread(target=self._thread, name=f"task-{self._threads}", daemon=True).start()
        self._work.put((key, fn, args, kwargs))

    def wait(self, timeout: float, fd: int | None = None) -> None:
        """Wait up to timeout for a call to end (at once if one has), or for fd to be readable."""
        if self.done.empty():
            if fd is None:
                self._poller.poll(max(0, int(timeout * 1000)))
            else:
                self._poller.register(fd, select.POLLIN)
                try:
                    self._poller.poll(max(0, int(timeout * 1000)))
                finally:
                    self._poller.unregister(fd)
        try:
            while os.read(self._wake_r, 4096):
                pass
        except BlockingIOError:
            pass

    def ended(self) -> list[Ended]:
        """The calls that ended since the last look."""
        out = []
        try:
            while True:
                out.append(self.done.get_nowait())
        except Empty:
            return out

    def blocking(self) -> Any:
        """The key of the coroutine the event loop runs now, if any: read from another thread,
        it names a coroutine that holds the loop (one that never awaits)."""
        if self._loop is None:
            return None
        import asyncio

        task = asyncio.current_task(self._loop)
        return self._running.get(task) if task is not None else None

    def cancel(self, key: Any) -> None:
        """Cancel the coroutine that runs under key, if one does (from any thread)."""
        loop = self._loop
        if loop is None:
            return
        for task, k in list(self._running.items()):
            if k == key:
                loop.call_soon_threadsafe(task.cancel)

    def _end(self, key: Any, value: Any, exc: BaseException | None) -> None:
        self.done.put((key, value, exc, time.monotonic()))
        try:
            os.write(self._wake_w, b"\0")
        except BlockingIOError:
            pass  # the pipe is full of wake-ups already

    def _thread(self) -> None:
        while True:
            key, fn, args, kwargs = self._work.get()
            current_call.set(key)  # what it writes is its own (consumer/output.py)
            try:
                value = fn(*args, **kwargs)
            except BaseException as e:  # a task that calls sys.exit() fails; the worker goes on
                self._end(key, None, e)
            else:
                self._end(key, value, None)
            current_call.set(None)

    def _start_loop(self) -> asyncio.AbstractEventLoop:
        import asyncio

        loop = self._loop = asyncio.new_event_loop()
        threading.Thread(target=loop.run_forever, name="event-loop", daemon=True).start()
        return loop

    def _start_coroutine(self, key: Any, fn: Callable[..., Coroutine[Any, Any, Any]], args: tuple[Any, ...],
                         kwargs: dict[str, Any], timeout: float | None) -> None:
        assert self._loop is not None
        try:
            coroutine = fn(*args, **kwargs)
        except BaseException as e:  # (the call's arguments do not fit the function)
            self._end(key, None, e)
            return
        task = self._loop.create_task(_as_call(key, coroutine))
        self._running[task] = key
        task.add_done_callback(self._running.pop)
        waiter = self._loop.create_task(self._await(key, task, timeout))
        self._waiting.add(waiter)
        waiter.add_done_callback(self._waiting.discard)

    async def _await(self, key: Any, task: asyncio.Task[Any], timeout: float | None) -> None:
        import asyncio

        t0 = time.monotonic()
        try:
            value = await asyncio.wait_for(task, timeout)
        except BaseException as e:
            self._end(key, None, _timed_out(e, timeout, t0))
        else:
            self._end(key, value, None)


async def _as_call(key: Any, coroutine: Coroutine[Any, Any, Any]) -> Any:
    """A call's coroutine, in a task whose writes are its own (consumer/output.py)."""
    current_call.set(key)  # (a task's context is its own copy)
    return await coroutine


def run_coroutine(coroutine: Coroutine[Any, Any, Any], timeout: float | None, loop: asyncio.AbstractEventLoop) -> Any:
    """Run an ``async def`` function's coroutine to its end on loop (a worker that runs one task
    at a time)."""
    import asyncio

    t0 = time.monotonic()
    try:
        return loop.run_until_complete(asyncio.wait_for(coroutine, timeout))
    except asyncio.TimeoutError as e:
        raise _timed_out(e, timeout, t0) from None


def _timed_out(e: BaseException, timeout: float | None, t0: float) -> BaseException:
    """The exception a coroutine ended with: ours if wait_for cancelled it (not one it raised)."""
    import asyncio

    if isinstance(e, asyncio.TimeoutError) and timeout is not None and time.monotonic() - t0 >= timeout:
        return TimeoutError(f"timed out after {timeout:g}s (--task-timeout); it was cancelled")
    return e
