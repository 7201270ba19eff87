"""What an executor sends god: its calls, as puts on the producer's connection, under one lock.

Above the futures (producer/futures.py), below ``Executor`` and ``Map``: every put, cancel and
flush of an executor goes through its ``Sender``, one at a time (the connection is not
thread-safe, and the seqs of its puts must rise in the order god takes them).
"""

from __future__ import annotations

import concurrent.futures as cf
import threading
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from producer.futures import Targets, TaskFuture, Window
from producer.producer import Producer, PutOptions
from producer.values import ValueSender
from shared.calls import Awaited, CallPickler, arguments_of, by_value, call_task, code_of, code_refused, packed, replaced
from shared.errors import NotAllowed
from shared.initializer import initialized
from shared.records import CANCELLED_BY_PROGRAM, Value, describe, task_id
from shared.values import LARGE, Extractor, Handle, has_large


class Sender:
    """Puts an executor's calls on god and cancels them there (thread-safe)."""

    def __init__(self, producer: Producer, targets: Targets,
                 initializer: tuple[Callable[..., Any], tuple[Any, ...], str] | None = None,
                 large: int | None = LARGE) -> None:
        """``initializer``: the executor's (function, its arguments, the executor's token):
        each function travels with it (shared/initializer.py)."""
        self.producer = producer
        self.initializer = initializer
        self.name = producer.name
        self.targets = targets
        self._lock = threading.Lock()  # puts and cancels, on the producer's connection
        self._pickler = CallPickler()  # used under the lock
        self.large = large  # bytes past which a value travels on its own (None: never)
        self._extractor: Extractor | None = None  # for arguments that hold large values (shared/values.py)
        self._found: dict[str, Any] = {}  # large values of the calls not put yet
        self._handles = 0  # values sent with put(): calls' arguments may hold their handles
        self.values = ValueSender(producer.client.settings, producer.name, str(producer.client.info.get("host", "")))
        self._waiting_puts = 0  # puts of calls that wait for tasks, sent since the results thread last flushed
        self.shut = False

    # -- calls ----------------------------------------------------------------------------

    def function(self, fn: Callable[..., Any]) -> tuple[str, str | bytes]:
        """fn's name and how it travels (by reference, or pickled by value).

        Raises:
            RuntimeError: after shutdown.
        """
        with self._lock:
            self._open()
            return self._function(fn)

    def submit(self, o: PutOptions, fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]
               ) -> TaskFuture:
        """One call, put now (pipelined): its future."""
        with self._lock:
            self._open()
            name, ref = self._function(fn)
            args, kwargs, after, failed = self._awaited(args, kwargs)
            if failed is not None:
                return self._failed_at_once(failed)
            payload = self._arguments(name, ref, args, kwargs)
            future = TaskFuture(self, task_id(self.name, self.producer.next_seq), self.cancel)
            future.label = name.rpartition(":")[2]
            self._put([payload], replace(o, task=call_task(name)), after, future, lambda i: f"the call of {name}")
        return future

    def put_items(self, o: PutOptions, name: str, ref: str | bytes, items: list[tuple[Any, ...]],
                  window: Window) -> None:
        """A map's items, as calls of one function for its window: those that wait for no
        future go in one put."""
        with self._lock:
            self._open()
            run: list[tuple[Any, ...]] = []
            for item in items:
                args, kwargs, after, failed = self._awaited(item, {})
                if failed is None and not after:
                    run.append(self._arguments(name, ref, args, kwargs))
                    continue
                self._put_run(run, o, name, window)
                run = []
                if failed is not None:
                    self.targets.failed_here(window, self._failure(failed))
                else:
                    window.order.extend(self._put([self._arguments(name, ref, args, kwargs)], o, after, window,
                                                  lambda i: f"the call of {name} on an item"))
            self._put_run(run, o, name, window)

    def _put_run(self, payloads: list[tuple[Any, ...]], o: PutOptions, name: str, window: Window) -> None:
        if payloads:
            window.order.extend(self._put(payloads, o, (), window,
                                          lambda i: f"the call of {name} on item {i + 1} of a batch"))

    def _function(self, fn: Callable[..., Any]) -> tuple[str, str | bytes]:
        """(fn's name, how it travels): with the executor's initializer, by value, wrapped in it;
        a function by value that holds large values (a closure over a table), with those apart
        (shared/values.py: sent once, as arguments are)."""
        sent = fn if self.initializer is None else initialized(fn, *self.initializer)
        name, ref = self._pickler.function(fn)  # (its name, and a function that cannot travel said so)
        if sent is not fn:
            ref = self._pickler.function(sent)[1]
        if type(ref) is bytes and self.large is not None and len(ref) >= self.large:
            inner, found = self._extract().dumps(sent)
            ref = by_value(inner)
            self._found.update(found)
        return name, ref

    def put_value(self, value: Any) -> Handle:
        """Send a value to god now (``Executor.put``); its handle."""
        with self._lock:
            self._open()
            handle, blob = self._extract().handle(value)
            self.values.send({handle.digest: blob})
            self._handles += 1
            return handle

    def _extract(self) -> Extractor:
        if self._extractor is None:
            self._extractor = Extractor(self.large if self.large is not None else LARGE)
        return self._extractor

    def _open(self) -> None:
        if self.shut:
            raise RuntimeError("cannot submit calls after the executor's shutdown")

    def _put(self, payloads: list[tuple[Any, ...]], o: PutOptions, after: tuple[str, ...],
             target: TaskFuture | Window, where: Callable[[int], str]) -> range:
        """Send calls (``after``: the ids of the futures among their arguments) for target."""
        first = self.producer.next_seq
        seqs = range(first, first + len(payloads))
        self.targets.register(seqs, target)
        if after or o.after:
            o = replace(o, after=after + tuple(tid for tid in o.after or () if tid not in after))
        found, self._found = self._found, {}
        try:
            names = self.values.send(found) if found else None
            self.producer.send(payloads, o, where, wait=False, values=names)
        except BaseException:
            self.targets.unregister(seqs)
            raise
        if after:
            self._waiting_puts += 1
        return seqs

    def _awaited(self, args: tuple[Any, ...], kwargs: dict[str, Any]
                 ) -> tuple[tuple[Any, ...], dict[str, Any], tuple[str, ...], TaskFuture | None]:
        """A call's arguments with each future among them (one level deep) as its value if it has
        one, else as ``Awaited(k)``; the ids of those (the k-th is k), and a future that failed.

        Raises:
            ValueError: a future of another executor.
        """
        ids: dict[str, int] = {}
        failed: list[TaskFuture] = []

        def swap(f: TaskFuture) -> Any:
            if f.owner is not self:
                raise ValueError(f"the future of task {f.task_id} is another executor's: pass its result(), or "
                                 "submit the call to that executor")
            if f.done():
                if f.cancelled() or f.exception() is not None:
                    failed.append(f)
                    return None
                return f.result()
            assert f.task_id is not None
            return Awaited(ids.setdefault(f.task_id, len(ids)))

        args, kwargs = replaced(args, kwargs, TaskFuture, swap)
        return args, kwargs, tuple(ids), failed[0] if failed else None

    def _failed_at_once(self, dep: TaskFuture) -> TaskFuture:
        """A call that waits for a future that failed or was cancelled: it fails so at once (no
        task at god)."""
        future = TaskFuture(self, None, self.cancel)
        if dep.cancelled():
            self.targets.cancelled(future)
        else:
            future.set_exception(dep.exception())
        return future

    def _failure(self, f: TaskFuture) -> Value:
        """What a map's item that waits for a failed (or cancelled) future gives: its exception."""
        exc = cf.CancelledError() if f.cancelled() else f.exception()
        assert exc is not None
        try:
            return packed(False, self._pickler.dumps(exc), describe(exc))
        except Exception:
            return False, None, describe(exc), None

    def _arguments(self, name: str, ref: str | bytes, args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[Any, ...]:
        """A call's payload.

        Raises:
            TypeError: the arguments cannot be pickled.
            NotAllowed: it sends code, and god said this program's principal may not.
        """
        try:
            payload = () if self._handles else arguments_of(self._pickler, ref, args, kwargs)
            large = self.large
            if not payload or large is not None and (len(payload[1]) >= large if type(payload[1]) is bytes
                                                     else has_large(args, kwargs, large)):
                blob, found = self._extract().dumps((args, kwargs))  # large values apart, each sent once
                payload = (ref, blob)
                self._found.update(found)
        except Exception as e:
            raise TypeError(f"the arguments of {name} cannot be pickled to travel to consumers: {describe(e)}") from None
        principal = self.producer.client.server_info.get("principal")
        if principal is not None and not principal.get("by_value", True):
            sent = code_of(payload)
            if sent is not None:
                raise NotAllowed(f"god would refuse the call of {name}: {code_refused(principal['name'], sent)}")
        return payload

    # -- cancels, flushes, the end ----------------------------------------------------------

    def cancel(self, future: TaskFuture) -> bool:
        """Cancel a future's task at god if it still waits there (TaskFuture.cancel)."""
        with self._lock:
            self.producer.flush()  # god holds the task: a put in flight cannot be cancelled
            if future.done() or future.task_id is None:
                return future.cancelled()
            counts = self.producer.client.cancel([future.task_id], started=False, why=CANCELLED_BY_PROGRAM)
        if not counts.get("waiting", 0) + counts.get("scheduled", 0):
            return False  # it runs, or has its result on the way
        return self.targets.cancelled(future)

    def cancel_ids(self, ids: list[str]) -> None:
        """Cancel at god those of these tasks not started yet."""
        with self._lock:
            self.producer.flush()
            self.producer.client.cancel(ids, started=False, why=CANCELLED_BY_PROGRAM)

    def flush_waiting(self) -> None:
        """Before results are confirmed to god (it then lets their values go), god has taken every
        call sent that waits for a future: one whose result had come but was not set yet when
        the call was sent takes the value from god's mailbox, which still has it then. (Under
        the lock that submits hold from looking at their futures to sending: a call that saw a
        future not done is counted by now.)"""
        with self._lock:
            if self._waiting_puts:
                self.producer.flush()
                self._waiting_puts = 0

    def task(self, tid: str) -> dict[str, Any]:
        """What ``python -m god task ID --json`` prints of a task."""
        with self._lock:
            self.producer.flush()
            return self.producer.task(tid)

    def shutdown(self, cancel_futures: bool) -> None:
        """No more calls; god holds every task sent. ``cancel_futures``: cancel at god those not
        started yet."""
        with self._lock:
            if not self.shut:
                self.shut = True
                self.producer.flush()
            if cancel_futures and self.producer.next_seq > 1:
                self.producer.client.cancel(producer=self.name, started=False, why=CANCELLED_BY_PROGRAM)

    def close(self) -> None:
        """Say goodbye to god (it keeps no more results for us) and close the connection."""
        with self._lock:
            self.values.close()
            self.producer.close()
