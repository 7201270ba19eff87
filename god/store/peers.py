"""Peers: what god knows of each consumer and producer, and when it last heard from them.

The state (god/rules/state.py) holds one ``Peers`` under its lock; nothing here locks or keeps time itself.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from god.store.batches import Slice
from shared.records import DEFAULT_QUEUE, Grant

FORGET_S = 300.0  # seconds a lost consumer or an idle producer stays in the stats


@dataclass(eq=False, slots=True)
class ConsumerState:
    """One consumer: its leases, counts and liveness."""

    name: str
    last_seen: float
    host: str = ""
    python: str = ""  # the version it runs on ("3.12.1"; "" from a client that did not say)
    processes: int = 0
    concurrency: int = 1  # tasks each of its processes runs at once
    queues: tuple[str, ...] = (DEFAULT_QUEUE,)
    alive: bool = True
    leased: dict[Slice, None] = field(default_factory=dict)  # an ordered set
    done: int = 0
    failed: int = 0
    lost: int = 0
    lease_seq: int | None = None  # the last lease's number, and what it granted:
    last_grants: list[tuple[Slice, Grant]] = field(default_factory=list)  # a retry gets them again
    parent: ConsumerState | None = None  # a worker process: the consumer it belongs to
    workers: dict[str, ConsumerState] = field(default_factory=dict)  # a consumer: its worker processes
    drain: bool = False  # an operator asked it to drain (python -m god drain): its heartbeats say so
    stop: dict[tuple[str, int], float] = field(default_factory=dict)  # cancelled tasks it runs: until when to say so
    cache: str = ""  # its host's cache of large values ("host:folder"; a consumer's, not its workers')
    asking: bool = False  # its last lease found nothing, and it has been given nothing since: free
    resources: dict[str, float] = field(default_factory=dict)  # what it has (a consumer's: shared/resources.py)
    gpus: tuple[str, ...] = ()  # its GPU ids (a consumer's)
    last_gpus: tuple[str, ...] = ()  # a worker's: the GPU ids of its last GPU task (it keeps them while free)

    @property
    def top(self) -> ConsumerState:
        """The consumer this is, or whose worker it is: what status shows and counts."""
        return self.parent or self

    def running(self) -> int:
        """Tasks leased to it and to its workers, not done yet."""
        return sum(s.batch.done.count(0, s.lo, s.hi) for c in (self, *self.workers.values()) for s in c.leased)


@dataclass(eq=False, slots=True)
class ProducerState:
    """One producer: what it put, and when god last heard from it."""

    name: str
    last_seen: float
    host: str = ""
    python: str = ""
    put: int = 0
    duplicates: int = 0


class Peers:
    """Consumers and producers by name."""

    def __init__(self) -> None:
        self.consumers: dict[str, ConsumerState] = {}
        self.producers: dict[str, ProducerState] = {}
        #: The Pythons (minor versions) consumers have said they run since god started: while
        #: there is one, calls need no routing by Python (Leases.lease_now skips the question).
        self.pythons: set[str] = set()

    def consumer(self, name: str, now: float) -> ConsumerState:
        """The consumer, heard from now (made if new; alive again if it had been given up)."""
        c = self.consumers.get(name)
        if c is None:
            c = self.consumers[name] = ConsumerState(name, now)
        c.last_seen = now
        c.alive = True
        return c

    def worker(self, name: str, parent: str, now: float) -> ConsumerState:
        """A consumer's worker process, which leases and acks over a connection of its own; the
        consumer's heartbeats keep it alive (a task may hold the worker's every thread)."""
        w = self.consumer(name, now)
        p = self.consumers.get(parent)
        if p is None:
            p = self.consumers[parent] = ConsumerState(parent, now)
        w.parent, w.host, w.queues = p, p.host, p.queues
        p.workers[name] = w
        return w

    def drop(self, name: str) -> ConsumerState | None:
        """A consumer or worker leaves; returns it (with its workers, which leave too)."""
        c = self.consumers.pop(name, None)
        if c is None:
            return None
        if c.parent is not None:
            c.parent.workers.pop(name, None)
        for w in c.workers:
            self.consumers.pop(w, None)
        return c

    def producer(self, name: str, now: float) -> ProducerState:
        """The producer, heard from now (made if new)."""
        p = self.producers.get(name)
        if p is None:
            p = self.producers[name] = ProducerState(name, now)
        p.last_seen = now
        return p

    def silent(self, now: float, lease_s: float) -> Iterator[ConsumerState]:
        """Consumers alive until now that have not been heard from for lease_s."""
        for c in list(self.consumers.values()):
            seen = c.last_seen if c.parent is None else max(c.last_seen, c.parent.last_seen)
            if c.alive and now - seen > lease_s:
                yield c

    def forget(self, now: float) -> tuple[list[str], list[str]]:
        """Drop lost consumers and idle producers not heard from for FORGET_S; returns the
        producers and the consumers (and workers)."""
        lost = []
        for name, c in list(self.consumers.items()):
            if not c.alive and now - c.last_seen > FORGET_S and not c.workers:
                self.drop(name)
                lost.append(name)
        gone = [name for name, p in self.producers.items() if now - p.last_seen > FORGET_S]
        for name in gone:
            del self.producers[name]
        return gone, lost

    def alive(self) -> int:
        """How many consumers god hears (a consumer's worker processes are part of it)."""
        return sum(c.alive for c in self.consumers.values() if c.parent is None)

    def serving(self, queue: str) -> Iterator[ConsumerState]:
        """Consumers alive that serve the queue (not their workers)."""
        return (c for c in self.consumers.values() if c.alive and c.parent is None and queue in c.queues)
