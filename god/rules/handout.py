"""The tutorial's hand-out: a task taken through a queue view (god/transport/views.py) is delivered at
most once, settled as it is handed out, and a value put on the result view is its result.
"""

from __future__ import annotations


import time
from typing import Any

from god.rules.leases import Leases
from god.rules.state import State
from god.store.batches import Batch
from god.store.peers import ConsumerState
from shared import items
from shared.calls import shown_json
from shared.records import json_line, task_id

TUTORIAL = "tutorial"  # producer name prefix of tasks put through the queue views


class HandOut:
    """Tasks handed out through the tutorial's queue views, and the values that come back."""

    def __init__(self, state: State, *, leases: Leases) -> None:
        """Args:
            leases: picks the next task as a lease does (priorities, limits, pauses).
        """
        self.state = state
        self.leases = leases

    def hand_out(self, queue: str) -> tuple[Batch, int, Any] | None:
        """Take the next waiting task of a queue off it for good (at most once: it is done, with
        no result): its batch, offset and payload; None while none waits."""
        st = self.state
        with st.lock:
            q = st.queues.get(queue)
            if q is None or q.waiting <= 0 or q.paused:
                return None
            # A stand-in consumer, not among the peers: the task is settled at once.
            leased = self.leases.lease_now(ConsumerState(TUTORIAL, st.now()), (queue,), 1)
            if not leased:
                return None  # (what waits needs a consumer's resources)
            s, _ = leased[0]
            b, i = s.batch, s.lo
            data, payload = items.item(b.items(), i)  # (one god does not load: its pickle, bytes)
            st.settle(b, i, i + 1)
            st.counts["handed_out"] += 1
            if st.journal is not None:
                st.journal.add_done([(b.producer, b.first, b.first + i, b.first + i + 1)])
        st.on_change()
        return b, i, payload

    def record_value(self, value: Any, task: tuple[Batch, int, Any] | None, *, post: bool) -> None:
        """A value reported outside a lease (a tutorial worker's, on the result queue view): the
        result of a task handed out, or of none. ``post``: to its producer's mailbox too."""
        st = self.state
        with st.lock:
            st.counts["done"] += 1
            at = time.time()
            if task is None:
                st.outbox.append((json_line(None, None, True, value, None, None, TUTORIAL, 1, at) + "\n", []))
            else:
                b, i, payload = task
                st.queue(b.queue).done += 1
                st.outbox.append((json_line(task_id(b.producer, b.first + i), None, True, value, None, None,
                                            TUTORIAL, 1, at, b.queue, b.task,
                                            shown=shown_json(b.task, payload, st.results_payload_max)) + "\n", []))
                if post and b.keep:
                    blob = items.dump([(True, value, None, None)])  # (it came as data)
                    st.mailboxes.post(b.producer, (b.first + i, b.first + i + 1, blob, TUTORIAL, 1))
        st.results_ready.set()
        st.on_change()

    def waiting(self, queue: str) -> int:
        """Tasks waiting on a queue."""
        st = self.state
        with st.lock:
            q = st.queues.get(queue)
            return q.waiting if q is not None else 0
