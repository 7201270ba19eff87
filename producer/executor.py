"""``concurrent.futures`` across hosts: an Executor whose calls run on god's consumers.

    from producer import Executor

    with Executor() as ex:                        # god found as connect() finds it
        futures = [ex.submit(score, doc, lang="de") for doc in docs]
        for f in concurrent.futures.as_completed(futures):
            print(f.result())
        print(list(ex.map(len, ["a", "bb", "ccc"])))   # [1, 2, 3]

Each call is a task at god (shared/calls.py has its wire form): queue, priority, retries,
dead letters, cancels, the results file and ``god task ID`` apply to it as to any task.
Puts go out from the calling thread, pipelined (a lone ``submit`` waits for nothing); one
thread of the executor reads the results over a connection of its own and resolves the
futures. ``map`` keeps a window of tasks in flight (producer/mapping.py), so an endless
iterable runs in bounded memory; it makes no Future per item.
"""

from __future__ import annotations

import atexit
import concurrent.futures as cf
import itertools
import threading
import weakref
from collections.abc import Callable, Iterable, Iterator
from dataclasses import replace
from types import TracebackType
from typing import Any

from producer.mail import Mail
from producer.mapping import Map, Window
from producer.producer import Producer, PutOptions
from shared.calls import Awaited, CallPickler, RemoteError, arguments_of, call_task, outcome, replaced
from shared.client import GodClient
from shared.config import GIVE_UP_AFTER_S, Settings, client_settings
from shared.errors import ConfigError
from shared.log import logger
from shared.records import CANCELLED_BY_PROGRAM, V_ERROR, V_OK, V_VALUE, Value, describe, split_id, task_id



class TaskFuture(cf.Future):  # type: ignore[type-arg]
    """A standard Future of a task at god, with its id; ``cancel`` asks god. It may be an
    argument of another call (``submit(f, future)``, or in a list, tuple or dict argument):
    that call waits at god for its result, and gets its value in its place. (A future that
    failed before the call is made fails the call at once, in the program: its id is None.)"""

    def __init__(self, executor: Executor, tid: str | None) -> None:
        super().__init__()
        self.task_id = tid
        self._executor = executor
        self.notified = False  # its waiters were told of its cancel (once only; the executor's lock)

    def cancel(self) -> bool:
        """Cancel the task at god if it still waits there: True; False once a consumer runs it
        or it has its result (as ``concurrent.futures`` does)."""
        if self.done():
            return self.cancelled()
        return self._executor._cancel(self)


#: ProcessPoolExecutor's own arguments: code written for it may pass them.
POOL_ARGUMENTS = ("max_workers", "mp_context", "initializer", "initargs", "max_tasks_per_child")


class Executor(cf.Executor):
    """Runs calls on god's consumers: a ``concurrent.futures.Executor``.

    Options are the put options (``queue``, ``priority``, ``retries``, ``retry_backoff``,
    ``retry_max_backoff``, ``retry_on``, ``delay``, ``at``); ``options(...)`` gives a view
    of the executor whose calls differ.
    """

    def __init__(self, address: str | None = None, *, give_up_after: float = GIVE_UP_AFTER_S,
                 settings: Settings | None = None, **options: Any) -> None:
        """Connect to god (address, key and TLS as ``connect()`` finds them).

        Raises:
            GodError: no key, a bad address, god unreachable, or an option god would refuse.
        """
        pool = next((k for k in POOL_ARGUMENTS if options.get(k) is not None), None)
        if pool is not None:
            raise ConfigError(f"Executor({pool}=...): that is ProcessPoolExecutor's; here the consumers run the calls, "
                              "as many at once as their --processes and --concurrency say: leave it out")
        for k in POOL_ARGUMENTS:
            options.pop(k, None)  # None: as ProcessPoolExecutor's own default, nothing asked
        PutOptions().given(options)  # a wrong option is named before the key and god are looked for
        if settings is None:
            settings = client_settings(address, give_up_after=give_up_after)
        self._producer = Producer(settings, results=True, track=False, **options)
        self._producer.connect()
        self._options = self._producer.options
        self.name = self._producer.name
        self._results = GodClient(settings, name=self.name, role="producer",
                                  info={"host": self._producer.client.info.get("host", ""), "results": True})
        self._put_lock = threading.Lock()  # puts and cancels, on the producer's connection
        self._pickler = CallPickler()  # used under _put_lock
        self._waiting_puts = 0  # puts of calls that wait for tasks, sent since the results thread last flushed
        self._local = itertools.count(-1, -1)  # keys of a map's items that failed here (what they waited for had)
        self._cond = threading.Condition()  # the targets, and each map's values
        self._targets: dict[int, TaskFuture | Window] = {}  # seq -> what waits for its result
        self._shutdown = False
        self._closing = False  # the results thread ends once nothing is outstanding
        self._log = logger.bind(role="producer")
        self._thread = threading.Thread(target=self._read_results, name=f"executor-results-{self.name}", daemon=True)
        self._thread.start()
        atexit.register(_leave_at_exit, weakref.ref(self))

    # -- what programs call ---------------------------------------------------------------

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> TaskFuture:
        """Run ``fn(*args, **kwargs)`` on a consumer; returns its Future.

        Raises:
            TypeError: fn or its arguments cannot be pickled (naming which).
            RuntimeError: after ``shutdown``.
        """
        return self._submit(self._options, fn, args, kwargs)

    def map(self, fn: Callable[..., Any], *iterables: Iterable[Any], timeout: float | None = None,
            chunksize: int = 1, buffersize: int | None = None) -> Iterator[Any]:
        """``fn`` over the items of the iterables (zipped), its results in their order, lazily.

        At most ``buffersize`` tasks are in flight (default producer.mapping.MAP_WINDOW), so
        the iterables may be endless; ``chunksize`` is taken for compatibility: each item is a
        task of its own, and puts go in batches anyway. ``timeout`` counts from this call; the iterator raises
        ``TimeoutError`` at the first result not there by then, and a call's exception at its
        item, after yielding those before it.
        """
        return self._map(self._options, fn, iterables, timeout, chunksize, buffersize)

    def options(self, **options: Any) -> Options:
        """A view of this executor whose calls use these put options instead (``priority=9``).

        Raises:
            GodError: an option god would refuse.
        """
        return Options(self, self._options.given(options))

    def task(self, tid: str) -> dict[str, Any]:
        """What ``python -m god task ID --json`` prints of a task (any task, by id)."""
        with self._put_lock:
            self._producer.flush()
            return self._producer.task(tid)

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """No more calls. ``cancel_futures``: cancel at god every task not started yet. ``wait``:
        return once every future is done and the executor's thread has ended; else once god
        holds every task submitted (they run on, without this program)."""
        with self._put_lock:
            if not self._shutdown:
                self._shutdown = True
                self._producer.flush()  # god holds every task submitted
            if cancel_futures and self._producer.next_seq > 1:
                self._producer.client.cancel(producer=self.name, started=False, why=CANCELLED_BY_PROGRAM)
        with self._cond:
            self._closing = True
            self._cond.notify_all()
        if wait:
            self._thread.join()  # it says goodbye to god as it ends

    def __enter__(self) -> Executor:
        return self

    def __exit__(self, kind: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None) -> None:
        self.shutdown(wait=True)

    # -- submitting -----------------------------------------------------------------------

    def _submit(self, o: PutOptions, fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]
                ) -> TaskFuture:
        with self._put_lock:
            if self._shutdown:
                raise RuntimeError("cannot submit calls after the executor's shutdown")
            name, ref = self._pickler.function(fn)
            args, kwargs, after, failed = self._awaited(args, kwargs)
            if failed is not None:
                return self._failed_at_once(failed)
            payload = self._arguments(name, ref, args, kwargs)
            future = TaskFuture(self, task_id(self.name, self._producer.next_seq))
            self._put([payload], replace(o, task=call_task(name)), after, future, lambda i: f"the call of {name}")
        return future

    def _put(self, payloads: list[tuple[Any, ...]], o: PutOptions, after: tuple[str, ...],
             target: TaskFuture | Window, where: Callable[[int], str]) -> range:
        """Send calls (``after``: the ids of the futures among their arguments) for target."""
        first = self._producer.next_seq
        seqs = range(first, first + len(payloads))
        self._register(seqs, target)
        if after or o.after:
            o = replace(o, after=after + tuple(tid for tid in o.after or () if tid not in after))
        try:
            self._producer.send(payloads, o, where, wait=False)
        except BaseException:
            self._unregister(seqs)
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
            if f._executor is not self:
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
        future = TaskFuture(self, None)
        if dep.cancelled():
            self._cancelled(future)
        else:
            future.set_exception(dep.exception())
        return future

    def _arguments(self, name: str, ref: str | bytes, args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[Any, ...]:
        try:
            return arguments_of(self._pickler, ref, args, kwargs)
        except Exception as e:
            raise TypeError(f"the arguments of {name} cannot be pickled to travel to consumers: {describe(e)}") from None

    def _map(self, o: PutOptions, fn: Callable[..., Any], iterables: tuple[Iterable[Any], ...],
             timeout: float | None, chunksize: int, buffersize: int | None) -> Iterator[Any]:
        return Map(self, o, fn, iterables, timeout, chunksize, buffersize).results()

    # -- cancelling -----------------------------------------------------------------------

    def _cancel(self, future: TaskFuture) -> bool:
        with self._put_lock:
            self._producer.flush()  # god holds the task: a put in flight cannot be cancelled
            if future.done() or future.task_id is None:
                return future.cancelled()
            counts = self._producer.client.cancel([future.task_id], started=False, why=CANCELLED_BY_PROGRAM)
        if not counts.get("waiting", 0) + counts.get("scheduled", 0):
            return False  # it runs, or has its result on the way
        return self._cancelled(future)

    def _cancelled(self, future: TaskFuture) -> bool:
        """Mark a future cancelled and tell whoever waits for it (``as_completed``, ``wait``)."""
        if not cf.Future.cancel(future):
            return False  # its result came first
        with self._cond:
            first, future.notified = not future.notified, True
        if first:
            future.set_running_or_notify_cancel()
        return True

    # -- results --------------------------------------------------------------------------

    def _register(self, seqs: range, target: TaskFuture | Window) -> None:
        with self._cond:
            for seq in seqs:
                self._targets[seq] = target
            self._cond.notify_all()

    def _unregister(self, seqs: range) -> None:
        with self._cond:
            for seq in seqs:
                self._targets.pop(seq, None)

    def _read_results(self) -> None:
        """The executor's thread: fetch results while any is outstanding, resolve what waits."""
        mail = Mail(self._results, self.name)
        try:
            while True:
                with self._cond:
                    while not self._targets and not self._closing:
                        self._cond.wait()
                    if not self._targets:
                        break
                self._flush_waiting()
                runs, gone = mail.fetch(lambda: list(self._targets))
                for lo, values, consumer, _ in runs:
                    self._resolve(lo, values, consumer)
                for tid in gone:
                    lost: Value = (False, None, "the task finished before god restarted, and god did not keep its "
                                   "result for this program: it is in god's results file", None)
                    self._resolve(split_id(tid)[1], [lost], "god")
        except BaseException as e:  # god unreachable for good, or the key refused: nothing more comes
            self._fail_all(e)
        finally:
            self._results.close()
        self._leave()

    def _flush_waiting(self) -> None:
        """Before results are confirmed to god (it then lets their values go), god has taken every
        call sent that waits for a future: one whose result had come but was not set yet when
        the call was sent takes the value from god's mailbox, which still has it then. (Under
        the lock that submits hold from looking at their futures to sending: a call that saw a
        future not done is counted by now.)"""
        with self._put_lock:
            if self._waiting_puts:
                self._producer.flush()
                self._waiting_puts = 0

    def _resolve(self, lo: int, values: list[Value], consumer: str) -> None:
        futures: list[tuple[TaskFuture, Value]] = []
        with self._cond:
            pop = self._targets.pop
            for seq, v in enumerate(values, lo):
                target = pop(seq, None)
                if target is None:
                    continue  # a result had come already (god restarted), or the call's put failed
                if type(target) is Window:
                    if not target.closed:
                        target.values[seq] = (v, consumer)
                else:
                    futures.append((target, v))  # type: ignore[arg-type]
            self._cond.notify_all()
        for future, v in futures:  # outside the lock: done callbacks may call the executor
            if not v[V_OK] and v[V_VALUE] is None and (v[V_ERROR] or "").endswith(CANCELLED_BY_PROGRAM):
                self._cancelled(future)
                continue
            ok, value = outcome(v, consumer)
            try:
                future.set_result(value) if ok else future.set_exception(value)
            except cf.InvalidStateError:
                pass  # cancelled meanwhile

    def _fail_all(self, e: BaseException) -> None:
        """Nothing more will come: every outstanding call fails with why."""
        error = f"the executor stopped reading results: {describe(e)}"
        with self._cond:
            targets, self._targets = self._targets, {}
            for seq, t in targets.items():
                if type(t) is Window:
                    t.values[seq] = ((False, None, error, None), "")
            self._cond.notify_all()
        for t in targets.values():
            if type(t) is TaskFuture:
                try:
                    t.set_exception(RemoteError(error))
                except cf.InvalidStateError:
                    pass

    def _leave(self) -> None:
        """Say goodbye to god (it keeps no more results for us) and close the connections."""
        with self._put_lock:
            self._producer.close()


class Options:
    """A view of an Executor whose calls use other put options (``Executor.options``)."""

    def __init__(self, executor: Executor, options: PutOptions) -> None:
        self._executor = executor
        self._options = options

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> TaskFuture:
        """As ``Executor.submit``, with these options."""
        return self._executor._submit(self._options, fn, args, kwargs)

    def map(self, fn: Callable[..., Any], *iterables: Iterable[Any], timeout: float | None = None,
            chunksize: int = 1, buffersize: int | None = None) -> Iterator[Any]:
        """As ``Executor.map``, with these options."""
        return self._executor._map(self._options, fn, iterables, timeout, chunksize, buffersize)


def _leave_at_exit(ref: weakref.ref[Executor]) -> None:
    """A program that exits with an executor not shut down (or shut down without waiting)
    tells god it left, so god keeps no results for it."""
    ex = ref()
    if ex is not None and ex._thread.is_alive():
        try:
            ex._producer.client.leave()
        except Exception:
            pass
