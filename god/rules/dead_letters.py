"""Dead letters, the rules: a task given up on gets a result that says so and is kept, to be
listed, served again under a new id, or dropped (python -m god dead, requeue, purge).

What a kept letter holds, and where its payload lives, is god/store/dead_letters.py's.
"""

from __future__ import annotations


import secrets
import time
from typing import Any

from god.rules.state import State
from god.store.batches import Batch
from god.store.dead_letters import DeadLetter, shown
from shared import items
from shared.log import count
from shared.records import task_id


class DeadLetterRules:
    """Giving tasks up, and what operators do with them after."""

    def __init__(self, state: State) -> None:
        self.state = state

    def give_up(self, b: Batch, runs: list[tuple[int, int]], reason: str, attempts: int) -> None:
        """The tasks of these runs of b are given up on (lock held): each gets its result line, and is kept."""
        st = self.state
        error = f"dead letter: {reason}"
        at = time.time()
        letters = []
        names = st.batch_values.get(b.key)  # (kept with the letters: the batch lets them go as it settles)
        for lo, hi in runs:
            for i in range(lo, hi):
                d = DeadLetter(task_id(b.producer, b.first + i), b.queue, b.task, b.priority, b.retry,
                               shown(b.shown(i)), reason, attempts, at, b.payload(i), names, b.resources)
                st.dead.hold_values(d)
                letters.append(d)
            st.conclude(b, lo, hi, (False, None, error, None), attempts)
            n = hi - lo
            st.counts["dead"] += n
            st.queues[b.queue].dead += n
        st.dead.add(letters)
        st.results_ready.set()

    def listing(self, queue: str | None = None) -> list[dict[str, Any]]:
        """The dead letters kept, oldest first, of one queue or all."""
        st = self.state
        with st.lock:
            return [d.figures() for d in st.dead.listing(queue)]

    def requeue(self, ids: list[str] | None, queue: str | None = None) -> list[tuple[str, str]]:
        """Serve dead letters again as new tasks (ids given, or all of a queue, or all): one
        batch per queue, task, priority and retry policy, from a producer of their own, each
        result line saying which dead letter it was.

        Returns:
            (the dead letter's id, its new id) of each.

        Raises:
            ValueError: an id that is no dead letter kept, or no room for them.
        """
        st = self.state
        with st.lock:
            if ids:
                unknown = st.dead.unknown(ids)
                if unknown:
                    raise ValueError(f"{count(len(unknown), 'id')} god keeps no dead letter of: "
                                     f"{', '.join(unknown[:5])}{' ...' if len(unknown) > 5 else ''}")
            else:
                ids = [d.id for d in st.dead.listing(queue)]
            if not ids:
                return []
            if st.waiting + st.blocked + len(ids) > st.capacity:
                raise ValueError(f"no room for {count(len(ids), 'task')}: {st.waiting + st.blocked} wait of --capacity "
                                 f"{st.capacity}; try again when fewer wait")
            groups: dict[tuple[str, str | None, int, Any, Any], list[tuple[DeadLetter, bytes]]] = {}
            for d, blob in st.dead.payloads(ids):
                groups.setdefault((d.queue, d.task, d.priority, d.retry, d.resources), []).append((d, blob))
            producer, seq, out = f"requeue-{secrets.token_hex(4)}", 1, []
            for (q, task, priority, retry, res), letters in groups.items():
                blob = items.dump(items.join(items.load(b) for _, b in letters))
                origin = [d.id for d, _ in letters]
                names = tuple(sorted({v for d, _ in letters for v in d.values or ()})) or None
                st.add_batch(producer, (seq, len(letters), blob, q, task, priority, retry, None, None, names, res),
                             False, origin)
                out += [(tid, task_id(producer, seq + i)) for i, tid in enumerate(origin)]
                seq += len(letters)
            st.dead.remove(ids)  # after the batches: a crash between keeps both, never neither
        st.on_change()
        return out

    def purge(self, queue: str | None = None, older_than_s: float | None = None) -> int:
        """Drop dead letters of a queue (or all), given up more than older_than_s ago (or any)."""
        st = self.state
        with st.lock:
            return st.dead.purge(queue, time.time() - older_than_s if older_than_s is not None else None)
