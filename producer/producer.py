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

import itertools
import os
import pickle
import secrets
import time
from collections.abc import Callable, Iterator
from types import TracebackType
from typing import Any

from loguru import logger

from shared.client import GodClient
from shared.config import (
    CLIENT_HOST, DEFAULT_PORT, GIVE_UP_AFTER_S, Settings, address_from_env, hostname, load_settings,
)
from shared.errors import ConfigError, Interrupted
from shared.records import Result, TaskIn, describe

PUT_WAIT_S = 2.0  # seconds one put call may wait at god for room in a full queue
RESULTS_WAIT_S = 1.0  # seconds one results call may wait at god for the next result
RESULTS_BATCH = 1000  # results fetched per call
_GONE = object()  # not waited for (any more)
MAX_PAYLOAD = 16 * 2**20  # bytes, until god says its own limit


class PayloadError(ConfigError):
    """A payload that cannot go to god: it cannot be pickled, or it is over god's size limit."""

    def __init__(self, message: str, *, index: int) -> None:
        super().__init__(message)
        self.index = index  # of the bad payload in its batch; the ones before it can be put


def check_payloads(payloads: list[Any], where: Callable[[int], str], max_payload: int) -> None:
    """Make sure god can take every payload: picklable, and at most max_payload bytes each.

    One pickle of the whole batch settles the usual case; only a batch that fails or is
    over the limit as a whole is looked at payload by payload.

    Raises:
        PayloadError: naming where the first bad payload came from.
    """
    try:
        if len(pickle.dumps(payloads, pickle.HIGHEST_PROTOCOL)) <= max_payload:
            return
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


class Producer:
    """Gives each task a unique id and offers batches until god has taken all of them.

    Ids make re-sending safe: a batch re-sent after a dropped connection is not queued twice.
    """

    def __init__(
        self, settings: Settings, *, should_stop: Callable[[], bool] = lambda: False, results: bool = False
    ) -> None:
        """A producer; with ``results`` god keeps the results of its tasks for ``results()``."""
        self.name = f"{hostname()}:{os.getpid()}:{secrets.token_hex(3)}"
        self._should_stop = should_stop
        self.client = GodClient(settings, name=self.name, role="producer",
                                info={"host": hostname(), "results": results}, should_stop=should_stop)
        self._seq = itertools.count(1)
        self.accepted = 0
        self.keeps_results = results
        # Tasks put whose results have not come yet, in order: id -> payload. The producer keeps
        # its payloads, so god does not send them back with the results.
        self.waiting: dict[str, Any] = {}
        self.lost_in_restart: list[str] = []  # done before god restarted: results only in god's file
        self._confirmed = 0  # the last result number taken from god's mailbox
        self._run = ""  # the god run those numbers belong to
        self._log = logger.bind(role="producer")

    def __enter__(self) -> Producer:
        return self

    def __exit__(self, kind: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None) -> None:
        self.close()

    def close(self) -> None:
        """Close the connection to god."""
        self.client.close()

    def put(self, payload: Any) -> str:
        """Put one task; returns its id once god holds it."""
        return self.put_many([payload])[0]

    def connect(self) -> dict[str, Any]:
        """Reach god (retrying as configured); returns its parameters."""
        return self.client.connect()

    def put_many(self, payloads: list[Any], where: Callable[[int], str] | None = None) -> list[str]:
        """Put one batch; returns the task ids once god holds every task.

        A payload god cannot take stops the batch there: the ones before it are put, then
        PayloadError says where it came from (``where(i)``, else its place in the batch).

        Raises:
            PayloadError: a payload cannot be pickled or is too big.
            Interrupted: a stop was requested while god's queue was full.
        """
        try:
            check_payloads(payloads, where or (lambda i: f"payload {i + 1} of the batch"),
                           int(self.client.server_info.get("max_payload", MAX_PAYLOAD)))
        except PayloadError as e:
            if e.index:
                self.put_many(payloads[: e.index])
            raise
        tasks: list[TaskIn] = [(f"{self.name}/{next(self._seq)}", p) for p in payloads]
        i, waiting = 0, False
        while i < len(tasks):
            i += self.client.put_many(tasks[i:] if i else tasks, PUT_WAIT_S)
            if i < len(tasks):
                if self._should_stop():
                    self.accepted += i
                    raise Interrupted(f"stopped while god's queue was full: {len(tasks) - i} tasks not put")
                if not waiting:
                    self._log.warning("god's queue is full ({} capacity); waiting to put {} more tasks",
                                      self.client.server_info.get("capacity", "?"), len(tasks) - i)
                    waiting = True
        if waiting:
            self._log.info("god has room again; all {} tasks of the batch put", len(tasks))
        self.accepted += len(tasks)
        ids = [t[0] for t in tasks]
        if self.keeps_results:
            self.waiting.update(zip(ids, payloads))
        return ids

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
        deadline = None if timeout is None else time.monotonic() + timeout
        while self.waiting:
            if self._should_stop():
                raise Interrupted(f"stopped with {len(self.waiting)} results outstanding")
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError(f"{len(self.waiting)} results still outstanding after {timeout}s")
            run = str(self.client.server_info.get("run", ""))
            check = list(self.waiting) if run and self._run and run != self._run else None
            if run != self._run:
                self._run, self._confirmed = run, 0
            posted, gone = self.client.results_for(run, self._confirmed, RESULTS_BATCH, RESULTS_WAIT_S, check)
            for tid in gone:
                if self.waiting.pop(tid, _GONE) is not _GONE:
                    self.lost_in_restart.append(tid)
            if gone:
                self._log.warning("god restarted: {} tasks had finished before, their results are in god's "
                                  "results file, not here", len(gone))
            for number, (r, consumer, attempts) in posted:
                self._confirmed = number
                payload = self.waiting.pop(r[0], _GONE)
                if payload is not _GONE:  # not a duplicate
                    yield Result.from_wire(r, payload=payload, consumer=consumer, attempts=attempts)


def connect(
    address: str | None = None, *, results: bool = False, give_up_after: float = GIVE_UP_AFTER_S,
    settings: Settings | None = None,
) -> Producer:
    """A connected producer: god's address and key from the environment, as the CLI finds them.

    Args:
        address: god's HOST:PORT; default GOD_ADDRESS, else 127.0.0.1:5678.
        results: keep the results of this producer's tasks for ``Producer.results()``.
        give_up_after: seconds to keep trying an unreachable god.
        settings: everything ready-made instead (address, key, TLS).

    Raises:
        GodError: no key, a bad address, or god unreachable (UnreachableError).
    """
    if settings is None:
        text = address or address_from_env(f"{CLIENT_HOST}:{DEFAULT_PORT}")
        settings = load_settings(text, None, default_host=CLIENT_HOST, give_up_after=give_up_after)
    producer = Producer(settings, results=results)
    producer.connect()
    return producer
