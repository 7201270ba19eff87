"""Leases: consumers take waiting tasks, queues in their order, higher priority first.

A lease hands out slices of batches and records what it granted under the consumer's
sequence number, so a retried lease (its reply was lost) gets the same grants and no task
stays leased to a consumer that never saw it. Heartbeats keep a consumer's leases alive
(god/rules/peers.py); what becomes of them when it goes silent, leaves or loses a worker is
god/rules/redelivery.py's.
"""

from __future__ import annotations

from collections.abc import Iterator

from god.defaults import WARN_AFTER_S
from god.rules.state import State
from god.store.batches import Batch, Slice
from god.store.peers import ConsumerState
from shared import resources
from shared.calls import CALL
from shared.log import logger
from shared.records import Grant, task_id
from shared.resources import Res
from shared.version import minor

BEATS_PER_LEASE = 5  # consumers beat this many times per lease period
#: Waiting slices a lease passes over in a level, kept from it (a poison suspect, a call for
#: another Python), before it stops looking there: a consumer that may take none of a long
#: backlog does not scan all of it on each try (2,000 such slices took 3.5 ms a lease).
SCAN_PAST = 64


class Leases:
    """Handing waiting tasks to consumers, and keeping their leases alive."""

    def __init__(self, state: State, *, warn_after_s: float | None = WARN_AFTER_S) -> None:
        """Args:
            warn_after_s: a task held by a consumer longer than this is reported once by ``warn_stuck``.
        """
        self.state = state
        self.warn_after_s = warn_after_s

    def has_waiting(self, queues: tuple[str, ...]) -> bool:
        """Whether tasks wait on any of these queues: a hint, read without the lock."""
        qs = self.state.queues
        return any(name in qs and qs[name].waiting > 0 and not qs[name].paused for name in queues)

    def try_lease(self, consumer: str, queues: tuple[str, ...], max_n: int, seq: int | None) -> list[Grant] | None:
        """Lease up to max_n tasks from the queues, in their order; None (nothing recorded, so
        the same seq may try again) while none waits there.

        A retried call (the same seq as the consumer's last lease, whose reply was lost) gets
        the same grants again, so no task is left leased to a consumer that never saw it.
        """
        st = self.state
        with st.lock:
            c = st.peers.consumer(consumer, st.now())
            c.queues = queues
            if seq is not None and seq == c.lease_seq:
                return [g for s, g in c.last_grants if s in c.leased]
            c.asking = True  # (until it is given something)
            if not any(q.waiting > 0 and not q.paused for q in map(st.queues.get, queues) if q is not None):
                return None
            leased = self.lease_now(c, queues, max_n)
            if not leased:
                return None  # what waits is for other consumers (it killed this one's workers, say)
            c.lease_seq, c.last_grants, c.asking = seq, leased, False
        st.on_change()  # room for puts
        return [g for _, g in leased]

    def lease_nothing(self, consumer: str, seq: int | None) -> list[Grant]:
        """Answer a lease that found nothing in time: recorded under seq, so a retry gets the same."""
        st = self.state
        with st.lock:
            c = st.peers.consumer(consumer, st.now())
            if seq is not None and seq == c.lease_seq:
                return [g for s, g in c.last_grants if s in c.leased]
            c.lease_seq, c.last_grants = seq, []
            return []

    def lease_now(self, c: ConsumerState, queues: tuple[str, ...], max_n: int) -> list[tuple[Slice, Grant]]:
        """Lease up to max_n waiting tasks to c: queues in order, higher priority first (lock held)."""
        st = self.state
        out: list[tuple[Slice, Grant]] = []
        want = max_n
        mixed = len(st.peers.pythons) > 1  # consumers of several Pythons: calls by value are routed
        near = bool(st.batch_values)  # calls that name large values: those a free consumer's cache holds go there
        elsewhere: dict[tuple[str, int], bool] = {}
        for name in queues:
            q = st.queues.get(name)
            if q is None or q.waiting <= 0 or q.paused:
                continue
            others: bool | None = None  # whether another consumer alive serves q (asked when needed)
            able: set[str] | None = None  # the Pythons of the consumers alive that serve q (the same)
            mine = ""  # c's Python (asked when needed)
            room = want
            if q.limit is not None:  # exact across consumers: god hands out every task
                room = min(want, q.limit.refill(st.now()))
                if room <= 0:
                    continue
            for level in reversed(q.levels):
                i = passed = 0  # passed: slices kept from c for other reasons than its resources
                while room > 0 and i < len(level) and passed < SCAN_PAST:
                    s = level[i]
                    if s.avoid is c.top and st.now() < s.avoid_until:
                        # it killed one of this consumer's workers: another's, if any, for a
                        # lease period (redelivery.py); then whoever asks
                        if others is None:
                            others = any(o is not c.top for o in st.peers.serving(name))
                        if others:
                            i += 1
                            passed += 1
                            continue
                    b = s.batch
                    if mixed and b.task is not None and b.task.endswith(CALL):
                        # a function by value loads only on the Python that pickled it: on a
                        # consumer of that Python while one serves q; else whoever asks (it
                        # fails there, saying both Pythons). Only consumers of mixed Pythons
                        # make god ask, and read which one a batch needs (it unpickles its payloads).
                        if able is None:
                            able, mine = {minor(o.python) for o in st.peers.serving(name)}, minor(c.top.python)
                        if len(able) > 1 and (need := b.python()) is not None and need != mine and need in able:
                            i += 1
                            passed += 1
                            continue
                    if near and b.key in st.batch_values:
                        if b.key not in elsewhere:
                            elsewhere[b.key] = self._held_elsewhere(c, name, st.batch_values[b.key])
                        if elsewhere[b.key]:
                            i += 1
                            passed += 1
                            continue
                    take = room
                    if b.resources is not None:  # as many as c has free, one grant each
                        take = min(room, self._room_for(c, b.resources))
                        if take <= 0:
                            i += 1  # (not counted in passed: what fits c behind it is found however far)
                            continue
                    if s.hi - s.lo > take:  # lease the front of it; the rest waits on
                        lo, hi = s.lo, s.lo + take
                        s.lo = hi
                    else:
                        if i:
                            del level[i]
                        else:
                            level.popleft()
                        lo, hi = s.lo, s.hi
                    for rlo, rhi in b.undone(lo, hi):  # late results may have settled some
                        if b.resources is None:
                            out.append(self._grant(c, b, rlo, rhi, s))
                        else:
                            out += [self._grant(c, b, k, k + 1, s) for k in range(rlo, rhi)]
                        n = rhi - rlo
                        want -= n
                        room -= n
                        if q.limit is not None:
                            q.limit.tokens -= n
                        q.waiting -= n
                        q.running += n
                        st.waiting -= n
                if want <= 0:
                    return out
        return out

    def _held_elsewhere(self, c: ConsumerState, queue: str, names: tuple[str, ...]) -> bool:
        """Whether another consumer's cache holds these values (and c's does not), and a worker
        of it that serves the queue is free now: it takes the call (when it asks again, in this
        round of parked leases or the next), and no value crosses the network for it."""
        st = self.state
        if st.peers.consumers.get(c.name) is not c:  # (a stand-in: the tutorial's hand-out)
            return False
        caches = st.values.caches(names) if st.values is not None else set()
        if not caches or c.top.cache in caches:
            return False
        return any(o.asking and o is not c and o.top.alive and o.top.cache in caches and queue in o.queues
                   for o in st.peers.consumers.values())

    def _room_for(self, c: ConsumerState, need: Res) -> int:
        """How many tasks that each need ``need`` c may take now: what its consumer has free,
        counting exactly what the tasks leased to it and its workers hold (a task holds its
        resources from its lease to its end, however it ends), and no more at once than the
        worker runs at once."""
        top = c.top
        if resources.lacking(need, top.resources):
            return 0
        used: dict[str, float] = {}
        mine = 0
        for w, s, left in _holding(top):
            for rname, amount in s.batch.resources or ():
                used[rname] = used.get(rname, 0.0) + amount * left
            if w is c:
                mine += left
        free = {rname: top.resources.get(rname, 0.0) - used.get(rname, 0.0) for rname, _ in need}
        return min(resources.how_many(need, free), max(0, top.concurrency - mine))

    def _gpus(self, c: ConsumerState, b: Batch) -> tuple[str, ...] | None:
        """The GPU ids of c's consumer a task of b gets (those c's last GPU task had first):
        None on a consumer without GPUs or for a task that says nothing of resources (it sees
        what the worker saw as it started), () for one that needs others but no GPU."""
        top = c.top
        if not top.gpus or b.resources is None:
            return None
        n = int(dict(b.resources or ()).get(resources.GPU, 0))
        if not n:
            return ()
        held = {g for _, s, _ in _holding(top) for g in s.gpus}
        free = [g for g in top.gpus if g not in held]
        free.sort(key=lambda g: g not in c.last_gpus)  # (a worker whose CUDA started on them keeps them)
        got = tuple(sorted(free[:n], key=top.gpus.index))
        c.last_gpus = got
        return got

    def _grant(self, c: ConsumerState, b: Batch, lo: int, hi: int, w: Slice) -> tuple[Slice, Grant]:
        """Lease [lo, hi) of b, out of the waiting slice w, to c (a task that needs resources: one)."""
        s = Slice(b, lo, hi, w.tries + 1, c, w.retried, alone=w.alone, since=self.state.now())
        gpus = self._gpus(c, b)
        if gpus:
            s.gpus = gpus
        b.out.append(s)
        c.leased[s] = None
        return s, (b.producer, b.first, b.first + lo, b.first + hi, w.tries + 1, b.payloads_of(lo, hi), b.task,
                   b.queue, b.keep, w.alone, b.origin[lo:hi] if b.origin is not None else None, gpus)

    def warn_stuck(self, now: float) -> None:
        """Say once of each task a consumer has held for longer than warn_after_s (lock held)."""
        if self.warn_after_s is None:
            return
        horizon = now - self.warn_after_s
        for c in self.state.peers.consumers.values():
            for s in c.leased:
                if s.since < horizon and not s.warned and s.batch.done.find(0, s.lo, s.hi) != -1:
                    s.warned = True
                    first = s.batch.first + s.batch.done.find(0, s.lo, s.hi)
                    logger.warning("task {} has been held by consumer {} for {:.0f}s (over --warn-after {:g}): "
                                   "running that long, or stuck; 'python -m god cancel {}' stops it",
                                   task_id(s.batch.producer, first), c.top.name, now - s.since, self.warn_after_s,
                                   task_id(s.batch.producer, first))


def _holding(top: ConsumerState) -> Iterator[tuple[ConsumerState, Slice, int]]:
    """The slices of tasks that need resources a consumer and its workers hold, with the
    holder and how many of the slice's tasks are not done: what holds its resources now."""
    for w in (top, *top.workers.values()):
        for s in w.leased:
            if s.batch.resources is not None and (left := s.batch.done.count(0, s.lo, s.hi)):
                yield w, s, left
