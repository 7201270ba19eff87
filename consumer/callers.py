"""Running calls (``Executor.submit`` tasks, shared/calls.py): their functions loaded once and
kept by content, their arguments unpacked, what they give packed for the program.

A function that travels by value is unpickled the first time its bytes come and kept under
them, so a map of a million items unpickles it once per worker; one by name is imported
once, as ``--task`` functions are. A function or arguments that cannot be loaded here fail
that task alone, with a message naming the function and this consumer; the worker goes on.
"""

from __future__ import annotations

import types
from collections.abc import Callable
from typing import Any

from consumer import values as values_here
from consumer.calls import is_async
from consumer.policy import Policy, Unloadable
from shared.calls import (
    PYTHON_MINOR, Awaited, CallPickler, OtherPython, RemoteError, call_json, function_name, is_plain,
    load_function, packed, packed_named, plain, replaced, value_of,
)
from shared.records import V_ERROR, V_OK, V_TRACEBACK, V_VALUE, Value, describe, failure
from shared import values
from shared.log import logger
from shared.values import names_values

SKIP_APART = 100  # results not looked at for large values after a look that found none, or god refused them
KEEP_FUNCTIONS = 1024  # functions kept by content; past that the cache starts again (closures of many values)

#: A call ready to start: the function and its arguments.
Target = tuple[Callable[..., Any], tuple[Any, ...], dict[str, Any]]


#: Functions by name or by content, or why they cannot be had: one for all of a worker's calls.
Loaded = dict["str | bytes", "Callable[..., Any] | str"]


class Caller:
    """Runs the calls of one task name (``module:function()``); ``functions`` finds a function
    by name (consumer/functions.py), ``loaded`` keeps what was loaded."""

    def __init__(self, task: str, *, functions: Callable[[str], Callable[..., Any] | str], loaded: Loaded,
                 consumer: str, policy: Policy) -> None:
        self.task = task
        self.policy = policy
        self.name = function_name(task)
        self._by_name = functions
        self.consumer = consumer
        self._fns = loaded
        self._json = call_json(task)
        self._last: tuple[Any, tuple[tuple[Any, ...], dict[str, Any]]] | None = None  # pickled arguments, loaded
        self._pickler: CallPickler | None = None
        self._extractor: values.Extractor | None = None  # (results with large values: shared/values.py)
        self._skip = 0  # large pickles not looked at for large values (the last one looked at had none)
        self._unsent = 0  # results whose large values go in their acks (god did not take the last ones)
        #: Runs a coroutine to its end (a worker that runs one task at a time sets it); None:
        #: the caller of ``target`` runs what it gets.
        self.awaits: Callable[[Any], Any] | None = None

    def __call__(self, payload: Any) -> Any:
        """Make the call (a TaskFunction)."""
        if type(payload) is Unloadable:
            raise payload
        fn = self._fns.get(payload[0])
        if fn is None or isinstance(fn, str) or len(payload) != 3 or type(payload[1]) is not tuple:
            fn, args, kwargs = self.target(payload)
        else:  # the usual case, inline: a function loaded before, arguments as they are
            args, kwargs = payload[1], payload[2]
        out = fn(*args, **kwargs)
        if self.awaits is not None and type(out) is types.CoroutineType:
            return self.awaits(out)
        return out

    def target(self, payload: Any) -> Target:
        """The function and arguments of a call.

        Raises:
            RemoteError: the function or the arguments cannot be loaded here, saying which.
        """
        ref = payload[0]
        fn = self._fns.get(ref)
        if fn is None:
            fn = self._load(ref)
        if isinstance(fn, str):
            raise RemoteError(fn)
        if is_plain(payload):
            return fn, payload[1], payload[2]
        return fn, *self._arguments(payload)

    def is_async(self, payload: Any) -> bool:
        """Whether the call's function is an ``async def`` one (False if it cannot be loaded)."""
        try:
            return is_async(self.target(payload)[0])
        except RemoteError:
            return False

    def json(self, payload: Any, payload_max: int | None = None) -> str:
        """The payload as results lines show it (``shared.calls.call_json``: its arguments
        loaded, those over payload_max in brief)."""
        return self._json(payload, None if is_plain(payload) else self._loaded_arguments(payload), payload_max)

    def _loaded_arguments(self, payload: Any) -> tuple[tuple[Any, ...], dict[str, Any]] | None:
        if is_plain(payload):
            return None
        if names_values(payload[1]):  # its large values shown by name (not hashed again, nor fetched)
            try:
                args, kwargs = values.loads(payload[1], self.policy.by_value, None)
            except Exception:
                return None
            return args, kwargs
        last = self._last
        if last is not None and last[0] is payload:
            return last[1]
        try:
            args, kwargs = self.policy.loads(payload[1])
        except Exception:
            return None
        return args, kwargs

    def pack(self, v: Value, exc: BaseException | None) -> tuple[Value, BaseException | None]:
        """What a call gave, for the program that waits for it: a value of other than builtin
        types, and an exception, packed; a value that cannot be pickled fails the call."""
        if v[V_OK]:
            value = v[V_VALUE]
            leaf = values.has_large_leaf(value)
            if plain(value) and not leaf:
                return v, exc
            try:
                if leaf:
                    apart = self._apart(value)
                    if apart is not None:
                        return apart, None
                blob = self._dumps(value)
                if len(blob) >= values.LARGE and not leaf:
                    if self._skip:
                        self._skip -= 1
                    else:
                        apart = self._apart(value)
                        if apart is not None:
                            return apart, None
                        self._skip = SKIP_APART
                return packed(True, blob), None
            except Exception as e:
                err = TypeError(f"the call's return value cannot be pickled: {describe(e)}")
                return failure(err), err
        if exc is None:
            return v, exc
        try:
            return packed(False, self._dumps(exc), v[V_ERROR], v[V_TRACEBACK]), exc
        except Exception:
            return v, exc  # the program gets a RemoteError with the exception's text

    def _apart(self, value: Any) -> Value | None:
        """The value packed with its large leaves set apart and sent to god (shared/values.py),
        or None: it has none, or god cannot take them (they go in the ack, as ever; for the next
        SKIP_APART results too)."""
        if self._unsent:
            self._unsent -= 1
            return None
        if self._extractor is None:
            self._extractor = values.Extractor(known=0)  # (a result is not held here after)
        blob, found = self._extractor.dumps(value)
        if not found:
            return None
        try:
            values_here.send(found)
        except Exception as e:
            self._unsent = SKIP_APART
            logger.bind(role="consumer").warning("{}: a result's large values go in its ack: {}", self.name,
                                                describe(e))
            return None
        return packed_named(blob, tuple(found))

    def shown(self, v: Value) -> Any:
        """What a result's line shows of a value packed with its large values apart: each as
        ``{"value": "sha256:...", "bytes": N}`` (shared/values.py)."""
        try:
            return values.loads(v[V_VALUE], self.policy.by_value, None)
        except Exception as e:
            return f"<a value naming large values, not shown: {describe(e)}>"

    def _dumps(self, obj: Any) -> bytes:
        if self._pickler is None:
            self._pickler = CallPickler()
        return self._pickler.dumps(obj)

    def _load(self, ref: str | bytes) -> Callable[..., Any] | str:
        if len(self._fns) >= KEEP_FUNCTIONS:
            self._fns.clear()
        if isinstance(ref, str):
            fn = self._by_name(ref)  # (or why not: the message names it and this consumer)
        elif not self.policy.by_value:
            fn = self.policy.by_value_refused(f"function {self.name}", self.consumer) or ""
        else:
            try:
                fn = load_function(ref, lambda blob: values_here.loads(blob, True))
            except OtherPython as e:
                fn = (f"function {self.name} was pickled by value on Python {e.made_on}, and consumer "
                      f"{self.consumer} runs Python {PYTHON_MINOR}: such a function loads only on the Python that "
                      f"made it. Start a consumer of Python {e.made_on} on its queue (god then gives such calls "
                      f"to it), or make it importable, so that it goes by name")
            except Exception as e:
                fn = f"function {self.name} cannot be loaded on consumer {self.consumer}: {describe(e)}"
            else:
                if not callable(fn):
                    fn = f"function {self.name} came as a {type(fn).__name__} on consumer {self.consumer}"
        self._fns[ref] = fn
        return fn

    def _arguments(self, payload: Any) -> tuple[tuple[Any, ...], dict[str, Any]]:
        """The arguments pickled in a payload, with the values of the tasks it waited for in
        their places (``(fn, blob, values)``)."""
        try:
            args, kwargs = self.policy.loads_arguments(payload[1])
        except Exception as e:
            raise RemoteError(f"the arguments of {self.name} cannot be loaded on consumer {self.consumer}: "
                              f"{describe(e)}") from None
        if len(payload) == 3:
            try:  # (with the large values they name: consumer/values.py)
                values = [value_of(v, self.policy.loads_arguments) for v in payload[2]]
            except Exception as e:
                raise RemoteError(f"a value {self.name} waited for cannot be loaded on consumer {self.consumer}: "
                                  f"{describe(e)}") from None
            args, kwargs = replaced(args, kwargs, Awaited, lambda a: values[a.index])
        self._last = payload, (args, kwargs)
        return args, kwargs
