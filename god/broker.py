"""The broker: god's task queue, leases, acks, dedupe, dead letters and counts.

A plain object with one lock: no sockets and no threads of its own. God's server threads
call it (one thread per client connection), god's monitor calls ``reap`` and
``take_results``. Lease times come from the injected clock, so tests expire leases
without sleeping; only the waits inside ``put_many`` and ``lease`` use real time.
"""

from __future__ import annotations

import itertools
import secrets
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from god.journal import Journal, Recovered, dumps
from god.mailbox import Arrivals, Mailboxes, Posted
from shared.records import OK, VALUE, ERROR, Leased, ResultIn, TaskIn

LEASE_S = 5.0  # seconds without a heartbeat before a consumer's tasks are served again
BEATS_PER_LEASE = 5  # consumers beat this many times per lease period
CAPACITY = 1_000_000  # tasks waiting in the queue before producers are made to wait
MAX_PAYLOAD = 16 * 2**20  # bytes of one pickled payload; producers check before sending
MAX_ATTEMPTS = 3  # leases of one task whose consumer dies before it is dead-lettered
FORGET_S = 300.0  # seconds a lost consumer or an idle producer stays in the stats
CQ_KEEP = 100_000  # results kept for tutorial clients that read the result queue
TUTORIAL_PREFIX = "tutorial:"  # ids of tasks put through the queue views

_MISSING = object()


def _nothing() -> None:
    pass

#: A result as the monitor takes it: (wire result, payload, consumer, attempts).
Outgoing = tuple[ResultIn, Any, str, int]


@dataclass(slots=True)
class ConsumerState:
    """What god knows of one consumer."""

    name: str
    last_seen: float
    host: str = ""
    processes: int = 0
    alive: bool = True
    leased: dict[str, None] = field(default_factory=dict)  # an ordered set of task ids
    done: int = 0
    failed: int = 0
    lost: int = 0
    lease_seq: int | None = None
    last_batch: list[Leased] = field(default_factory=list)


@dataclass(slots=True)
class ProducerState:
    """What god knows of one producer."""

    name: str
    last_seen: float
    host: str = ""
    put: int = 0
    duplicates: int = 0


def _wait(cond: threading.Condition, deadline: float | None) -> bool:
    """Wait on cond until notified or the deadline (None: no deadline); False once past it."""
    if deadline is None:
        cond.wait()
        return True
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        return False
    cond.wait(remaining)
    return True


class Broker:
    """Queues, leases and results with at-least-once delivery and one result per task id."""

    def __init__(
        self,
        *,
        capacity: int = CAPACITY,
        lease_s: float = LEASE_S,
        max_attempts: int = MAX_ATTEMPTS,
        max_payload: int = MAX_PAYLOAD,
        now: Callable[[], float] = time.monotonic,
        journal: Journal | None = None,
    ) -> None:
        self.capacity = capacity
        self.journal = journal
        self.lease_s = lease_s
        self.max_attempts = max_attempts
        self.max_payload = max_payload
        self._now = now
        self._started = now()
        self._lock = threading.Lock()
        self._not_empty = threading.Condition(self._lock)
        self._not_full = threading.Condition(self._lock)
        self._cq_ready = threading.Condition(self._lock)
        self.results_ready = threading.Event()

        self._queue: deque[str] = deque()  # ids waiting, next first; may hold stale ids
        self._stale = 0  # ids in _queue that were finished while waiting
        self._tasks: dict[str, Any] = {}  # payload of every task not finished yet
        self._attempts: dict[str, int] = {}  # leases so far, of tasks not finished yet
        self._owner: dict[str, str] = {}  # consumer holding each leased task
        self._seen: set[str] = set()  # every id ever accepted: dedupes puts and results
        self._consumers: dict[str, ConsumerState] = {}
        self._producers: dict[str, ProducerState] = {}
        self._outbox: deque[Outgoing] = deque()
        self.mailboxes = Mailboxes()  # results kept for producers that wait for theirs
        self.more_figures: Callable[[], dict[str, Any]] = dict  # the door's, once god serves
        # Called after a change that may let a waiting call go on (tasks to lease, room to
        # put, results to fetch): the hub, once god serves, retries the calls it holds.
        self.changed: Callable[[], None] = _nothing
        self._arrivals = Arrivals()
        self._cq: deque[Any] = deque(maxlen=CQ_KEEP)
        self._dead: dict[str, tuple[Any, str, int]] = {}
        # Tutorial tasks get ids unique to this run: a restarted god must not take them
        # for tasks of the last run that its journal knows are done.
        self.run = secrets.token_hex(6)  # this god's life: restarts get another
        self._tutorial_run = f"{TUTORIAL_PREFIX}{self.run}:"
        self._tutorial_ids = itertools.count(1)
        self._counts = dict.fromkeys(
            ("accepted", "done", "failed", "dead", "duplicates", "redelivered", "handed_out"), 0
        )

    # -- helpers (lock held) ------------------------------------------------------------

    @property
    def _pending(self) -> int:
        return len(self._queue) - self._stale

    def _consumer(self, name: str) -> ConsumerState:
        c = self._consumers.get(name)
        now = self._now()
        if c is None:
            c = self._consumers[name] = ConsumerState(name, now)
        c.last_seen = now
        c.alive = True
        return c

    def _producer(self, name: str) -> ProducerState:
        p = self._producers.get(name)
        if p is None:
            p = self._producers[name] = ProducerState(name, self._now())
        p.last_seen = self._now()
        return p

    # Waiters for tasks are woken one at a time: whoever takes tasks wakes the next waiter
    # if some are left. notify_all woke every waiting lease (64 consumers: 64 threads per
    # put, all but one going back to sleep), which cost more than the puts themselves.

    def _pop_next(self) -> str | None:
        while self._queue:
            tid = self._queue.popleft()
            if tid in self._tasks and tid not in self._owner:
                return tid
            self._stale -= 1
        return None

    def _finish(self, tid: str, r: ResultIn, payload: Any, consumer: str, attempts: int) -> None:
        self._outbox.append((r, payload, consumer, attempts))
        if self.mailboxes:
            self.mailboxes.post(tid, (r, consumer, attempts))  # the producer has the payload
        if tid.startswith(TUTORIAL_PREFIX):
            self._cq.append(r[VALUE] if r[OK] else r[ERROR])
            self._cq_ready.notify()

    def _dead_letter(self, tid: str, reason: str) -> None:
        payload = self._tasks.pop(tid)
        attempts = self._attempts.pop(tid, 0)
        self._dead[tid] = (payload, reason, attempts)
        self._counts["dead"] += 1
        self._finish(tid, (tid, False, None, f"dead letter: {reason}", None), payload, "god", attempts)

    def _requeue(self, c: ConsumerState, ids: list[str], *, counted: bool, reason: str) -> int:
        """Put tasks leased to c back at the front, or dead-letter those out of attempts."""
        back: list[str] = []
        for tid in ids:
            if self._owner.get(tid) != c.name:
                continue  # finished meanwhile, or given to another consumer since
            del self._owner[tid]
            c.leased.pop(tid, None)
            if not counted:
                self._attempts[tid] = max(0, self._attempts.get(tid, 1) - 1)
                if not self._attempts[tid]:
                    self._arrivals.served(-1)  # never really served: it waits again
            elif self._attempts.get(tid, 0) >= self.max_attempts:
                self._dead_letter(tid, f"{reason}; {self._attempts.get(tid, 0)} attempts")
                continue
            back.append(tid)
        self._queue.extendleft(reversed(back))
        self._counts["redelivered"] += len(back)
        if counted and back and self.journal is not None:
            self.journal.set_attempts([(tid, self._attempts[tid]) for tid in back])
        if back:
            self._not_empty.notify()
        if len(back) < len(ids):
            self.results_ready.set()
        if ids:
            self.changed()
        return len(back)

    # -- the client API (BROKER_METHODS) ---------------------------------------------------

    def ping(self) -> None:
        """Do nothing: a round trip that proves the connection works."""

    def hello(self, name: str, role: str, info: dict[str, Any]) -> dict[str, Any]:
        """Register a producer or consumer; returns the parameters it must follow."""
        with self._lock:
            if role == "consumer":
                c = self._consumer(name)
                c.host, c.processes = str(info.get("host", "")), int(info.get("processes", 0))
            elif role == "producer":
                self._producer(name).host = str(info.get("host", ""))
                if info.get("results"):
                    self.mailboxes.open(name)
        return {
            "lease_s": self.lease_s,
            "heartbeat_s": self.lease_s / BEATS_PER_LEASE,
            "capacity": self.capacity,
            "max_attempts": self.max_attempts,
            "max_payload": self.max_payload,
            "run": self.run,
        }

    def put_many(self, producer: str, tasks: list[TaskIn], timeout: float = 0.0) -> int:
        """Queue tasks whose ids are new; waits up to timeout for room when the queue is full.

        With a journal, returns only once the tasks it counts are committed to it.

        Returns:
            How many tasks, from the front of the list, are now taken care of (queued now
            or before): the caller offers the rest again. Fewer than len(tasks) means full.
        """
        # Pickled whole before taking the lock, so other clients do not wait on it: the
        # journal row when every task is new and there is room (the usual case).
        whole = dumps(tasks) if self.journal is not None else None
        i, ticket = self.offer(producer, tasks, 0, whole)
        deadline = time.monotonic() + timeout
        while i < len(tasks) and timeout > 0:
            with self._lock:
                if self._pending >= self.capacity and not _wait(self._not_full, deadline):
                    break
            i, more = self.offer(producer, tasks, i)
            ticket = max(ticket, more)
        if self.journal is not None and ticket:
            self.journal.wait(ticket)
        return i

    def offer(self, producer: str, tasks: list[TaskIn], start: int = 0, whole: bytes | None = None) -> tuple[int, int]:
        """Queue what there is room for, from tasks[start:], without waiting.

        Args:
            whole: ``dumps(tasks)``, made by the caller outside the lock, for the journal.

        Returns:
            (how many from the front are taken care of, the journal ticket to wait for
            before confirming them; 0 without a journal).
        """
        journal = self.journal
        i, n, accepted, ticket = start, len(tasks), 0, 0
        with self._lock:
            p = self._producer(producer)
            seen, queue, payloads = self._seen, self._queue, self._tasks
            room = self.capacity - self._pending
            rows = []
            dupes = False
            while i < n:
                tid, payload = tasks[i]
                if tid in seen:
                    p.duplicates += 1
                    dupes = True
                elif room > 0:
                    seen.add(tid)
                    payloads[tid] = payload
                    queue.append(tid)
                    room -= 1
                    accepted += 1
                    rows.append(tid)
                else:
                    break
                i += 1
            if journal is not None and i > start:
                # Appended under the lock, so a re-sent put that finds these ids seen
                # waits for this same commit (the current ticket) before confirming.
                if not rows:
                    ticket = journal.ticket
                elif start == 0 and i == n and not dupes and whole is not None:
                    ticket = journal.add_tasks(rows, whole)
                else:  # some were there already, or there was no room for all: journal the new ones
                    ticket = journal.add_tasks(rows, dumps([(tid, payloads[tid]) for tid in rows]))
            if accepted:
                p.put += accepted
                self._counts["accepted"] += accepted
                self._arrivals.accepted(accepted, self._now())
                self._not_empty.notify()
        if accepted:
            self.changed()
        return i, ticket

    def lease(self, consumer: str, max_n: int, timeout: float = 0.0, seq: int | None = None) -> list[Leased]:
        """Lease up to max_n tasks, waiting up to timeout for the first.

        A retried call (same seq as the consumer's last lease, whose reply was lost) gets
        the same tasks again, so no task is left leased to a consumer that never saw it.
        """
        with self._lock:
            c = self._consumer(consumer)
            if seq is not None and seq == c.lease_seq:
                return [t for t in c.last_batch if t[0] in c.leased]
            if timeout > 0 and self._pending <= 0:
                deadline = time.monotonic() + timeout
                while self._pending <= 0 and _wait(self._not_empty, deadline):
                    pass
            batch = self._lease_now(c, max_n, seq)
        if batch:
            self.changed()
        return batch

    def has_waiting(self) -> bool:
        """Whether tasks wait to be leased: a hint, read without the lock."""
        return self._pending > 0

    def has_room(self) -> bool:
        """Whether a put would find room: a hint, read without the lock."""
        return self._pending < self.capacity

    def try_lease(self, consumer: str, max_n: int, seq: int | None = None) -> list[Leased] | None:
        """``lease`` without waiting, for a caller that waits elsewhere: None (and nothing
        recorded, so the same seq may try again) while no task waits."""
        with self._lock:
            c = self._consumer(consumer)
            if seq is not None and seq == c.lease_seq:
                return [t for t in c.last_batch if t[0] in c.leased]
            if self._pending <= 0:
                return None
            batch = self._lease_now(c, max_n, seq)
        self.changed()
        return batch

    def _lease_now(self, c: ConsumerState, max_n: int, seq: int | None) -> list[Leased]:
        """Lease up to max_n waiting tasks to c (lock held)."""
        batch: list[Leased] = []
        attempts, owner, leased = self._attempts, self._owner, c.leased
        while len(batch) < max_n:
            tid = self._pop_next()
            if tid is None:
                break
            a = attempts.get(tid, 0) + 1
            attempts[tid] = a
            if a == 1:
                self._arrivals.served()
            owner[tid] = c.name
            leased[tid] = None
            batch.append((tid, self._tasks[tid], a))
        c.lease_seq, c.last_batch = seq, batch
        if batch:
            self._not_full.notify_all()
        if batch and self._pending > 0:
            self._not_empty.notify()  # pass it on: one waiter woken per round, not all of them
        return batch

    def ack_many(self, consumer: str, results: list[ResultIn]) -> int:
        """Record results; the first result for a task id wins, later ones are counted duplicates.

        Returns:
            How many results were new.
        """
        new = 0
        with self._lock:
            c = self._consumer(consumer)
            tasks, owner, consumers, counts = self._tasks, self._owner, self._consumers, self._counts
            for r in results:
                tid = r[0]
                payload = tasks.pop(tid, _MISSING)
                if payload is _MISSING:
                    if tid in self._seen:
                        counts["duplicates"] += 1
                        continue
                    # A task god does not know (it restarted without a journal): keep the result.
                    self._seen.add(tid)
                    payload = None
                else:
                    holder = owner.pop(tid, None)
                    if holder is None:
                        self._stale += 1  # it was waiting in the queue again
                    else:
                        consumers[holder].leased.pop(tid, None)
                attempts = self._attempts.pop(tid, 1)
                if r[OK]:
                    c.done += 1
                    counts["done"] += 1
                else:
                    c.failed += 1
                    counts["failed"] += 1
                self._finish(tid, r, payload, consumer, attempts)
                new += 1
        if new:
            self.results_ready.set()
            self.changed()
        return new

    def heartbeat(self, consumer: str) -> bool:
        """Keep a consumer's leases alive; False if it had been given up (its tasks requeued)."""
        with self._lock:
            c = self._consumers.get(consumer)
            was_alive = c is not None and c.alive
            self._consumer(consumer)
            return was_alive

    def release(self, consumer: str, task_ids: list[str], crashed: list[str] | None = None) -> int:
        """Take back leased tasks: ``task_ids`` were not started; ``crashed`` killed their worker.

        Returns:
            How many went back to the queue.
        """
        with self._lock:
            c = self._consumer(consumer)
            n = self._requeue(c, list(task_ids), counted=False, reason="released")
            if crashed:
                n += self._requeue(c, list(crashed), counted=True, reason=f"its worker on {consumer} died")
            return n

    def results_for(
        self, producer: str, run: str, confirmed: int, max_n: int, timeout: float = 0.0,
        check: list[str] | None = None,
    ) -> tuple[list[Posted], list[str]]:
        """Results of the producer's own tasks, numbered; those up to ``confirmed`` it has already.

        Only for a producer whose hello asked for results; waits up to timeout for the first.
        ``run`` is the god run the numbers came from (a restarted god numbers anew).

        Returns:
            (the results, the ids in ``check`` that are done but whose results this god
            never had: finished before it restarted).
        """
        with self._lock:
            self._producer(producer)
            gone = [tid for tid in check or () if tid in self._seen and tid not in self._tasks]
        if run != self.run:
            confirmed = 0
        if gone:  # done, but not if their results wait in the mailbox
            held = self.mailboxes.holds(producer)
            gone = [tid for tid in gone if tid not in held]
        return self.mailboxes.take(producer, confirmed, max_n, timeout if not gone else 0.0), gone

    def bye(self, consumer: str) -> None:
        """A consumer leaves: anything still leased to it goes back, unstarted."""
        with self._lock:
            c = self._consumers.pop(consumer, None)
            if c is not None and c.leased:
                self._requeue(c, list(c.leased), counted=False, reason="consumer left")

    def stats(self) -> dict[str, Any]:
        """A snapshot of every count, for the monitor and ``status``."""
        with self._lock:
            now = self._now()
            return {
                **self._counts,
                "pending": self._pending,
                "in_flight": len(self._owner),
                "capacity": self.capacity,
                "oldest_waiting_s": self._arrivals.oldest_age(now) if self._pending > 0 else 0.0,
                "uptime_s": now - self._started,
                "consumers_alive": sum(c.alive for c in self._consumers.values()),
                **self.more_figures(),
                "consumers": [
                    {
                        "name": c.name, "host": c.host, "processes": c.processes, "alive": c.alive,
                        "in_flight": len(c.leased), "done": c.done, "failed": c.failed,
                        "lost": c.lost, "last_seen_s": now - c.last_seen,
                    }
                    for c in self._consumers.values()
                ],
                "producers": [
                    {"name": p.name, "host": p.host, "put": p.put, "duplicates": p.duplicates,
                     "last_seen_s": now - p.last_seen}
                    for p in self._producers.values()
                ],
            }

    # -- god's own side (not reachable by clients) -----------------------------------------

    def restore(self, recovered: Recovered) -> None:
        """Take over what a journal held: its tasks wait again, its results stay done."""
        with self._lock:
            fresh = 0
            for tid, payload, attempts in recovered.pending:
                if tid not in self._seen:
                    self._seen.add(tid)
                    self._tasks[tid] = payload
                    self._queue.append(tid)
                    if attempts:
                        self._attempts[tid] = attempts
                    else:
                        fresh += 1
            self._arrivals.accepted(fresh, self._now())
            self._seen.update(recovered.done_ids)
            if self._queue:
                self._not_empty.notify()

    def reap(self) -> list[tuple[str, int]]:
        """Give up consumers silent for longer than lease_s; their tasks are served again.

        Returns:
            (consumer, tasks requeued or dead-lettered) for each consumer given up now.
        """
        lost = []
        with self._lock:
            now = self._now()
            for name, c in list(self._consumers.items()):
                silent = now - c.last_seen
                if c.alive and silent > self.lease_s:
                    c.alive, c.lost = False, c.lost + 1
                    ids = list(c.leased)
                    c.lease_seq, c.last_batch = None, []
                    self._requeue(c, ids, counted=True, reason=f"consumer {name} was lost")
                    lost.append((name, len(ids)))
                elif not c.alive and silent > FORGET_S:
                    del self._consumers[name]
            for name, p in list(self._producers.items()):
                if now - p.last_seen > FORGET_S:
                    del self._producers[name]
                    self.mailboxes.close(name)
        return lost

    def take_results(self, batches: list[list[str]] | None = None) -> tuple[list[Outgoing], int]:
        """Everything recorded since the last call, oldest first, for printing and files.

        Args:
            batches: id lists of the journal's oldest task batches.

        Returns:
            (the results, how many of ``batches``, from the first, have no task waiting or
            running). Both come from one moment: a finished task of those batches has its
            result in this call's results, or an earlier one's.
        """
        self.results_ready.clear()
        with self._lock:
            out = list(self._outbox)
            self._outbox.clear()
            finished = 0
            tasks = self._tasks
            for ids in batches or ():
                if any(tid in tasks for tid in ids):
                    break
                finished += 1
        return out, finished

    def dead_letters(self) -> dict[str, tuple[Any, str, int]]:
        """Dead-lettered tasks: id -> (payload, reason, attempts)."""
        with self._lock:
            return dict(self._dead)

    # -- the tutorial's queue views (god/views.py) ----------------------------------------

    def put_one(self, payload: Any, timeout: float | None) -> bool:
        """Queue one payload from a tutorial client under a fresh id; False if still full."""
        with self._lock:
            tid = f"{self._tutorial_run}{next(self._tutorial_ids)}"
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            wait = 3600.0 if deadline is None else max(0.0, deadline - time.monotonic())
            if self.put_many("tutorial", [(tid, payload)], wait) == 1:
                return True
            if deadline is not None and time.monotonic() >= deadline:
                return False

    def take_one(self, timeout: float | None) -> tuple[bool, Any]:
        """Hand one task's payload to a tutorial client, at most once (it cannot ack)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._lock:
            while True:
                tid = self._pop_next()
                if tid is not None:
                    if not self._attempts.pop(tid, 0):
                        self._arrivals.served()
                    self._counts["handed_out"] += 1
                    if self.journal is not None:
                        self.journal.drop_tasks([tid])
                    self._not_full.notify_all()
                    self.changed()
                    if self._pending > 0:
                        self._not_empty.notify()  # pass it on to the next waiter
                    return True, self._tasks.pop(tid)
                if not _wait(self._not_empty, deadline):
                    return False, None

    def put_value(self, value: Any) -> None:
        """Record a result a tutorial client put on the result queue (it has no task id)."""
        with self._lock:
            self._counts["done"] += 1
            self._outbox.append(((None, True, value, None, None), None, "tutorial", 1))  # type: ignore[arg-type]
            self._cq.append(value)
            self._cq_ready.notify()
        self.results_ready.set()

    def get_value(self, timeout: float | None) -> tuple[bool, Any]:
        """Take the next result for a tutorial client reading the result queue."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._lock:
            while not self._cq:
                if not _wait(self._cq_ready, deadline):
                    return False, None
            return True, self._cq.popleft()

    def queue_sizes(self) -> tuple[int, int]:
        """(tasks waiting, results waiting for tutorial readers)."""
        with self._lock:
            return self._pending, len(self._cq)
