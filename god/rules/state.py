"""The broker's state: queues, batches, per-producer marks, counts and the one lock.

Every rule set (god/rules/intake.py, god/rules/leases.py, god/rules/acks.py and the rest, put together in
god/rules/broker.py) works over one ``State`` and takes its lock for each call. What several of
them do to stored tasks is here, once: queue a batch, place a slice on its queue or its
schedule, settle offsets as done, carve a leased slice, record results for the monitor and
for whoever waits for them. A plain object: no sockets, no threads, no waiting of its own.
"""

from __future__ import annotations

import heapq
import itertools

import secrets
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any, Protocol

from god.rules.graph import Graph, GraphJournal
from god.rules.wanted import measured
from god.store.batches import Attempts, Batch, Queue, Slice
from god.store.dead_letters import DeadJournal, DeadLetters
from god.store.mailboxes import MailJournal, Mailboxes
from god.store.outbox import Outgoing
from god.store.outputs import Outputs
from god.store.peers import ConsumerState, Peers
from god.store.schedules import Schedule
from god.store.values import ValueStore
from shared import items
from shared.records import (
    PUT_AFTER, PUT_DUE, PUT_FIRST, PUT_N, PUT_PAYLOADS, PUT_PRIORITY, PUT_QUEUE, PUT_RESOURCES, PUT_RETRY, PUT_TASK, PUT_VALUES, V_ERROR,
    V_TRACEBACK, Failed,
    Put, Run, Value, json_line, task_id,
)

FAILED_KEEP = 1_000  # recent failed results kept for ``failed``
#: Tasks waiting past which a new batch's payloads are kept only as sent, not also loaded
#: (loaded, they take several times the bytes): 100,000 small calls loaded are some 20 MB.
KEEP_LOADED = 100_000

_ONE = b"\x01"


class JournalLike(DeadJournal, MailJournal, GraphJournal, Protocol):
    """What the rules tell the journal, under the state's lock (god/journal/journal.py)."""

    @property
    def ticket(self) -> int: ...

    def add_batch(self, producer: str, put: Put, origin: list[str] | None = None) -> int: ...

    def add_done(self, runs: list[Run]) -> int: ...

    def committed(self, ticket: int) -> bool: ...

    def set_attempts(self, rows: list[Attempts]) -> int: ...

    def set_limit(self, queue: str, rate: float | None) -> int: ...

    def set_paused(self, queue: str, paused: bool) -> int: ...

    def set_schedule(self, s: Schedule) -> int: ...

    def drop_schedule(self, name: str) -> int: ...

    def forget_producers(self, before: float) -> int: ...


def do_nothing() -> None:
    """The default of hooks no one listens to."""


class State:
    """What god holds of tasks and peers, and the lock that guards all of it."""

    def __init__(self, *, capacity: int, lease_s: float, dead_keep: int, now: Callable[[], float],
                 wall: Callable[[], float], journal: JournalLike | None = None,
                 on_change: Callable[[], None] = do_nothing, results_payload_max: int | None = None,
                 values: ValueStore | None = None) -> None:
        """Args:
            capacity: tasks waiting, all queues together, before puts wait.
            lease_s: seconds without a heartbeat before a consumer's tasks are served again.
            dead_keep: dead letters kept, the oldest let go first.
            now: the clock of leases and waits; wall: the Unix time (schedules).
            journal: told of every accepted batch, settled handout and counted attempt.
            on_change: called after a change that may let a waiting call go on.
            results_payload_max: characters of a payload's JSON a results line holds (None: all).
        """
        self.capacity = capacity
        self.lease_s = lease_s
        self.results_payload_max = results_payload_max  # of a payload's JSON in a results line (None: all)
        self.now = now
        self.wall = wall
        self.journal = journal
        self.on_change = on_change
        self.started = now()
        self.run = secrets.token_hex(6)  # this god's life: restarts get another
        self.lock = threading.Lock()
        self.results_ready = threading.Event()  # set when results wait for the recorder
        self.peers = Peers()
        self.mailboxes = Mailboxes(journal, values)  # results kept for producers that wait for theirs
        self.outputs = Outputs()  # what tasks wrote: the last part of each, and what waits for programs
        self.values = values  # large values, kept while batches name them (god/store/values.py)
        self.batch_values: dict[tuple[str, int], tuple[str, ...]] = {}  # the values each batch names
        self.queues: dict[str, Queue] = {}
        self.batches: dict[tuple[str, int], Batch] = {}  # batches with tasks not done yet
        self.upto: dict[str, int] = {}  # per producer: the last seq taken (re-sent puts are dupes)
        self.heard: dict[str, float] = {}  # producers in upto by when they last put, oldest first
        self.finished: list[tuple[str, int]] = []  # batches done since take_results (journal: to release)
        self.waiting = 0  # tasks waiting, all queues
        self.blocked = 0  # tasks waiting for other tasks' results, all queues
        self.graph = Graph(self, journal, values)
        self.outbox: list[Outgoing] = []
        self.scheduled: list[tuple[float, int, Slice]] = []  # a heap: (due on the clock, order, slice)
        self.order = itertools.count()  # ties in the heap go first in, first out
        self.schedules: dict[str, Schedule] = {}
        self.dead = DeadLetters(dead_keep, journal, values)
        self.failed: deque[dict[str, Any]] = deque(maxlen=FAILED_KEEP)  # recent failed results, oldest first
        self.counts = dict.fromkeys(("accepted", "done", "failed", "dead", "duplicates", "redelivered",
                                     "handed_out", "retried", "forgotten", "unknown_puts", "cancelled",
                                     "unleased"), 0)

    # Everything below runs with the lock held.

    def queue(self, name: str) -> Queue:
        """The queue of that name, made if new."""
        q = self.queues.get(name)
        if q is None:
            q = self.queues[name] = Queue(name)
        return q

    def add_batch(self, producer: str, put: Put, keep: bool, origin: list[str] | None = None,
                  loaded: Any = None) -> int:
        """Queue a batch if there is room (or, when it waits for other tasks, block it): its
        ticket (0 without a journal), or -1 if full. ``loaded``: its payloads loaded already
        (the door checked them so), kept while few tasks wait (KEEP_LOADED): a batch is most
        often leased in parts, each of which would load them again."""
        if self.waiting + self.blocked >= self.capacity:
            return -1
        n = put[PUT_N]
        b = Batch(producer, put[PUT_FIRST], n, put[PUT_QUEUE], put[PUT_TASK], put[PUT_PRIORITY], put[PUT_PAYLOADS],
                  keep, self.now(), put[PUT_RETRY], origin=origin, after=put[PUT_AFTER], due=put[PUT_DUE],
                  loaded=loaded if self.waiting + self.blocked < KEEP_LOADED else None,
                  resources=put[PUT_RESOURCES] if len(put) > PUT_RESOURCES else None)
        self.batches[b.key] = b
        self.keep_values(b.key, put)
        self.upto[producer] = put[PUT_FIRST] + n - 1
        self.counts["accepted"] += n
        ticket = self.journal.add_batch(producer, put, origin) if self.journal is not None else 0
        if b.after is None or self.graph.link(b):  # (after the journal: a batch failed at once settles)
            self.place(Slice(b, 0, n, 0), b.due, first=False)
        return ticket

    def keep_values(self, key: tuple[str, int], put: Put) -> None:
        """Keep the large values a batch names while it has tasks."""
        names = put[PUT_VALUES] if len(put) > PUT_VALUES else None
        if names and self.values is not None:
            self.batch_values[key] = names
            self.values.pin(("batch", *map(str, key)), names)

    def place(self, s: Slice, due: float | None, *, first: bool) -> None:
        """A waiting slice goes on its queue (at the front of its level with first), or, when
        due is a Unix time still to come, waits for it off the queue."""
        b = s.batch
        q = self.queue(b.queue)
        n = s.hi - s.lo
        wait = due - time.time() if due is not None else 0.0
        if wait > 0:
            b.later.append(s)
            heapq.heappush(self.scheduled, (self.now() + wait, next(self.order), s))
            q.scheduled += n
            return
        level = q.levels[b.priority]
        level.appendleft(s) if first else level.append(s)
        q.waiting += n
        self.waiting += n

    def settle(self, b: Batch, lo: int, hi: int) -> None:
        """Offsets [lo, hi) of b, none done before, are done now: count them off where they were."""
        b.done[lo:hi] = _ONE * (hi - lo)
        b.left -= hi - lo
        held = 0
        for s in list(b.out):
            overlap = min(s.hi, hi) - max(s.lo, lo)
            if overlap > 0:
                held += overlap
                if b.done.find(0, s.lo, s.hi) == -1:  # all of the slice is done
                    b.out.remove(s)
                    if s.owner is not None:
                        s.owner.leased.pop(s, None)
                        q = self.queues[b.queue]
                        q.task_s = measured(q.task_s, self.now() - s.since, s.hi - s.lo, s.owner.top.concurrency)
        later = 0  # a late result for a task waiting for its retry's time
        for s in b.later:
            later += max(0, min(s.hi, hi) - max(s.lo, lo))
        q = self.queues[b.queue]
        q.running -= held
        q.scheduled -= later
        waiting = hi - lo - held - later  # a late result for a task that waited to be served again
        if b.missing:  # or that waited for other tasks (cancelled, or failed by what it waited for)
            q.blocked -= waiting
            self.blocked -= waiting
        else:
            q.waiting -= waiting
            self.waiting -= waiting
        if b.left == 0:
            del self.batches[b.key]
            names = self.batch_values.pop(b.key, None)
            if names and self.values is not None:
                self.values.unpin(("batch", *map(str, b.key)), names)
            if self.journal is not None:
                self.finished.append(b.key)
            if b.after is not None:
                self.graph.finished(b)

    def unlease(self, s: Slice) -> None:
        """A leased slice is no longer held by anyone."""
        b = s.batch
        if s in b.out:
            b.out.remove(s)
        if s.owner is not None:
            s.owner.leased.pop(s, None)

    def carve(self, s: Slice, lo: int, hi: int) -> Slice:
        """Cut [lo, hi) out of a leased slice: the parts before and after stay leased to its
        owner, and so does the part returned."""
        self.unlease(s)
        b, c = s.batch, s.owner
        parts = [Slice(b, a, z, s.tries, c, s.retried, alone=s.alone, since=s.since, warned=s.warned, gpus=s.gpus)
                 for a, z in ((s.lo, lo), (lo, hi), (hi, s.hi))
                 if z > a]
        for part in parts:
            b.out.append(part)
            if c is not None:
                c.leased[part] = None
        return next(part for part in parts if part.lo == lo)

    def record(self, b: Batch, lo: int, hi: int, lines: str, values: list[Value] | bytes | None,
               consumer: str, attempt: int, *, outcome: Value | None = None, failed: tuple[Failed, ...] = ()) -> None:
        """Results for offsets [lo, hi) of b: to the monitor, to whoever waits for the values,
        and to the tasks that wait for them (``outcome``: what all of them gave, when god gave it;
        ``failed``: those that failed, of a consumer's results)."""
        first = b.first
        self.outbox.append((lines, [(b.producer, first, first + lo, first + hi)]))
        if values is not None and b.keep:
            blob = values if isinstance(values, bytes) else items.dump(values)  # (god's own: data)
            self.mailboxes.post(b.producer, (first + lo, first + hi, blob, consumer, attempt))
        if self.graph.waits_for(b.producer):  # after: what they fail or start comes after them
            self.graph.resolved(b, lo, hi, values, outcome, failed)

    def conclude(self, b: Batch, lo: int, hi: int, v: Value, attempts: int) -> None:
        """God gives offsets [lo, hi) of b, none done, the failed result v itself (a cancel, a
        dead letter, a failed dependency): their lines, recorded and settled (counts are the
        caller's)."""
        at = time.time()
        origin = b.origin
        lines = "".join(json_line(task_id(b.producer, b.first + i), None, False, None, v[V_ERROR], v[V_TRACEBACK],
                                  "god", attempts, at, b.queue, b.task, shown=b.shown_json(i, self.results_payload_max),
                                  requeued_from=origin[i] if origin is not None else None)
                        + "\n" for i in range(lo, hi))
        self.record(b, lo, hi, lines, [v] * (hi - lo) if b.keep else None, "god", attempts, outcome=v)
        self.settle(b, lo, hi)

    def failure_of(self, tid: str) -> str | None:
        """The error of a task done before, if god still knows it failed (a dead letter kept, or
        among the last failures)."""
        d = self.dead.get(tid)
        if d is not None:
            return f"dead letter: {d.reason}"
        return next((f["error"] or "failed" for f in reversed(self.failed) if f["id"] == tid), None)

    def count_results(self, c: ConsumerState, q: Queue, n: int, failed: int) -> None:
        """n new results from c for tasks of q, failed of them failures."""
        c = c.top
        c.done += n - failed
        c.failed += failed
        q.done += n - failed
        q.failed += failed
        self.counts["done"] += n - failed
        self.counts["failed"] += failed

    def batch_of(self, producer: str, seq: int) -> Batch | None:
        """The batch god holds with that task of the producer's (a scan unless the task is the
        first of its batch, as each call of an executor's ``submit`` is: for rare calls)."""
        b = self.batches.get((producer, seq))
        if b is not None:
            return b
        for b in self.batches.values():
            if b.producer == producer and b.first <= seq < b.first + b.n:
                return b
        return None

    def done_before(self, producer: str, seq: int) -> bool:
        """Whether that task of the producer's came here and is done."""
        if seq > self.upto.get(producer, 0):
            return False
        b = self.batch_of(producer, seq)
        return b is None or bool(b.done[seq - b.first])
