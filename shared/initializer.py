"""An Executor's initializer (``Executor(initializer=fn, initargs=(...))``): ``fn`` runs once in
each worker process before the first call of that executor there, and again in a worker that
replaces it (a new process); what it sets up (a model in a global) serves the later calls.

The executor's calls carry it: each function travels wrapped (``initialized``), by value, with
the initializer, its arguments and the executor's token; a worker unpickles a function once by
content and keeps it, and ``_RAN`` (per process) says whether that executor's initializer ran
here. One that raised fails every call of that executor in that worker, with one
``InitializerFailed`` that says so: it is not run again there, so a broken initializer is one
failure per call, never a loop.

Where to keep what it sets up: a function that travels by value (defined in ``__main__`` or a
module beside the program) brings its own copy of its module's globals, one per function
pickled (cloudpickle's rule), so a global the initializer sets is not the one another function
reads. ``state`` (``producer.worker_state``) is one namespace per worker process that every
function sees, however it travels; globals of a module the consumers import by name work too.
"""

from __future__ import annotations

import functools
import inspect
import os
import threading
import types
from collections.abc import Callable
from typing import Any

state = types.SimpleNamespace()  # what initializers set up, for the calls of this worker process
_RAN: dict[str, BaseException | None] = {}  # an executor's token -> what its initializer raised here (None: ran)
_LOCK = threading.Lock()  # (a worker's threads, with --concurrency: one runs it, the others wait)


class InitializerFailed(RuntimeError):
    """The executor's initializer raised in the worker that was to run this call."""


def initialized(fn: Callable[..., Any], initializer: Callable[..., Any], initargs: tuple[Any, ...],
                token: str, what: str = "the executor's initializer") -> Callable[..., Any]:
    """fn, running the initializer first in each process (once per token); an ``async def``
    fn stays one (consumers await it). ``what``: the initializer, as its failure names it."""
    if inspect.iscoroutinefunction(fn):
        async def call_async(*args: Any, **kwargs: Any) -> Any:
            ensure(token, initializer, initargs, what)
            return await fn(*args, **kwargs)
        return functools.wraps(fn)(call_async)

    def call(*args: Any, **kwargs: Any) -> Any:
        ensure(token, initializer, initargs, what)
        return fn(*args, **kwargs)
    return functools.wraps(fn)(call)


def ensure(token: str, initializer: Callable[..., Any], initargs: tuple[Any, ...],
           what: str = "the executor's initializer") -> None:
    """Run the initializer of token (an executor's, or the consumer's --init), if it has not
    run in this process.

    Raises:
        InitializerFailed: it raised here (now or before).
    """
    failed = _RAN.get(token, ...)
    if failed is ...:
        with _LOCK:
            if token not in _RAN:
                try:
                    initializer(*initargs)
                    _RAN[token] = None
                except Exception as e:
                    _RAN[token] = e
            failed = _RAN[token]
    if failed is not None:
        name = f"{getattr(initializer, '__module__', '?')}:{getattr(initializer, '__qualname__', initializer)}"
        raise InitializerFailed(f"{what} {name} raised in this worker (pid {os.getpid()}), so nothing it sets up "
                                f"for runs here: {type(failed).__name__}: {failed}")
