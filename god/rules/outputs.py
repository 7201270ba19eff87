"""Output: what a task wrote, as its worker sends it (consumer/output.py), kept at god and
handed to the program that owns the task (god/store/outputs.py).

Its lines come ahead of its result on the worker's connection (a running task's also on a
connection of their own), so a program gets a task's lines before its result. With a table
of principals (``leased_only``), a consumer's lines count only for tasks leased to it now,
as its results do (god/rules/acks.py); the others are dropped and counted ``unleased``.
"""

from __future__ import annotations

from god.rules.state import State
from god.store.peers import ConsumerState
from shared.log import RateLimitedLog
from shared.output import Item


def holds(c: ConsumerState, producer: str, seq: int) -> bool:
    """Whether that task is leased to c now."""
    return any(s.batch.producer == producer and s.lo <= seq - s.batch.first < s.hi for s in c.leased)


class OutputRules:
    """Tasks' output from consumers."""

    def __init__(self, state: State, *, leased_only: bool = False) -> None:
        self.state = state
        self.leased_only = leased_only
        self.log = RateLimitedLog()

    def output(self, consumer: str, items: list[Item]) -> int:
        """Keep what tasks wrote, and post it to the programs that wait for it; how many items were taken."""
        st = self.state
        posted = taken = 0
        with st.lock:
            c = st.peers.consumer(consumer, st.now())
            name = c.top.name
            for producer, seq, chunks, progress in items:
                if self.leased_only and not holds(c, producer, seq):
                    st.counts["unleased"] += 1
                    self.log.warning("unleased-output", "{} sent output of {}/{}, which is not leased to it: dropped",
                                     name, producer, seq)
                    continue
                taken += 1
                st.outputs.keep(producer, seq, name, chunks, progress)
                posted += st.outputs.post(producer, (seq, name, chunks, progress))
        if posted:
            st.on_change()
        return taken
