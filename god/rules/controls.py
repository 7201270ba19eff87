"""Operator controls over running work: rate limits, pauses, cancels and drains.

Limits and pauses are journaled, so they hold across a restart. A cancelled task gets its
failed result at once; a consumer running one, or asked to drain, hears of it through its
heartbeats (god/rules/leases.py answers them).
"""

from __future__ import annotations

from god.rules.state import State
from god.store.batches import Batch, Bucket, runs_of
from shared.log import count
from shared.records import CANCELLED, split_id



class Controls:
    """What operators change of queues and consumers while god runs."""

    def __init__(self, state: State) -> None:
        self.state = state

    def set_limit(self, queue: str, rate: float | None, *, journal: bool = True) -> float | None:
        """Start at most rate tasks a second from the queue, across all consumers (None: no limit).

        Returns:
            The limit it had.
        """
        st = self.state
        with st.lock:
            q = st.queue(queue)
            before = q.limit.rate if q.limit is not None else None
            q.limit = Bucket(rate, max(1.0, rate), st.now()) if rate is not None else None
            if journal and st.journal is not None:
                st.journal.set_limit(queue, rate)
        st.on_change()
        return before

    def pause(self, queue: str, paused: bool = True, *, journal: bool = True) -> bool:
        """Start nothing more from a queue (running tasks finish), or start again; journaled, so
        it holds across a restart. Returns whether it was paused.

        Raises:
            ValueError: a queue god does not know (no task came to it, no consumer serves it).
        """
        st = self.state
        with st.lock:
            q = st.queues.get(queue)
            if q is None:
                served = any(queue in c.queues for c in st.peers.consumers.values())
                if not served and journal:
                    known = ", ".join(sorted(st.queues)) or "none yet"
                    raise ValueError(f"god knows no queue {queue} (queues: {known})")
                q = st.queue(queue)
            before, q.paused = q.paused, paused
            if journal and st.journal is not None and before != paused:
                st.journal.set_paused(queue, paused)
        st.on_change()
        return before

    def cancel(self, ids: list[str] | None = None, queue: str | None = None,
               producer: str | None = None, *, started: bool = True, why: str = CANCELLED) -> dict[str, int]:
        """Cancel tasks (these ids, or all of a queue's or a producer's not done): each gets a
        failed result that says so (``why``) at once, and is never run; a running one's
        consumer is told to stop it (its heartbeats say so), and what it sends for it later is
        a duplicate. With ``started`` False, running tasks are left to run (counted all the
        same), and ids done already are counted as ``done`` (an executor's ``Future.cancel``).

        Returns:
            How many were waiting, scheduled and running (and done, with ``started`` False).

        Raises:
            ValueError: an id that is not waiting, scheduled or running; a queue or producer
                god does not know.
        """
        st = self.state
        with st.lock:
            targets: list[tuple[Batch, list[tuple[int, int]]]] = []
            counts = dict.fromkeys(("waiting", "scheduled", "running"), 0)
            if ids:
                by_batch: dict[Batch, list[int]] = {}
                missing = []
                for tid in ids:
                    name, seq = split_id(tid)
                    b = st.batch_of(name, seq)
                    if b is None or b.done[seq - b.first]:
                        missing.append(tid)
                    else:
                        by_batch.setdefault(b, []).append(seq - b.first)
                if not started:
                    counts["done"] = len(missing)
                    missing = [tid for tid in missing if not st.done_before(*split_id(tid))]
                if missing:
                    raise ValueError(f"{count(len(missing), 'task')} not waiting, scheduled or running (done, dead or "
                                     f"unknown: python -m god task ID says which): {', '.join(missing[:5])}"
                                     f"{' ...' if len(missing) > 5 else ''}")
                targets = [(b, runs_of(sorted(set(offsets)))) for b, offsets in by_batch.items()]
            else:
                if queue is not None and queue not in st.queues:
                    raise ValueError(f"god knows no queue {queue} (queues: {', '.join(sorted(st.queues)) or 'none yet'})")
                if producer is not None and producer not in st.upto:
                    raise ValueError(f"god knows no producer {producer}")
                targets = [(b, b.undone(0, b.n)) for b in st.batches.values()
                           if (queue is None or b.queue == queue) and (producer is None or b.producer == producer)]
            until = st.now() + 2 * st.lease_s
            for b, runs in targets:
                for lo, hi in runs:
                    if started:
                        self._cancel(b, lo, hi, counts, until, why)
                        continue
                    for a, z in _unleased(b, lo, hi):  # what runs runs on
                        self._cancel(b, a, z, counts, until, why)
                    counts["running"] += sum(max(0, min(hi, s.hi) - max(lo, s.lo)) for s in b.out)
        if any(counts.values()):
            st.results_ready.set()
            st.on_change()
        return counts

    def _cancel(self, b: Batch, lo: int, hi: int, counts: dict[str, int], until: float, why: str) -> None:
        """Settle offsets [lo, hi) of b (none done) as cancelled, telling the consumers running any (lock held)."""
        st = self.state
        for s in b.out:
            for i in range(max(lo, s.lo), min(hi, s.hi)):
                if s.owner is not None:
                    s.owner.top.stop[b.producer, b.first + i] = until
                counts["running"] += 1
        counts["scheduled"] += sum(max(0, min(hi, s.hi) - max(lo, s.lo)) for s in b.later)
        n = hi - lo
        counts["waiting"] += n - sum(max(0, min(hi, s.hi) - max(lo, s.lo)) for s in (*b.out, *b.later))
        st.conclude(b, lo, hi, (False, None, why, None), 0)
        q = st.queues[b.queue]
        q.failed += n
        st.counts["failed"] += n
        st.counts["cancelled"] += n

    def give_up(self, b: Batch, lo: int, hi: int, why: str) -> None:
        """Offsets [lo, hi) of b, waiting, fail now with why (lock held): god --fit-timeout."""
        st = self.state
        st.conclude(b, lo, hi, (False, None, why, None), 0)
        n = hi - lo
        st.queues[b.queue].failed += n
        st.counts["failed"] += n

    def drain(self, name: str) -> int:
        """Ask a consumer to drain (finish what it runs, hand back the rest, exit 0): its next
        heartbeat says so. Returns how many tasks it holds.

        Raises:
            ValueError: a consumer god does not know, or one it gave up.
        """
        st = self.state
        with st.lock:
            c = st.peers.consumers.get(name)
            if c is not None and c.parent is not None:
                raise ValueError(f"{name} is a worker process of consumer {c.parent.name}: drain {c.parent.name}")
            if c is None or not c.alive:
                alive = sorted(c.name for c in st.peers.consumers.values() if c.parent is None and c.alive)
                raise ValueError(f"god knows no {'live ' if c is not None else ''}consumer {name} "
                                 f"(consumers: {', '.join(alive) or 'none'})")
            c.drain = True
            return c.running()


def _unleased(b: Batch, lo: int, hi: int) -> list[tuple[int, int]]:
    """The runs of offsets in [lo, hi) of b that no consumer holds."""
    held = bytearray(hi - lo)
    for s in b.out:
        a, z = max(lo, s.lo), min(hi, s.hi)
        if z > a:
            held[a - lo : z - lo] = b"\x01" * (z - a)
    return [(lo + a, lo + z) for a, z in runs_of([i for i in range(hi - lo) if not held[i]])] if held.count(1) else [(lo, hi)]
