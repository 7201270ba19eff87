"""Retries and scheduled tasks: a failure with retries left waits its backoff off its queue,
and a task due later (a retry, a delayed put) is served when its time comes.

The waiting slices are on the state's heap (``State.scheduled``, ordered by when they are
due on god's clock); ``tick`` serves those whose time has come, first within their level.
"""

from __future__ import annotations

import heapq
import random
import time

from god.rules.state import State
from god.store.batches import Batch, Slice
from god.store.peers import ConsumerState
from shared.records import F_AFTER, F_NAME, F_SEQ, RP_BACKOFF, RP_MAX_BACKOFF, RP_ON, RP_RETRIES, Failed


class Retries:
    """Failures tried again after their backoff, and tasks served at their time."""

    def __init__(self, state: State) -> None:
        self.state = state

    def delay(self, b: Batch, retried: int, name: str, after: float | None) -> float | None:
        """Seconds until a failed task of b is tried again, or None: its failure is final."""
        policy = b.retry
        if policy is None or retried >= policy[RP_RETRIES]:
            return None
        if after is not None:  # it raised consumer.Retry(after=...)
            return max(0.0, after)
        if policy[RP_ON] is not None and name not in policy[RP_ON]:
            return None
        return float(min(policy[RP_MAX_BACKOFF], policy[RP_BACKOFF] * 2**retried) * random.uniform(0.8, 1.2))

    def retry_failures(self, c: ConsumerState, b: Batch, failed: tuple[Failed, ...], eligible: set[int] | None,
                       lo: int, hi: int) -> set[int]:
        """Failures of b's tasks that are tried again: each waits for its time, off its queue
        (lock held). Returns their offsets (no result is recorded for them)."""
        st = self.state
        again: set[int] = set()
        for f in failed:
            i = f[F_SEQ] - b.first
            if not lo <= i < hi or (eligible is not None and i not in eligible):
                continue
            held = next((s for s in b.out if s.lo <= i < s.hi), None)
            delay = self.delay(b, held.retried if held is not None else 0, f[F_NAME], f[F_AFTER])
            if delay is None:
                continue
            again.add(i)
            if held is None or held.owner is not c:
                continue  # waiting, or leased to another since: it runs there, this failure is not final
            t = st.carve(held, i, i + 1)
            st.unlease(t)
            st.queues[b.queue].running -= 1
            due = time.time() + delay
            st.place(Slice(b, i, i + 1, t.tries, retried=t.retried + 1), due, first=True)
            st.counts["retried"] += 1
            if st.journal is not None:
                st.journal.set_attempts([(b.producer, b.first, b.first + i, b.first + i + 1, t.tries,
                                          t.retried + 1, due)])
        return again

    def tick(self, now: float) -> int:
        """Serve the tasks whose time has come, first within their level (lock held); how many."""
        st = self.state
        n = 0
        while st.scheduled and st.scheduled[0][0] <= now:
            _, _, s = heapq.heappop(st.scheduled)
            b = s.batch
            if s in b.later:
                b.later.remove(s)
            runs = b.undone(s.lo, s.hi)
            total = sum(z - a for a, z in runs)
            if not total:
                continue  # a late result settled it meanwhile
            st.queues[b.queue].scheduled -= total
            for a, z in reversed(runs):
                st.place(Slice(b, a, z, s.tries, retried=s.retried), None, first=True)
            n += total
        return n
