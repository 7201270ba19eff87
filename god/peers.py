"""Peers: what god knows of each consumer and producer, and when it last heard from them.

The broker holds one ``Peers`` under its lock; nothing here locks or keeps time itself.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from shared.records import DEFAULT_QUEUE, Grant

if TYPE_CHECKING:
    from god.batches import Slice

FORGET_S = 300.0  # seconds a lost consumer or an idle producer stays in the stats


@dataclass(eq=False, slots=True)
class ConsumerState:
    """One consumer: its leases, counts and liveness."""

    name: str
    last_seen: float
    host: str = ""
    processes: int = 0
    queues: tuple[str, ...] = (DEFAULT_QUEUE,)
    alive: bool = True
    leased: dict[Slice, None] = field(default_factory=dict)  # an ordered set
    done: int = 0
    failed: int = 0
    lost: int = 0
    lease_seq: int | None = None  # the last lease's number, and what it granted:
    last_grants: list[tuple[Slice, Grant]] = field(default_factory=list)  # a retry gets them again


@dataclass(eq=False, slots=True)
class ProducerState:
    """One producer: what it put, and when god last heard from it."""

    name: str
    last_seen: float
    host: str = ""
    put: int = 0
    duplicates: int = 0


class Peers:
    """Consumers and producers by name."""

    def __init__(self) -> None:
        self.consumers: dict[str, ConsumerState] = {}
        self.producers: dict[str, ProducerState] = {}

    def consumer(self, name: str, now: float) -> ConsumerState:
        """The consumer, heard from now (made if new; alive again if it had been given up)."""
        c = self.consumers.get(name)
        if c is None:
            c = self.consumers[name] = ConsumerState(name, now)
        c.last_seen = now
        c.alive = True
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
            if c.alive and now - c.last_seen > lease_s:
                yield c

    def forget(self, now: float) -> list[str]:
        """Drop lost consumers and idle producers not heard from for FORGET_S; returns the producers."""
        for name, c in list(self.consumers.items()):
            if not c.alive and now - c.last_seen > FORGET_S:
                del self.consumers[name]
        gone = [name for name, p in self.producers.items() if now - p.last_seen > FORGET_S]
        for name in gone:
            del self.producers[name]
        return gone

    def alive(self) -> int:
        """How many consumers god hears."""
        return sum(c.alive for c in self.consumers.values())
