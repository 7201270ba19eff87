"""Taking puts: a producer's batch taken whole if there is room, once however often it is sent.

A producer's batches are taken in order, so "all up to N" per producer is all god must
remember to tell a re-sent batch from a new one; a producer not heard from for the dedupe
window is forgotten (god/rules/peers.py). Producers that wait for their results get them from
here too.
"""

from __future__ import annotations

from typing import Any

from god.defaults import DEDUPE_WINDOW_S, MAX_PAYLOAD
from god.rules.handout import TUTORIAL
from god.rules.state import State
from shared.log import logger
from shared.records import PUT_FIRST, PUT_N, Put, split_id


class Intake:
    """Puts and the producers that make them."""

    def __init__(self, state: State, *, max_payload: int = MAX_PAYLOAD,
                 dedupe_window_s: float = DEDUPE_WINDOW_S) -> None:
        """Args:
            max_payload: what producers are told is the most one payload may pickle to.
            dedupe_window_s: how long a producer not heard from is remembered (its last seq).
        """
        self.state = state
        self.max_payload = max_payload
        self.dedupe_window_s = dedupe_window_s

    def has_room(self) -> bool:
        """Whether a put would find room: a hint, read without the lock."""
        st = self.state
        return st.waiting + st.blocked < st.capacity

    def out_of_turn(self, producer: str, put: Put, after: int) -> bool:
        """Whether a new batch sent behind the one that ends at seq ``after`` would be refused
        because that one was not taken: a hint, read without the lock (``offer`` decides)."""
        upto = self.state.upto.get(producer, 0)
        return put[PUT_FIRST] > upto and after != upto

    def offer(self, producer: str, put: Put, after: int | None = None, loaded: Any = None) -> tuple[bool, int]:
        """Take a batch whole if there is room (a re-sent one is taken care of already).

        ``after``: the batch was sent behind others not confirmed yet, and follows the one
        that ends at that seq: it is taken only if that one was (a producer's batches are
        taken in order, so "all up to N" is all god must remember of them).

        Returns:
            (taken, the journal ticket its confirmation waits for; 0: none; -1: not taken,
            for the batch before it was not).
        """
        st = self.state
        with st.lock:
            now = st.now()
            p = st.peers.producer(producer, now)
            st.heard.pop(producer, None)
            st.heard[producer] = now
            upto = st.upto.get(producer, 0)
            if upto == 0 and put[PUT_FIRST] > 1 and not producer.startswith(TUTORIAL):
                self._unknown_put(producer, put[PUT_FIRST])
            if put[PUT_FIRST] <= upto:
                p.duplicates += put[PUT_N]
                return True, st.journal.ticket if st.journal is not None else 0
            if after is not None and after != upto:
                return False, -1
            ticket = st.add_batch(producer, put, producer in st.mailboxes, loaded=loaded)
            if ticket < 0:
                return False, 0
            p.put += put[PUT_N]
        st.on_change()
        return True, ticket

    def _unknown_put(self, producer: str, first: int) -> None:
        """A producer god does not remember puts a batch from seq ``first`` on: god forgot it
        (silent for longer than the dedupe window) or lost its journal. Taken as new: a batch
        it sent before cannot be told from one it did not."""
        self.state.counts["unknown_puts"] += 1
        logger.warning("producer {} puts tasks from {} on but god does not remember it (not heard from for "
                       "over {:.0f}s, or god lost its journal): a put it sent before would run again",
                       producer, first, self.dedupe_window_s)

    def results_for(self, producer: str, run: str, confirmed: int, max_n: int, check: list[str] | None = None,
                    output: int | None = None) -> tuple[Any, ...]:
        """Results of the producer's own tasks, numbered; those up to ``confirmed`` it has already.

        ``run`` is the god run the numbers came from (a restarted god numbers anew).

        ``output``: the last number of its tasks' lines it has (god/store/outputs.py), or None
        for a producer that takes no lines.

        Returns:
            (the results, the ids in ``check`` that are done but whose results this god
            never had: finished before it restarted), and with ``output`` the lines that
            wait (a task's lines come before its result: while more lines wait than one
            answer takes, results wait too).
        """
        st = self.state
        with st.lock:
            st.peers.producer(producer, st.now())
            gone = [tid for tid in check or () if st.done_before(*split_id(tid))]
        if run != st.run:
            confirmed, output = 0, (None if output is None else 0)
        if gone:  # done, but not if their results wait in the mailbox
            held = st.mailboxes.holds(producer)
            gone = [tid for tid in gone if split_id(tid)[1] not in held]
        if output is None:
            return st.mailboxes.take(producer, confirmed, max_n), gone
        with st.lock:
            lines, more = st.outputs.take(producer, output)
        return (st.mailboxes.take(producer, confirmed, 0 if more else max_n), gone, lines)
