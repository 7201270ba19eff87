"""Peers' lifecycle, for consumers, their worker processes and producers alike: hello,
heartbeat, bye, lost (a worker died, a consumer fell silent), and forgotten.

What a peer held when it leaves or is lost goes back through god/rules/redelivery.py; what
god knows of each peer is kept in god/store/peers.py.
"""

from __future__ import annotations

import time
from typing import Any

from god.defaults import DEDUPE_WINDOW_S
from god.rules.acks import Acks
from god.rules.redelivery import Redelivery
from god.rules.state import State
from shared import items
from shared.records import R_FIRST, R_LO, R_PRODUCER, Run, Value, json_line, task_id
from shared.resources import GPU, Res
from shared.version import minor

FORGET_JOURNAL_EVERY_S = 60.0  # seconds between forgetting silent producers in the journal too


class PeerRules:
    """Peers coming, beating, leaving, lost and forgotten."""

    def __init__(self, state: State, *, redelivery: Redelivery, acks: Acks,
                 dedupe_window_s: float = DEDUPE_WINDOW_S) -> None:
        """Args:
            redelivery: takes back what a peer held when it leaves or is lost.
            acks: records the failure of a task that ran over its time (its worker was stopped).
            dedupe_window_s: how long a producer not heard from is remembered (its last seq).
        """
        self.state = state
        self.redelivery = redelivery
        self.acks = acks
        self.dedupe_window_s = dedupe_window_s
        self._forgot_at = state.now()  # when the journal last forgot producers

    # -- coming and beating ---------------------------------------------------------------

    def hello_consumer(self, name: str, host: str, processes: int, queues: tuple[str, ...] | None = None,
                       parent: str | None = None, concurrency: int = 1, python: str = "", cache: str = "",
                       have: Res = (), gpus: tuple[str, ...] = ()) -> None:
        """A consumer says who it is (on which Python); or a worker process of consumer ``parent`` does."""
        st = self.state
        with st.lock:
            if parent is not None:
                st.peers.worker(name, parent, st.now())
                return
            c = st.peers.consumer(name, st.now())
            c.host, c.processes, c.concurrency, c.python, c.cache = host, processes, concurrency, python, cache
            c.resources, c.gpus = dict(have), gpus[:int(dict(have).get(GPU, 0))]
            st.peers.pythons.add(minor(python))
            if queues is not None:
                c.queues = queues

    def hello_producer(self, name: str, host: str, results: bool, python: str = "", *, output: bool = False) -> None:
        """A producer says who it is (on which Python), whether god should keep its results for
        it, and whether its tasks' lines too (god/store/outputs.py)."""
        st = self.state
        with st.lock:
            p = st.peers.producer(name, st.now())
            p.host, p.python = host, python
            if output:
                st.outputs.open(name)
        if results:
            st.mailboxes.open(name, durable=True)

    def heartbeat(self, consumer: str) -> tuple[bool, dict[str, Any]]:
        """Keep a consumer's leases alive.

        Returns:
            (False if it had been given up (its tasks requeued), what operators asked of it:
            "drain" (bool), "stop" (the (producer, seq) of cancelled tasks it runs)).
        """
        st = self.state
        with st.lock:
            c = st.peers.consumers.get(consumer)
            was_alive = c is not None and c.alive
            now = st.now()
            c = st.peers.consumer(consumer, now)
            if c.stop:  # told for a while (a lost reply is no matter), then forgotten
                c.stop = {key: until for key, until in c.stop.items() if until > now}
            return was_alive, {"drain": c.drain, "stop": list(c.stop)}

    def cache_of(self, name: str) -> str:
        """The cache of large values of a consumer or its worker ("": none known)."""
        c = self.state.peers.consumers.get(name)
        return c.top.cache if c is not None else ""

    # -- leaving and lost -----------------------------------------------------------------

    def bye(self, name: str) -> None:
        """A consumer (with its workers) or a worker leaves: anything still leased to it goes back,
        unstarted. Or a producer leaves: it is no longer shown, and its results are no longer kept."""
        st = self.state
        with st.lock:
            if st.peers.producers.pop(name, None) is not None:
                st.mailboxes.close(name)
                st.outputs.close(name)
                if st.values is not None:
                    st.values.unpin_all(("program", name))
                return
            c = st.peers.drop(name)
            for w in (c, *c.workers.values()) if c is not None else ():
                for s in list(w.leased):
                    self.redelivery.requeue(s, counted=False, reason="consumer left")
                if st.values is not None:  # (a result's values it sent, its ack never came)
                    st.values.unpin_all(("program", w.name))
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
            if st.values is not None:  # (its acks will not come: the values its results sent go)
                st.values.unpin_all(("program", worker))
            for r in running:
                b = st.batches.get((r[R_PRODUCER], r[R_FIRST]))
                if b is None:
                    continue
                if timed_out is None:  # beside others, any of them may have killed it: each runs alone next
                    self.redelivery.take_back(c, r, counted=True, reason=f"its worker on {c.top.name} died",
                                              alone=len(running) > 1)
                    continue
                i = r[R_LO] - b.first
                held = next((s for s in b.out if s.lo <= i < s.hi and s.owner is c), None) if 0 <= i < b.n else None
                if held is not None and not b.done[i]:  # (a task it does not hold is not its to fail)
                    shown = b.shown_json(i, st.results_payload_max)
                    line = json_line(task_id(b.producer, b.first + i), None, False, None, timed_out,
                                     None, c.top.name, held.tries, time.time(),
                                     b.queue, b.task, shown=shown,
                                     requeued_from=b.origin[i] if b.origin is not None else None)
                    failure: Value = (False, None, timed_out, None)
                    values = items.dump([failure]) if b.keep else None
                    self.acks.ack(c, (b.producer, b.first, b.first + i, b.first + i + 1, line + "\n",
                                      ((b.first + i, "TimeoutError", None, timed_out, None, shown),), values))
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
                self.redelivery.requeue(s, counted=True, reason=f"consumer {c.name} was lost")
            lost.append((c.name, n))
        return lost

    # -- forgotten ------------------------------------------------------------------------

    def forget(self, now: float) -> None:
        """Forget what god no longer needs of peers long gone (lock held): lost consumers and
        idle producers no longer shown (their mailboxes closed), and the last seq of producers
        not heard from for the dedupe window (a batch they send after is taken as new)."""
        st = self.state
        producers, consumers = st.peers.forget(now)
        for name in producers:
            st.mailboxes.close(name)
            st.outputs.close(name)
        if st.values is not None:
            for name in producers + consumers:
                st.values.unpin_all(("program", name))
        heard, horizon = st.heard, now - self.dedupe_window_s
        while heard:
            name, at = next(iter(heard.items()))
            if at > horizon:
                break
            del heard[name]
            st.upto.pop(name, None)
            st.counts["forgotten"] += 1
        if st.journal is not None and now - self._forgot_at >= FORGET_JOURNAL_EVERY_S:
            self._forgot_at = now
            st.journal.forget_producers(time.time() - self.dedupe_window_s)
