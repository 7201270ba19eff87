"""Redelivery: what a consumer held goes back to the front of its level when the consumer
leaves, goes silent or loses a worker (god/rules/peers.py says when), and to the dead letters once its tasks were served
``max_attempts`` times to consumers that died of them.

A task that killed a worker is served to another consumer while there is one, and tasks that
ran beside others in a worker that died each run alone next, so the one to blame is known.
"""

from __future__ import annotations

from god.defaults import MAX_ATTEMPTS
from god.rules.dead_letters import DeadLetterRules
from god.rules.state import State
from god.store.batches import Slice
from god.store.peers import ConsumerState
from shared.log import count
from shared.records import R_FIRST, R_HI, R_LO, R_PRODUCER, Run


class Redelivery:
    """Leased tasks served again when their consumer cannot finish them."""

    def __init__(self, state: State, *, dead: DeadLetterRules, max_attempts: int = MAX_ATTEMPTS) -> None:
        """Args:
            dead: takes the tasks served max_attempts times.
        """
        self.state = state
        self.dead = dead
        self.max_attempts = max_attempts

    def requeue(self, s: Slice, *, counted: bool, reason: str, avoid: ConsumerState | None = None,
                alone: bool = False) -> int:
        """A leased slice goes back to the front of its level, or to the dead letters once its
        tasks were served max_attempts times (lock held); returns how many went back.
        ``avoid``: a consumer not to serve it again while another can (its worker died running
        it), for one lease period at most: a consumer that serves the queue too, but is busy
        with queues before it, must not leave the task waiting indefinitely."""
        st = self.state
        b = s.batch
        runs = b.undone(s.lo, s.hi)
        if counted and runs and s.tries - s.retried >= self.max_attempts:  # deaths, not retries
            self.dead.give_up(b, runs, f"{reason}; {count(s.tries, 'attempt')}", s.tries)  # settles s as well
            return 0
        st.unlease(s)
        total = sum(hi - lo for lo, hi in runs)
        if not total:
            return 0
        st.queues[b.queue].running -= total
        tries = s.tries if counted else s.tries - 1
        until = st.now() + st.lease_s if avoid is not None else 0.0
        for lo, hi in reversed(runs):
            st.place(Slice(b, lo, hi, tries, retried=s.retried, avoid=avoid, avoid_until=until, alone=alone or s.alone),
                     None, first=True)
        st.counts["redelivered"] += total
        if counted and st.journal is not None:
            st.journal.set_attempts([(b.producer, b.first, b.first + lo, b.first + hi, tries, s.retried, None)
                                     for lo, hi in runs])
        return total

    def take_back(self, c: ConsumerState, r: Run, *, counted: bool, reason: str, alone: bool = False) -> int:
        """What c holds of the run r goes back (lock held)."""
        st = self.state
        b = st.batches.get((r[R_PRODUCER], r[R_FIRST]))
        if b is None:
            return 0
        lo, hi = r[R_LO] - b.first, r[R_HI] - b.first
        n = 0
        for s in [s for s in b.out if s.owner is c and s.lo < hi and lo < s.hi]:
            taken = st.carve(s, max(lo, s.lo), min(hi, s.hi))
            n += self.requeue(taken, counted=counted, reason=reason, avoid=c.top if counted else None, alone=alone)
        return n
