"""Puts batches of tasks on god under producer-made ids, waiting while god's queue is full."""

from __future__ import annotations

import itertools
import os
import secrets
from collections.abc import Callable
from typing import Any

from loguru import logger

from shared.client import GodClient
from shared.config import Settings, hostname
from shared.errors import Interrupted
from shared.records import TaskIn

PUT_WAIT_S = 2.0  # seconds one put call may wait at god for room in a full queue


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

    def put_many(self, payloads: list[Any]) -> list[str]:
        """Put one batch; returns the task ids once god holds every task.

        Raises:
            Interrupted: a stop was requested while god's queue was full.
        """
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
