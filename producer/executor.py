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
iterable runs in bounded memory; it makes no Future per item. Layers, lowest first: the
futures and what waits for each result (producer/futures.py), the sender that puts and
cancels calls under one lock (producer/sender.py), then ``Map`` and ``Executor``.
"""

from __future__ import annotations

import atexit
import concurrent.futures as cf
import secrets
import threading
import weakref
from collections.abc import Callable, Iterable, Iterator
from types import TracebackType
from typing import IO, Any

from producer.futures import Targets, TaskFuture
from producer.mail import Mail
from producer.mapping import Map
from producer.output import Show, check_where, wants_output
from producer.producer import Producer, PutOptions
from producer.sender import Sender
from shared.client import GodClient
from shared.config import GIVE_UP_AFTER_S, Settings, client_settings
from shared.errors import ConfigError
from shared.log import logger
from shared.records import Value, describe, split_id
from shared.values import LARGE, Handle

__all__ = ["Executor", "Options", "TaskFuture"]

#: ProcessPoolExecutor's own arguments that do not apply here: code written for it may pass them.
POOL_ARGUMENTS = ("max_workers", "mp_context", "max_tasks_per_child")


class Executor(cf.Executor):
    """Runs calls on god's consumers: a ``concurrent.futures.Executor``.

    Options are the put options (``queue``, ``priority``, ``retries``, ``retry_backoff``,
    ``retry_max_backoff``, ``retry_on``, ``delay``, ``at``); ``options(...)`` gives a view
    of the executor whose calls differ. ``initializer`` and ``initargs`` are
    ProcessPoolExecutor's: ``initializer(*initargs)`` runs once in each worker process before
    its first call of this executor there (shared/initializer.py). ``output``: where the lines
    its calls write are shown (producer/output.py: stderr by default). ``large_values``: bytes
    past which an argument travels to god once, on its own (shared/values.py; None: never).
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
        initializer, initargs = options.pop("initializer", None), options.pop("initargs", ())
        output = check_where(options.pop("output", True))
        large = options.pop("large_values", LARGE)
        if large is not None and (type(large) is not int or large < 1):
            raise ConfigError(f"Executor(large_values={large!r}): bytes past which a value travels once, or None")
        if initializer is not None and not callable(initializer):
            raise ConfigError(f"Executor(initializer={initializer!r}): not a function")
        if not isinstance(initargs, tuple):
            raise ConfigError(f"Executor(initargs={initargs!r}): a tuple of the initializer's arguments")
        PutOptions().given(options)  # a wrong option is named before the key and god are looked for
        if settings is None:
            settings = client_settings(address, give_up_after=give_up_after)
        producer = Producer(settings, results=True, track=False, output=False, **options)
        producer.connect()
        self._options = producer.options
        self.name = producer.name
        self._results = GodClient(settings, name=self.name, role="producer",
                                  info={"host": producer.client.info.get("host", ""), "results": True,
                                        "output": wants_output(output)})
        self._targets = Targets()
        self._show = Show(self.name, output, self._targets.label, self._targets.reported) \
            if wants_output(output) else None
        self._sender = Sender(producer, self._targets,
                              (initializer, initargs, secrets.token_hex(8)) if initializer is not None else None,
                              large=large)
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
        return self._sender.submit(self._options, fn, args, kwargs)

    def map(self, fn: Callable[..., Any], *iterables: Iterable[Any], timeout: float | None = None,
            chunksize: int = 1, buffersize: int | None = None, progress: bool | IO[str] = False) -> Iterator[Any]:
        """``fn`` over the items of the iterables (zipped), its results in their order, lazily.
        ``progress``: a line of done, failed, in flight and not sent, the rate and the time left
        (True: on stderr in a terminal, as text in a notebook; or an output of your own).

        At most ``buffersize`` tasks are in flight (default producer.mapping.MAP_WINDOW), so
        the iterables may be endless; ``chunksize`` is taken for compatibility: each item is a
        task of its own, and puts go in batches anyway. ``timeout`` counts from this call; the iterator raises
        ``TimeoutError`` at the first result not there by then, and a call's exception at its
        item, after yielding those before it.
        """
        return self._map(self._options, fn, iterables, timeout, chunksize, buffersize, progress)

    def put(self, value: Any) -> Handle:
        """Send value to god now, once; its handle, which a call takes in its place (as an
        argument, or in a list, tuple or dict of them) and gets the value. God keeps it while
        this executor is open, and while a task names it (shared/values.py).

        Raises:
            TypeError: value cannot be pickled.
        """
        return self._sender.put_value(value)

    def options(self, **options: Any) -> Options:
        """A view of this executor whose calls use these put options instead (``priority=9``).

        Raises:
            GodError: an option god would refuse.
        """
        return Options(self, self._options.given(options))

    def task(self, tid: str) -> dict[str, Any]:
        """What ``python -m god task ID --json`` prints of a task (any task, by id)."""
        return self._sender.task(tid)

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """No more calls. ``cancel_futures``: cancel at god every task not started yet. ``wait``:
        return once every future is done and the executor's thread has ended; else once god
        holds every task submitted (they run on, without this program)."""
        self._sender.shutdown(cancel_futures)
        self._targets.close()
        if wait:
            self._thread.join()  # it says goodbye to god as it ends

    def __enter__(self) -> Executor:
        return self

    def __exit__(self, kind: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None) -> None:
        self.shutdown(wait=True)

    def _map(self, o: PutOptions, fn: Callable[..., Any], iterables: tuple[Iterable[Any], ...],
             timeout: float | None, chunksize: int, buffersize: int | None,
             progress: bool | IO[str] = False) -> Iterator[Any]:
        return Map(self._sender, self._targets, o, fn, iterables, timeout=timeout, chunksize=chunksize,
                   buffersize=buffersize, progress=progress).results()

    # -- results --------------------------------------------------------------------------

    def _read_results(self) -> None:
        """The executor's thread: fetch results while any is outstanding, resolve what waits."""
        mail = Mail(self._results, self.name, self._show)
        targets = self._targets
        try:
            while targets.wait_outstanding():
                self._sender.flush_waiting()
                runs, gone = mail.fetch(targets.outstanding)
                for lo, values, consumer, _ in runs:
                    targets.resolve(lo, values, consumer)
                for tid in gone:
                    lost: Value = (False, None, "the task finished before god restarted, and god did not keep its "
                                   "result for this program: it is in god's results file", None)
                    targets.resolve(split_id(tid)[1], [lost], "god")
        except BaseException as e:  # god unreachable for good, or the key refused: nothing more comes
            targets.fail_all(f"the executor stopped reading results: {describe(e)}")
        finally:
            self._results.close()
        self._sender.close()  # goodbye to god: it keeps no more results for us


class Options:
    """A view of an Executor whose calls use other put options (``Executor.options``)."""

    def __init__(self, executor: Executor, options: PutOptions) -> None:
        self._executor = executor
        self._options = options

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> TaskFuture:
        """As ``Executor.submit``, with these options."""
        return self._executor._sender.submit(self._options, fn, args, kwargs)

    def map(self, fn: Callable[..., Any], *iterables: Iterable[Any], timeout: float | None = None,
            chunksize: int = 1, buffersize: int | None = None, progress: bool | IO[str] = False) -> Iterator[Any]:
        """As ``Executor.map``, with these options."""
        return self._executor._map(self._options, fn, iterables, timeout, chunksize, buffersize, progress)


def _leave_at_exit(ref: weakref.ref[Executor]) -> None:
    """A program that exits with an executor not shut down (or shut down without waiting)
    tells god it left, so god keeps no results for it."""
    ex = ref()
    if ex is not None and ex._thread.is_alive():
        try:
            ex._sender.producer.client.leave()
        except Exception:
            pass
