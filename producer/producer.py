"""The producer, as a Python API: put tasks on god, and iterate over their results.

    from producer import connect

    with connect(results=True) as god:          # GOD_ADDRESS and GOD_AUTHKEY, as the CLI reads them
        god.put_many(["https://example.org/"])
        for result in god.results():            # until every task put so far has its result
            for link in result.value or []:
                god.put(link)                   # more work: results() waits for it too

The command line (``python -m producer``) is built on the same class.
"""

from __future__ import annotations

import math
import os
import pickle
import secrets
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, fields, replace
from types import TracebackType
from typing import Any

from producer.mail import Mail, Run
from producer.output import Show, Where, check_where, wants_output
from shared import items, resources
from shared.calls import CALL
from shared.client import GodClient
from shared.config import GIVE_UP_AFTER_S, Settings, client_settings, hostname
from shared.errors import ConfigError, GodError, Interrupted
from shared.log import count, logger
from shared.records import (
    DEFAULT_QUEUE, MAX_BACKOFF_S, MAX_PAYLOAD, PUT_N, PUT_RESOURCES, Put, Result, RetryPolicy, TaskIds, check_after, check_priority, check_queue, check_retry,
    describe, task_id,
)

PUT_WAIT_S = 2.0  # seconds one put call may wait at god for room in a full queue
IN_FLIGHT = 16  # batches sent (put_many(wait=False)) before the oldest one's confirmation is read
_GONE = object()  # not waited for (any more)


class PayloadError(ConfigError):
    """A payload that cannot go to god: it cannot be pickled, or it is over god's size limit."""

    def __init__(self, message: str, *, index: int) -> None:
        super().__init__(message)
        self.index = index  # of the bad payload in its batch; the ones before it can be put


def check_payloads(payloads: list[Any], where: Callable[[int], str], max_payload: int) -> bytes:
    """Make sure god can take every payload: picklable, and at most max_payload bytes each.

    One pickle of the whole batch settles the usual case, and is what goes to god; only a
    batch that fails or is over the limit as a whole is looked at payload by payload.

    Returns:
        The batch's payloads as one blob (shared/items.py).

    Raises:
        PayloadError: naming where the first bad payload came from.
    """
    blob = None
    try:
        blob = items.pack(payloads)
        if len(blob) <= max_payload:
            return blob
    except Exception:  # pickle raises many kinds: PicklingError, TypeError, RecursionError, ...
        pass
    for i, p in enumerate(payloads):
        try:
            size = len(pickle.dumps(p, pickle.HIGHEST_PROTOCOL))
        except Exception as e:
            raise PayloadError(f"{where(i)}: the payload cannot be pickled ({describe(e)})", index=i) from None
        if size > max_payload:
            raise PayloadError(f"{where(i)}: the payload is {size:,} bytes, over god's --max-payload of "
                               f"{max_payload:,}; send a path to the data instead", index=i)
    assert blob is not None  # every payload pickles on its own, so the list did
    return blob


class Producer:
    """Gives each task a unique id and offers batches until god has taken all of them.

    Ids make re-sending safe: a batch re-sent after a dropped connection is not queued twice.
    """

    def __init__(
        self, settings: Settings, *, should_stop: Callable[[], bool] = lambda: False, results: bool = False,
        track: bool = True, output: Where = True, **options: Any,
    ) -> None:
        """A producer; with ``results`` god keeps the results of its tasks for ``results()``
        (``track`` False: for whoever reads them, not ``results()``; the executor does), and
        ``results()`` shows what the tasks write where ``output`` says (producer/output.py).

        ``options`` (those of ``PutOptions``: queue, task, priority, retries, retry_backoff,
        retry_max_backoff, retry_on) are what its puts use unless they say otherwise.

        Raises:
            ConfigError: an option god would refuse.
        """
        self.options = PutOptions().given(options)
        self.name = f"{hostname()}:{os.getpid()}:{secrets.token_hex(3)}"
        self._should_stop = should_stop
        shows = results and track and wants_output(check_where(output))
        self.client = GodClient(settings, name=self.name, role="producer",
                                info={"host": hostname(), "results": results, "output": shows}, should_stop=should_stop)
        self._seq = 1  # the next task's number
        # Batches sent whose confirmations are not read yet, oldest first, with what results() needs.
        self._in_flight: deque[tuple[Put, list[tuple[int, tuple[Any, str, str | None]]]]] = deque()
        self.accepted = 0
        self.keeps_results = results
        self._tracks = results and track
        # Tasks put whose results have not come yet, in order: seq -> (payload, queue, task).
        # The producer keeps its payloads, so god does not send them back with the results.
        self.waiting: dict[int, tuple[Any, str, str | None]] = {}
        self.lost_in_restart: list[str] = []  # done before god restarted: results only in god's file
        self.mail = Mail(self.client, self.name, Show(self.name, output, self._label) if shows else None)
        self._early: deque[tuple[list[Run], list[str]]] = deque()  # fetched before results() asked
        self._log = logger.bind(role="producer")

    def __enter__(self) -> Producer:
        return self

    def __exit__(self, kind: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None) -> None:
        try:
            if kind is None:
                self.flush()  # what was sent without waiting is confirmed before the block ends
        finally:
            self.close()

    def close(self) -> None:
        """Say goodbye to god (it stops showing this producer) and close the connection."""
        if not self.mail.started:
            self.client.leave()
            return
        try:  # the goodbye goes behind the fetch sent ahead, and ends its wait
            self._call("bye", self.name)
        except GodError:
            pass  # god forgets us after a while anyway
        self.client.close()

    def put(self, payload: Any, **options: Any) -> str:
        """Put one task (``options`` as for put_many); returns its id once god holds it."""
        return self.put_many([payload], **options)[0]

    @property
    def next_seq(self) -> int:
        """The number the next task put gets (its id: ``task_id(name, next_seq)``)."""
        return self._seq

    def task(self, tid: str) -> dict[str, Any]:
        """Where a task is (any producer's, by id), and its results line once it has one: what
        ``python -m god task ID --json`` prints."""
        out: dict[str, Any] = self._call("task", tid)
        return out

    def connect(self) -> dict[str, Any]:
        """Reach god (retrying as configured); returns its parameters."""
        return self.client.connect()

    def put_many(self, payloads: list[Any], where: Callable[[int], str] | None = None, *, wait: bool = True,
                 **options: Any) -> TaskIds:
        """Put one batch; returns the task ids (a sequence) once god holds every task.

        With ``wait=False`` it returns once the batch is sent, while up to IN_FLIGHT batches
        travel and wait for their journal commits together (far from god, one batch per
        round trip is slow); ``flush()`` waits until god holds all of them. Each is still
        confirmed only after its commit, and they are taken in order.

        ``options`` override the producer's for this batch: ``queue`` (default ``default``),
        ``task`` (``module:function``; default: whatever each consumer runs), ``priority``
        (0-9, higher first; default 0), ``retries`` (default 0), ``retry_backoff`` (seconds
        before the first retry, doubling for each next one, with jitter; default 1),
        ``retry_max_backoff`` (default 300), ``retry_on`` (exception class names that are
        retried; default any), and ``delay`` (seconds) or ``at`` (a Unix time): god holds
        the tasks until then.

        A payload god cannot take stops the batch there: the ones before it are put, then
        PayloadError says where it came from (``where(i)``, else its place in the batch).

        Raises:
            ConfigError: a queue name, task name or priority god would refuse.
            PayloadError: a payload cannot be pickled or is too big.
            Interrupted: a stop was requested while god was full.
        """
        return self.send(payloads, self.options.given(options), where, wait=wait)

    def send(self, payloads: list[Any], o: PutOptions, where: Callable[[int], str] | None = None, *,
             wait: bool = True, values: tuple[str, ...] | None = None) -> TaskIds:
        """``put_many`` with its options checked already (the executor's calls come this way);
        ``values``: the digests of the large values the calls name (shared/values.py), sent to god before."""
        if not payloads:
            return TaskIds(self.name, self._seq, 0)
        where = where or (lambda i: f"payload {i + 1} of the batch")
        limit = int(self.client.server_info.get("max_payload", MAX_PAYLOAD))
        try:
            blob = check_payloads(payloads, where, limit)
        except PayloadError as e:
            if e.index:
                self.send(payloads[: e.index], o)
            raise
        first, n = self._seq, len(payloads)
        if len(blob) > limit:  # each payload fits, not all of them in one put: in parts
            half = n // 2
            self.send(payloads[:half], o, where, wait=wait, values=values)
            self.send(payloads[half:], o, lambda i: where(i + half), wait=wait, values=values)
            return TaskIds(self.name, first, n)
        put: Put = (first, n, blob, o.queue, o.task, o.priority, o.policy(), o.due(), o.after, values, o.resources)
        if o.resources is None:
            put = put[:PUT_RESOURCES]  # type: ignore[assignment]  # (a god before 0.5 takes 10 fields)
        kept = [(first + i, (p, o.queue, o.task)) for i, p in enumerate(payloads)] if self._tracks else []
        # A put that waits, of a producer that reads its results: the fetch for them goes
        # right behind it, in the same write, so that it waits at god when the result comes
        # rather than set out once the put is confirmed (the producer, woken for the
        # confirmation, had not asked yet when a lone task's result came; 0.16 ms of 0.68
        # with the journal on).
        behind = wait and self._tracks and not self.mail.started
        self.client.send_put(put, PUT_WAIT_S, first - 1 if self._in_flight else None, hold=behind)
        self._in_flight.append((put, kept))
        self._seq += n  # the next batch follows this one, taken or not yet
        if behind:
            self.mail.start(lambda: self.waiting)
        while len(self._in_flight) > (0 if wait else IN_FLIGHT - 1):
            self._confirm_oldest(fetch_behind=behind)
        return TaskIds(self.name, first, n)

    def _call(self, method: str, *args: Any) -> Any:
        """A call on the producer's connection. Behind a fetch sent ahead (``mail.start``) it
        ends that fetch's wait at god; its results are kept for ``results()``."""
        if not self.mail.started:
            return self.client.call(method, *args)
        self.client.send(method, *args)
        self._read_early()
        return self.client.reply()

    def _read_early(self) -> None:
        """Read the answer to the fetch sent ahead, for ``results()``."""
        self._early.append(self.mail.fetch(lambda: self.waiting))

    def flush(self) -> None:
        """Wait until god holds every batch sent (``put_many(wait=False)``)."""
        while self._in_flight:
            self._confirm_oldest()

    def _confirm_oldest(self, *, fetch_behind: bool = False) -> None:
        """Read the oldest confirmation. ``fetch_behind``: a fetch was sent after the batches
        in flight; else one sent is older than they are, and is read first."""
        if self.mail.started and not fetch_behind:
            self._read_early()
        if self.client.reply():
            self._accept(self._in_flight.popleft())
            return
        # Not taken: god stayed full, and so every batch sent after it was refused as well
        # (each is taken only after the one before it). Read their answers, then send them
        # again one at a time, each waiting for room.
        for _ in range(len(self._in_flight) - 1):
            self.client.reply()
        if self.mail.started:  # behind them: read before the puts are made again, one at a time
            self._read_early()
        said = self._say_full(self._in_flight[0][0][PUT_N])  # it waited PUT_WAIT_S already
        while self._in_flight:
            self._put_waiting(self._in_flight[0][0], said=said)
            self._accept(self._in_flight.popleft())
            said = False

    def _accept(self, sent: tuple[Put, list[tuple[int, tuple[Any, str, str | None]]]]) -> None:
        put, kept = sent
        self.accepted += put[PUT_N]
        self.waiting.update(kept)

    def _say_full(self, n: int) -> bool:
        """Say that god is full and n tasks wait to be put; True."""
        self._log.warning("god's queues are full ({} tasks waiting, its --capacity); waiting to put {} more",
                          self.client.server_info.get("capacity", "?"), count(n, "task"))
        return True

    def _put_waiting(self, put: Put, *, said: bool = False) -> None:
        """Put one batch, nothing else in flight, waiting for room while god is full (``said``:
        the wait was told already)."""
        n = put[PUT_N]
        waiting = said
        while not self.client.put_many(put, PUT_WAIT_S):
            if self._should_stop():
                raise Interrupted(f"stopped while god was full: {count(n, 'task')} not put")
            if not waiting:
                waiting = self._say_full(n)
        if waiting:
            self._log.info("god has room again; {} put", "the batch's 1 task" if n == 1 else f"all {n} tasks of the batch")

    def _label(self, seq: int) -> str:
        """The name that marks a task's lines: its task function's (the consumer's own: "task")."""
        held = self.waiting.get(seq)
        return (held[2] or "task").rpartition(":")[2] if held is not None else "task"

    def results(self, timeout: float | None = None) -> Iterator[Result]:
        """Yield the results of this producer's tasks as they come, until none is outstanding.

        Tasks put while iterating are waited for too. A god that restarts meanwhile has
        lost the results it had not handed over yet: those ids end up in
        ``lost_in_restart`` (their results are in god's results file) instead.

        Raises:
            ConfigError: the producer was not made with ``results=True``.
            TimeoutError: timeout seconds passed with tasks still outstanding.
        """
        if not self.keeps_results:
            raise ConfigError("results() needs a producer made with results=True (connect(results=True))")
        self.flush()
        deadline = None if timeout is None else time.monotonic() + timeout
        while self.waiting:
            if self._should_stop():
                raise Interrupted(f"stopped with {count(len(self.waiting), 'result')} outstanding")
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError(f"{count(len(self.waiting), 'result')} still outstanding after {timeout}s")
            posted, gone = self._early.popleft() if self._early else self.mail.fetch(lambda: self.waiting)
            for tid in gone:
                if self.waiting.pop(int(tid.rpartition("/")[2]), _GONE) is not _GONE:
                    self.lost_in_restart.append(tid)
            if gone:
                self._log.warning("god restarted: {} had finished before, their results are in god's "
                                  "results file, not here", count(len(gone), "task"))
            for lo, values, consumer, attempts in posted:
                for seq, v in enumerate(values, lo):
                    held = self.waiting.pop(seq, None)
                    if held is not None:  # not a duplicate
                        payload, queue, task = held
                        yield Result.made(task_id(self.name, seq), payload, v, consumer=consumer, attempts=attempts,
                                          queue=queue, task=task)


def connect(
    address: str | None = None, *, results: bool = False, give_up_after: float = GIVE_UP_AFTER_S,
    settings: Settings | None = None, **options: Any,
) -> Producer:
    """A connected producer: god's address, key and TLS files from the environment, as the CLI
    finds them (GOD_CONNECTION, GOD_ADDRESS, GOD_AUTHKEY or GOD_AUTHKEY_FILE, GOD_TLS_CA,
    GOD_TLS_CERT, GOD_TLS_KEY, GOD_INSECURE_PLAIN_TCP).

    Args:
        address: god's HOST:PORT; default GOD_ADDRESS, else 127.0.0.1:5678.
        results: keep the results of this producer's tasks for ``Producer.results()``.
        options: what its puts use unless they say otherwise (``PutOptions``: queue, task,
            priority, retries, retry_backoff, retry_max_backoff, retry_on).
        give_up_after: seconds to keep trying an unreachable god.
        settings: everything ready-made instead (address, key, TLS).

    Raises:
        GodError: no key, a bad address, or god unreachable (UnreachableError).
    """
    if settings is None:
        settings = client_settings(address, give_up_after=give_up_after)
    producer = Producer(settings, results=results, **options)
    producer.connect()
    return producer


@dataclass(frozen=True, slots=True)
class PutOptions:
    """What a put asks of god: its queue, function, priority, and how often to retry a failure."""

    queue: str = DEFAULT_QUEUE
    task: str | None = None  # module:function; None: each consumer's own --task
    priority: int = 0  # 0..9, higher first
    retries: int = 0  # times a task whose function raised is served again
    retry_backoff: float = 1.0  # seconds before the first retry; each next one waits twice as long
    retry_max_backoff: float = MAX_BACKOFF_S  # the longest wait before a retry
    retry_on: tuple[str, ...] | None = None  # exception class names retried; None: any
    delay: float | None = None  # seconds from the put before the tasks are served
    at: float | None = None  # or the Unix time from which they are served
    after: tuple[str, ...] | None = None  # ids of tasks whose results they wait for (god serves them after)
    #: What each task needs of a consumer ({"gpu": 1, "mem": 30 << 30}; shared/resources.py):
    #: god gives it only to one with that free, and counts it used while the task runs.
    resources: Any = None

    def given(self, options: dict[str, Any]) -> PutOptions:
        """These options, with those given (None: not given) instead, checked.

        Raises:
            ConfigError: an option that does not exist, or a value god would refuse.
        """
        unknown = [k for k in options if k not in PUT_OPTIONS]
        if unknown:
            raise ConfigError(f"not a put option: {', '.join(unknown)} (they are {', '.join(PUT_OPTIONS)})")
        o = replace(self, **{k: v for k, v in options.items() if v is not None})
        if isinstance(o.after, str):
            o = replace(o, after=(o.after,))
        elif o.after is not None and hasattr(o.after, "__iter__"):  # a list, a generator: each id once, in order
            o = replace(o, after=tuple(dict.fromkeys(o.after)) or None)
        if isinstance(o.retry_on, str):
            o = replace(o, retry_on=(o.retry_on,))
        elif o.retry_on is not None and not isinstance(o.retry_on, tuple):
            o = replace(o, retry_on=tuple(o.retry_on))
        try:
            if isinstance(o.resources, str):
                o = replace(o, resources=resources.parse(o.resources))
            if o.resources is not None:
                o = replace(o, resources=resources.check(o.resources) or None)
            check_queue(o.queue)
            check_priority(o.priority)
            check_retry(o.policy())
            check_after(o.after)
        except ValueError as e:
            raise ConfigError(str(e)) from None
        if o.task is not None and (not isinstance(o.task, str) or ":" not in o.task or o.task.startswith(":")):
            raise ConfigError(f"task {o.task!r} is not of the form module:function")
        if o.task is not None and o.task.endswith(CALL):
            raise ConfigError(f"task {o.task!r}: names ending in {CALL} are the executor's calls (producer.Executor)")
        for name, when in (("delay", o.delay), ("at", o.at)):
            if when is not None and (not isinstance(when, (int, float)) or not math.isfinite(when)
                                     or (name == "delay" and when < 0)):
                raise ConfigError(f"{name} {when!r} is not a number of seconds{' from 0' if name == 'delay' else ''}")
        if o.delay is not None and o.at is not None:
            raise ConfigError("give delay or at, not both")
        return o

    def due(self) -> float | None:
        """The Unix time before which god does not serve the tasks (None: at once)."""
        return self.at if self.at is not None else time.time() + self.delay if self.delay else None

    def policy(self) -> RetryPolicy | None:
        """The retry policy god keeps with the batch (None: no retries)."""
        if not self.retries:
            return None
        return self.retries, self.retry_backoff, self.retry_max_backoff, self.retry_on


#: The put options' names, in order.
PUT_OPTIONS = tuple(f.name for f in fields(PutOptions))
