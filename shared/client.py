"""The client producers, consumers and god's commands use: god's broker methods, typed.

Each method is one call over the reconnecting connection of ``Caller`` (shared/caller.py),
retried as it retries.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from shared.caller import Caller
from shared.config import Settings
from shared.records import Ack, Grant, Put, Run
from shared.stats import Stats


class GodClient(Caller):
    """A typed, reconnecting connection to god's broker, for one thread."""

    def connect(self) -> dict[str, Any]:
        """Make sure a connection is open (retrying like any call); returns god's hello."""
        self.call("ping")
        return self.server_info

    def put_many(self, put: Put, timeout: float) -> int:
        """Offer a batch; returns its size once god holds it, or 0 if god stayed full for timeout."""
        return int(self.call("put_many", self.name, put, timeout))

    def send_put(self, put: Put, timeout: float, after: int | None, *, hold: bool = False) -> None:
        """Offer a batch without waiting: ``reply()`` says, in turn, its size once god holds it,
        or 0 (god stayed full, or ``after``, the last seq of the batch sent before it, was not
        taken). ``hold``: as ``send``."""
        self.send("put_many", self.name, put, timeout, after, hold=hold)

    def lease(self, queues: tuple[str, ...], max_n: int, timeout: float, seq: int) -> list[Grant]:
        """Lease up to max_n tasks from the queues, in order, waiting up to timeout for the first one."""
        return list(self.call("lease", self.name, queues, max_n, timeout, seq))

    def ack_many(self, acks: list[Ack]) -> int:
        """Send results; returns how many were new (the rest were duplicates)."""
        return int(self.call("ack_many", self.name, acks))

    def cancel(self, ids: list[str] | None = None, queue: str | None = None,
               producer: str | None = None, *, started: bool = True, why: str | None = None) -> dict[str, int]:
        """Cancel tasks; how many were waiting, scheduled and running (and done: with
        ``started`` False, which leaves running tasks be)."""
        out: dict[str, int] = self.call("cancel", ids, queue, producer, started, why)
        return out

    def schedule_add(self, name: str, every: float | None, cron: str | None, queue: str, task: str | None,
                     payload: Any) -> dict[str, Any]:
        """Have god put a task every N seconds, or at a crontab line's times."""
        out: dict[str, Any] = self.call("schedule_add", name, every, cron, queue, task, payload)
        return out

    def schedule_list(self) -> list[dict[str, Any]]:
        """Every schedule god keeps."""
        out: list[dict[str, Any]] = self.call("schedule_list")
        return out

    def schedule_remove(self, name: str) -> dict[str, Any]:
        """Stop a schedule."""
        out: dict[str, Any] = self.call("schedule_remove", name)
        return out

    def drain(self, consumer: str) -> int:
        """Ask a consumer to drain; how many tasks it holds."""
        return int(self.call("drain", consumer))

    def heartbeat(self) -> tuple[bool, dict[str, Any]]:
        """Keep our leases alive: (False if god had already given us up, what operators asked
        of us: "drain" (bool), "stop" (the (producer, seq) of cancelled tasks we run))."""
        alive, orders = self.call("heartbeat", self.name)
        return bool(alive), dict(orders)

    def worker_lost(self, worker: str, running: list[Run], timed_out: str | None = None) -> None:
        """Our worker process died (or was stopped for running over --task-timeout: timed_out
        says so) while running those tasks; god serves again the rest of what it held."""
        self.call("worker_lost", worker, running, timed_out)

    def bye(self) -> None:
        """Say we are leaving; god hands back anything still leased to us."""
        self.call("bye", self.name)

    def set_limit(self, queue: str, rate: float | None) -> float | None:
        """Start at most rate tasks a second from the queue (None: no limit); returns the limit it had."""
        before: float | None = self.call("set_limit", queue, rate)
        return before

    def pause(self, queue: str, paused: bool = True) -> bool:
        """Pause a queue, or resume it; whether it was paused."""
        return bool(self.call("pause", queue, paused))

    def task(self, tid: str) -> dict[str, Any]:
        """Where a task is, and its results line once it has one."""
        out: dict[str, Any] = self.call("task", tid)
        return out

    def dead(self, queue: str | None = None) -> list[dict[str, Any]]:
        """The dead letters god keeps, oldest first."""
        out: list[dict[str, Any]] = self.call("dead", queue)
        return out

    def failed(self, queue: str | None = None) -> list[dict[str, Any]]:
        """The last failed results god saw, oldest first."""
        out: list[dict[str, Any]] = self.call("failed", queue)
        return out

    def requeue(self, ids: list[str] | None, queue: str | None = None) -> list[tuple[str, str]]:
        """Serve dead letters again; (old id, new id) of each."""
        out: list[tuple[str, str]] = self.call("requeue", ids, queue)
        return out

    def purge(self, queue: str | None = None, older_than_s: float | None = None) -> int:
        """Drop dead letters; how many."""
        return int(self.call("purge", queue, older_than_s))

    def dashboard_address(self) -> str | None:
        """God's dashboard address, if it serves one."""
        out: str | None = self.call("dashboard_address")
        return out

    def stats(self) -> Stats:
        """God's counts: waiting, running, done, failed, dead, duplicates, consumers, queues, ..."""
        stats: Stats = self.call("stats")
        return stats


class SideClient:
    """A second connection of a client's, made at its first call and shared by threads, one
    call at a time: a worker's running tasks' lines and the large values its calls fetch go on
    it, never behind the lease and ack calls of its main connection."""

    def __init__(self, settings: Settings, *, name: str, role: str, info: dict[str, Any],
                 should_stop: Callable[[], bool] | None = None) -> None:
        self._settings, self._name, self._role, self._info = settings, name, role, info
        self._should_stop = should_stop
        self._client: GodClient | None = None
        self._lock = threading.Lock()

    def call(self, method: str, *args: Any) -> Any:
        """A broker method's answer (as ``GodClient.call``)."""
        with self.session() as client:
            return client.call(method, *args)

    @contextmanager
    def session(self) -> Iterator[GodClient]:
        """The connection, for calls of one thread's in a row (pipelined, say) with no other between."""
        with self._lock:
            if self._client is None:
                self._client = GodClient(self._settings, name=self._name, role=self._role, info=self._info,
                                         should_stop=self._should_stop)
            yield self._client

    def close(self) -> None:
        with self._lock:
            if self._client is not None:
                self._client.close()
