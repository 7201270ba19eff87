"""God's task rules put together: one state, one lock, a rule set per concern.

A producer's put stays one unit from the wire to the journal: a ``Batch`` with the
producer's name, a range of sequence numbers and its payloads as the one pickled blob the
producer sent. Queues hold ``Slice``s (a run of a batch), a lease hands out slices, an ack
settles a run; which tasks of a batch are done is one byte each in a bytearray, read and
written with C calls over whole runs. Per-task Python objects exist only on the paths of
exceptions: a slice carved for a redelivery, a batch whose payloads are unpickled because
it is leased in parts, a dead letter.

The rule sets, one per concern, are listed in ``god/rules/__init__.py``; one call's trip
through them is drawn in ``god/__init__.py``.

No sockets, no threads and no waiting of its own: calls return at once, and a caller that
waits for tasks, room or results parks in ``god/transport/waits.py``, which ``on_change``
wakes. The clock is injected, so tests expire leases without sleeping.
``god/transport/api.py`` is the one door clients call through.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from god.defaults import (
    CAPACITY, DEAD_KEEP, DEDUPE_WINDOW_S, LEASE_S, MAX_ATTEMPTS, MAX_PAYLOAD, RESULTS_PAYLOAD_MAX, WARN_AFTER_S,
)
from god.rules.acks import Acks
from god.rules.controls import Controls
from god.rules.dead_letters import DeadLetterRules
from god.rules.figures import Figures
from god.rules.handout import HandOut
from god.rules.intake import Intake
from god.rules.leases import Leases
from god.rules.outputs import OutputRules
from god.rules.peers import PeerRules
from god.rules.redelivery import Redelivery
from god.rules.retries import Retries
from god.rules.schedules import Schedules
from god.rules.state import JournalLike, State, do_nothing
from god.store.batches import Batch, Slice, Tries
from god.store.dead_letters import DeadLetter
from god.store.mailboxes import Item
from god.store.outbox import Outgoing
from god.store.schedules import Schedule
from god.store.values import ValueStore
from shared.records import (
    PUT_AFTER, PUT_DUE, PUT_FIRST, PUT_N, PUT_PAYLOADS, PUT_PRIORITY, PUT_QUEUE, PUT_RESOURCES, PUT_RETRY, PUT_TASK, Put,
)


class Broker:
    """Queues, leases and results with at-least-once delivery and one result per task id."""

    def __init__(
        self,
        *,
        capacity: int = CAPACITY,
        lease_s: float = LEASE_S,
        max_attempts: int = MAX_ATTEMPTS,
        max_payload: int = MAX_PAYLOAD,
        results_payload_max: int | None = RESULTS_PAYLOAD_MAX,
        now: Callable[[], float] = time.monotonic,
        journal: JournalLike | None = None,
        on_change: Callable[[], None] = do_nothing,
        figures: Callable[[], dict[str, int]] = dict,
        dedupe_window_s: float = DEDUPE_WINDOW_S,
        dead_keep: int = DEAD_KEEP,
        warn_after_s: float | None = WARN_AFTER_S,
        wall: Callable[[], float] = time.time,
        leased_only: bool = False,
        values: ValueStore | None = None,
        fit_timeout_s: float | None = None,
    ) -> None:
        """Args:
            journal: told of every accepted batch, settled handout and counted attempt.
            on_change: called after a change that may let a waiting call go on (tasks to
                lease, room to put, results to fetch).
            figures: more counts for ``stats`` (the door's connections and refusals).
            dedupe_window_s: how long a producer not heard from is remembered (its last seq).
            dead_keep: dead letters kept, the oldest let go first.
            warn_after_s: a task held by a consumer longer than this is reported once by ``reap``.
            wall: the Unix time, for schedules (injected too, for tests).
            results_payload_max: characters of a payload's JSON a results line holds (None: all).
            leased_only: consumers' results count only for tasks leased to them, in lines of
                their own tasks (god --keys: god/rules/acks.py).
            values: where large values are kept (god/store/values.py); None: puts that name
                values are refused.
            fit_timeout_s: a task that fits no consumer serving its queue (its resources) this
                long fails saying so (None: it waits for one).
        """
        self.state = st = State(capacity=capacity, lease_s=lease_s, dead_keep=dead_keep, now=now, wall=wall,
                                journal=journal, on_change=on_change, results_payload_max=results_payload_max,
                                values=values)
        self.intake = Intake(st, max_payload=max_payload, dedupe_window_s=dedupe_window_s)
        self.leases = Leases(st, warn_after_s=warn_after_s)
        self.fit_timeout_s = fit_timeout_s
        self.retries = Retries(st)
        self.acks = Acks(st, retries=self.retries, leased_only=leased_only)
        self.output = OutputRules(st, leased_only=leased_only)
        self.dead = DeadLetterRules(st)
        self.redelivery = Redelivery(st, dead=self.dead, max_attempts=max_attempts)
        self.peers = PeerRules(st, redelivery=self.redelivery, acks=self.acks, dedupe_window_s=dedupe_window_s)
        self.controls = Controls(st)
        self.schedules = Schedules(st)
        self.tutorial = HandOut(st, leases=self.leases)
        self.figures = Figures(st, more=figures)
        self.graph = st.graph

    def reap(self) -> list[tuple[str, int]]:
        """Give up consumers silent for longer than lease_s, their tasks served again; serve the
        tasks whose time has come, put the schedules' tasks that are due, forget producers
        silent for the dedupe window, warn of stuck tasks. God's loop (god/service.py) calls it each tick.

        Returns:
            (consumer, tasks requeued or dead-lettered) for each consumer given up now.
        """
        st = self.state
        with st.lock:
            now = st.now()
            due = self.retries.tick(now)
            self.leases.warn_stuck(now)
            due += self.schedules.run_due(st.wall())
            lost = self.peers.give_up_silent(now)
            self.peers.forget(now)
            if self.fit_timeout_s is not None:
                for b, lo, hi, why in self.figures.unfit_for(self.fit_timeout_s, now):
                    self.controls.give_up(b, lo, hi, f"{why}, for over {self.fit_timeout_s:g}s (god --fit-timeout)")
        if lost:
            st.results_ready.set()
        # A rate-limited queue's budget grows with time, which changes nothing else: look again.
        if lost or due or any(q.limit is not None and q.waiting > 0 for q in list(st.queues.values())):
            st.on_change()
        return lost

    def take_results(self) -> tuple[list[Outgoing], list[tuple[str, int]]]:
        """Everything recorded since the last call, oldest first, for printing and files.

        Returns:
            (the results, (producer, first) of the batches whose last task was settled since
            the last call). Both come from one moment: a finished batch's results are in this
            call's results or an earlier one's, so once those are journaled it can go.
        """
        st = self.state
        st.results_ready.clear()
        with st.lock:
            out, st.outbox = st.outbox, []
            finished, st.finished = st.finished, []
        return out, finished

    @property
    def results_ready(self) -> threading.Event:
        """Set when results wait to be taken (``take_results``)."""
        return self.state.results_ready

    @property
    def kept_ticket(self) -> int:
        """The journal ticket of the last value kept for a producer (god/store/mailboxes.py) or
        for the tasks that wait for it (god/rules/graph.py): results lines come after it."""
        st = self.state
        return max(st.mailboxes.ticket, st.graph.ticket)

    def restore(self, batches: list[tuple[str, Put, bytearray, list[Tries], list[str] | None]],
                upto: dict[str, int], dead: list[DeadLetter] | None = None,
                schedules: list[Schedule] | None = None, mailboxes: dict[str, list[Item]] | None = None,
                outcomes: dict[str, bytes] | None = None) -> None:
        """Take over what a journal held: (producer, put, done bytes, tries of runs as offsets,
        dead letters it serves again) of each batch with tasks not done, in order; each
        producer's last seq; the dead letters kept; the producers' mailboxes with the results
        they had not confirmed; what tasks others wait for gave. A retry that was due while
        god was down is served at once; a batch that waits for tasks waits again."""
        st = self.state
        with st.lock:
            for name, items in (mailboxes or {}).items():  # first: their batches keep values for them
                st.mailboxes.restore(name, items)
                st.peers.producer(name, st.now())  # forgotten like any producer that does not come back
            st.dead.restore(dead or [])
            st.schedules.update((s.name, s) for s in schedules or [])
            st.upto.update(upto)
            st.graph.restore(outcomes or {})
            now = st.now()
            st.heard.update(dict.fromkeys(upto, now))
            held: list[tuple[Batch, list[Tries]]] = []
            for producer, put, done, tries, origin in batches:
                b = Batch(producer, put[PUT_FIRST], put[PUT_N], put[PUT_QUEUE], put[PUT_TASK], put[PUT_PRIORITY],
                          put[PUT_PAYLOADS], producer in st.mailboxes, now, put[PUT_RETRY], origin=origin,
                          after=put[PUT_AFTER], due=put[PUT_DUE], resources=put[PUT_RESOURCES])
                b.done[:] = done
                b.left = done.count(0)
                if not b.left:
                    continue
                st.batches[b.key] = b
                st.keep_values(b.key, put)
                st.upto[producer] = max(st.upto.get(producer, 0), b.first + b.n - 1)
                st.heard.setdefault(producer, now)
                held.append((b, tries))
            for b, tries in held:  # once all are back: a batch may wait for any of them
                if b.after is not None and not st.graph.link(b):
                    continue  # it waits, or failed now
                marks: list[tuple[int, int, float | None]] = [(0, 0, None)] * b.n
                for lo, hi, n, retried, due in tries:
                    marks[lo:hi] = [(n, retried, due)] * (hi - lo)
                for lo, hi in b.undone(0, b.n):
                    start = lo
                    for i in range(lo + 1, hi + 1):  # runs of equal attempts
                        if i == hi or marks[i] != marks[start]:
                            n, retried, due = marks[start]
                            # a retry's time, else the batch's own (--delay), if still to come
                            st.place(Slice(b, start, i, n, retried=retried),
                                     due if due is not None else b.due, first=False)
                            start = i
            st.graph.forget_unused()
            if st.values is not None:
                st.values.drop_unpinned()  # (what no batch names: its programs send it again if they need it)
