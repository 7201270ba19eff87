"""Puts batches of tasks on god under producer-made ids, waiting while god's queue is full."""

from __future__ import annotations

import itertools
import os
import pickle
import secrets
from collections.abc import Callable
from typing import Any

from loguru import logger

from shared.client import GodClient
from shared.config import Settings, hostname
from shared.errors import ConfigError, Interrupted
from shared.records import TaskIn, describe

PUT_WAIT_S = 2.0  # seconds one put call may wait at god for room in a full queue
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

    def __init__(self, settings: Settings, *, should_stop: Callable[[], bool] = lambda: False) -> None:
        self.name = f"{hostname()}:{os.getpid()}:{secrets.token_hex(3)}"
        self._should_stop = should_stop
        self.client = GodClient(settings, name=self.name, role="producer", info={"host": hostname()},
                                should_stop=should_stop)
        self._seq = itertools.count(1)
        self.accepted = 0
        self._log = logger.bind(role="producer")

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
        return [t[0] for t in tasks]
