"""Redelivery: what a consumer held goes back to the front of its level when the consumer
leaves, goes silent or loses a worker, and to the dead letters once its tasks were served
``max_attempts`` times to consumers that died of them.

A task that killed a worker is served to another consumer while there is one, and tasks that
ran beside others in a worker that died each run alone next, so the one to blame is known.
"""

from __future__ import annotations

import pickle
import time

from god.defaults import MAX_ATTEMPTS
from god.rules.acks import Acks
from god.rules.dead_letters import DeadLetterRules
from god.rules.state import State
from god.store.batches import Slice
from god.store.peers import ConsumerState
from shared.log import count
from shared.records import R_FIRST, R_LO, R_HI, R_PRODUCER, Run, Value, json_line, task_id



class Redelivery:
    """Leased tasks served again when their consumer cannot finish them."""

    def __init__(self, state: State, *, acks: Acks, dead: DeadLetterRules, max_attempts: int = MAX_ATTEMPTS) -> None:
        """Args:
            acks: records the failure of a task that ran over its time.
            dead: takes the tasks served max_attempts times.
        """
        self.state = state
        self.acks = acks
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

    def _take_back(self, c: ConsumerState, r: Run, *, counted: bool, reason: str, alone: bool = False) -> int:
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

    def bye(self, consumer: str) -> None:
        """A consumer (with its workers) or a worker leaves: anything still leased to it goes back,
        unstarted. Or a producer leaves: it is no longer shown, and its results are no longer kept."""
        st = self.state
        with st.lock:
            if st.peers.producers.pop(consumer, None) is not None:
                st.mailboxes.close(consumer)
                return
            c = st.peers.drop(consumer)
            for w in (c, *c.workers.values()) if c is not None else ():
                for s in list(w.leased):
                    self.requeue(s, counted=False, reason="consumer left")
        st.on_change()

    def worker_lost(self, worker: str, running: list[Run], timed_out: str | None = None) -> None:
        """A consumer's worker process died while running the tasks of ``running`` (each uses an
        attempt), or was stopped because they ran over their time (``timed_out`` says so: each
        fails with it, and its retries may try it again); the rest of what it held goes back."""
        st = self.state
        with st.lock:
            c = st.peers.consumers.get(worker)
            if c is None:
                return
            for r in running:
                b = st.batches.get((r[R_PRODUCER], r[R_FIRST]))
                if b is None:
                    continue
                if timed_out is None:  # beside others, any of them may have killed it: each runs alone next
                    self._take_back(c, r, counted=True, reason=f"its worker on {c.top.name} died",
                                    alone=len(running) > 1)
                    continue
                i = r[R_LO] - b.first
                if 0 <= i < b.n and not b.done[i]:
                    held = next((s for s in b.out if s.lo <= i < s.hi), None)
                    line = json_line(task_id(b.producer, b.first + i), None, False, None, timed_out,
                                     None, c.top.name, held.tries if held is not None else 1, time.time(),
                                     b.queue, b.task, shown=b.shown_json(i, self.state.results_payload_max))
                    failure: Value = (False, None, timed_out, None)
                    values = pickle.dumps([failure]) if b.keep else None
                    self.acks.ack(c, (b.producer, b.first, b.first + i, b.first + i + 1, line + "\n",
                                      ((b.first + i, "TimeoutError", None),), values))
        st.results_ready.set()
        self.bye(worker)

    def give_up_silent(self, now: float) -> list[tuple[str, int]]:
        """Give up consumers silent for longer than lease_s, their tasks served again (lock held).

        Returns:
            (consumer, tasks requeued or dead-lettered) for each.
        """
        st = self.state
        lost = []
        for c in st.peers.silent(now, st.lease_s):
            c.alive, c.lost = False, c.lost + 1
            c.lease_seq, c.last_grants = None, []
            slices = list(c.leased)
            n = sum(s.batch.done.count(0, s.lo, s.hi) for s in slices)
            for s in slices:
                self.requeue(s, counted=True, reason=f"consumer {c.name} was lost")
            lost.append((c.name, n))
        return lost
