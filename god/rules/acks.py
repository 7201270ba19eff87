"""Acks: a consumer's results settle runs of a batch; the first result for a task wins.

An ack carries a run's result lines (the worker formats them), its failures as fields (what
god knows of a failure it reads from those, never from a line), and the values when its
producer waits for them. A failure with retries left is not a result yet
(god/rules/retries.py takes it); the last failures are kept for ``python -m god failed``.

With a table of principals (god --keys), consumers are held to what they were given:
``leased_only``. An ack's tasks count only where they are leased to the consumer that acks
them now (a late result, after its lease ran out or god restarted, is dropped and counted
``unleased``: the task runs again, at least once as always), and every line of an ack must
be the line of its own task (god/rules/own_lines.py). A consumer that writes another task's
line, or another consumer's, is refused whole (PermissionError), before anything of it is kept.
Without a table every key holder may do everything, and god keeps a late result too: it
saves running the task again.
"""

from __future__ import annotations

import time
from typing import Any

from god.rules.handout import TUTORIAL
from god.rules.own_lines import checked
from god.rules.retries import Retries
from god.rules.state import State
from god.store.batches import Batch, runs_of
from god.store.dead_letters import payload_figures, shown_text
from god.store.peers import ConsumerState
from god.store.values import names_in
from shared import items
from shared.log import RateLimitedLog
from shared.records import (
    A_FAILED, A_FIRST, A_HI, A_LINES, A_LO, A_PRODUCER, A_VALUES, DEFAULT_QUEUE, F_AFTER, F_SEQ, Ack, Failed,
    failure_fields, task_id,
)

TRACEBACK_CHARS = 4_000  # of a failure's traceback kept for ``failed``


def held_by(b: Batch, c: ConsumerState, runs: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """The parts of runs of b's offsets (sorted) that are in slices leased to c now."""
    mine = sorted((s.lo, s.hi) for s in b.out if s.owner is c)
    return [(max(lo, slo), min(hi, shi)) for lo, hi in runs for slo, shi in mine if max(lo, slo) < min(hi, shi)]


class Acks:
    """Recording results."""

    def __init__(self, state: State, *, retries: Retries, leased_only: bool = False) -> None:
        """``leased_only``: hold consumers to the tasks leased to them (god --keys; above)."""
        self.state = state
        self.retries = retries
        self.leased_only = leased_only
        self.log = RateLimitedLog()

    def ack_many(self, consumer: str, acks: list[Ack]) -> int:
        """Record results; the first result for a task wins, later ones are counted duplicates.

        Returns:
            How many results were new.

        Raises:
            PermissionError: ``leased_only``, and a line is not its own task's (none recorded).
        """
        st = self.state
        with st.lock:
            c = st.peers.consumer(consumer, st.now())
            if self.leased_only:
                acks = [self._own_lines(c, a) for a in acks]
            named: list[str] = []
            if st.values is not None:
                acks = [self._named(a, named) for a in acks]
            new = sum(self.ack(c, a) for a in acks)
            if named:  # kept by the results that name them now (god/store/mailboxes.py, god/rules/graph.py)
                st.values.unpin(("program", consumer), named)  # type: ignore[union-attr]
        if new:
            st.results_ready.set()
            st.on_change()
        return new

    def _named(self, a: Ack, named: list[str]) -> Ack:
        """The ack, its results that name a large value god does not hold failed (a value lost
        before its result came: a god restarted in between); the names of the others added to
        ``named``."""
        values = a[A_VALUES]
        names = names_in(values)
        if not names:
            return a
        store = self.state.values
        assert store is not None and values is not None
        if not store.missing(names):
            named.extend(names)
            return a
        loaded = items.load(values)
        for i, v in enumerate(loaded):
            lacks = store.missing(names_in([v]))
            if lacks:
                loaded[i] = (False, None, f"its value names a large value god does not hold ({lacks[0][:12]}): it "
                             f"was lost at god before the result came", None)
            else:
                named.extend(names_in([v]))
        return (*a[:A_VALUES], items.dump(loaded), *a[A_VALUES + 1:])  # type: ignore[return-value]

    def ack(self, c: ConsumerState, a: Ack) -> int:
        """Record the results of one ack from c (lock held); returns how many were new
        (``leased_only``: of the tasks leased to c now)."""
        st = self.state
        b = st.batches.get((a[A_PRODUCER], a[A_FIRST]))
        lo, hi = a[A_LO] - a[A_FIRST], a[A_HI] - a[A_FIRST]
        if b is None or not 0 <= lo < hi <= b.n:
            return self._ack_unknown(c, a)
        lines, failed, values = a[A_LINES], a[A_FAILED], a[A_VALUES]
        runs = b.undone(lo, hi)
        unleased = 0
        if self.leased_only:
            undone = sum(rhi - rlo for rlo, rhi in runs)
            runs = held_by(b, c, runs)
            unleased = undone - sum(rhi - rlo for rlo, rhi in runs)
            if unleased:
                self._unleased(c, a, unleased)
        keep: set[int] | None = None  # the offsets to record, when not all of [lo, hi)
        if len(runs) != 1 or runs[0] != (lo, hi):  # some had a result already: keep the rest
            keep = {i for rlo, rhi in runs for i in range(rlo, rhi)}
            st.counts["duplicates"] += hi - lo - len(keep) - unleased
        if failed and (b.retry is not None or any(f[F_AFTER] is not None for f in failed)):
            again = self.retries.retry_failures(c, b, failed, keep, lo, hi)
            if again:  # tried again later: no result for them now
                keep = (set(range(lo, hi)) if keep is None else keep) - again
        if keep is not None:
            if not keep:
                return 0
            lines = "".join(line + "\n" for i, line in zip(range(lo, hi), lines.split("\n")) if i in keep)
            failed = tuple(f for f in failed if f[F_SEQ] - b.first in keep)
            if values is not None:
                values = items.dump(items.pick(items.load(values), [i - lo for i in range(lo, hi) if i in keep]))
            runs = runs_of(sorted(keep))
        n = sum(rhi - rlo for rlo, rhi in runs)
        attempt = max((s.tries for s in b.out if s.lo <= runs[0][0] < s.hi), default=1)
        if failed:
            self._keep_failures(b, c.top.name, failed, attempt)
        if len(runs) == 1:
            st.record(b, runs[0][0], runs[0][1], lines, values, c.top.name, attempt, failed=failed)
        else:
            self._record_runs(b, runs, lines, values, c.top.name, attempt, failed)
        for rlo, rhi in runs:
            st.settle(b, rlo, rhi)
        st.count_results(c, st.queues[b.queue], n, len(failed))
        return n

    def _keep_failures(self, b: Batch, consumer: str, failed: tuple[Failed, ...], attempt: int) -> None:
        """Keep the last failed results for ``failed``, from the failures' fields."""
        at = time.time()
        for f in failed:
            error, tb, payload = failure_fields(f)
            self.state.failed.append({
                "id": task_id(b.producer, f[F_SEQ]), "queue": b.queue, "task": b.task,
                **payload_figures(shown_text(payload)), "error": error,
                "traceback": tb[-TRACEBACK_CHARS:] if tb is not None else None,
                "attempts": attempt, "consumer": consumer, "time": at,
            })

    def _record_runs(self, b: Batch, runs: list[tuple[int, int]], lines: str, values: bytes | None,
                     consumer: str, attempt: int, failed: tuple[Failed, ...]) -> None:
        """Record results that are several runs of b (some in between had results already)."""
        parts = lines.split("\n")
        vals = items.load(values) if values is not None else None
        i = 0
        for lo, hi in runs:
            k = hi - lo
            self.state.record(b, lo, hi, "".join(p + "\n" for p in parts[i : i + k]),
                              items.dump(items.cut(vals, i, i + k)) if vals is not None else None, consumer, attempt,
                              failed=failed)
            i += k

    def _ack_unknown(self, c: ConsumerState, a: Ack) -> int:
        """Results for a batch god does not hold: done before (duplicates), or put to a god that
        restarted without a journal (kept: nobody else will run them; ``leased_only``: dropped,
        god leased them to nobody)."""
        st = self.state
        producer, n = a[A_PRODUCER], a[A_HI] - a[A_LO]
        if a[A_HI] - 1 <= st.upto.get(producer, 0) or producer.startswith(TUTORIAL):
            st.counts["duplicates"] += n
            return 0
        if self.leased_only:
            self._unleased(c, a, n)
            return 0
        st.outbox.append((a[A_LINES], [(producer, a[A_FIRST], a[A_LO], a[A_HI])]))
        st.upto[producer] = max(st.upto.get(producer, 0), a[A_HI] - 1)
        st.heard.setdefault(producer, st.now())
        st.count_results(c, st.queue(DEFAULT_QUEUE), n, len(a[A_FAILED]))
        return n

    def _unleased(self, c: ConsumerState, a: Ack, n: int) -> None:
        """Results of tasks not leased to c, dropped: counted, and said now and then."""
        self.state.counts["unleased"] += n
        self.log.warning("unleased", "{} sent results for {} of {}/{}..{} that are not leased to it (late, or "
                         "not its own): dropped", c.name, n, a[A_PRODUCER], a[A_LO], a[A_HI] - 1)

    def _own_lines(self, c: ConsumerState, a: Ack) -> Ack:
        """The ack, if its failures and lines are its own tasks' (god/rules/own_lines.py; lock
        held), as god keeps it.

        Raises:
            PermissionError: naming the consumer, the tasks and what is wrong.
        """
        producer, first, lo, hi = a[A_PRODUCER], a[A_FIRST], a[A_LO], a[A_HI]
        who = f"consumer {c.top.name}"
        for f in a[A_FAILED]:
            if not (isinstance(f[F_SEQ], int) and lo <= f[F_SEQ] < hi):
                raise PermissionError(f"{who} may not report a failure of {producer}/{f[F_SEQ]} in an ack of "
                                      f"{producer}/{lo}..{hi - 1}")
        b = self.state.batches.get((producer, first))
        if b is None:
            return a  # its tasks are done or unknown: nothing of it is recorded (_ack_unknown)
        text, why = checked(a[A_LINES], producer, lo, hi, consumer=c.top.name, queue=b.queue, task=b.task,
                            origin=b.origin, first=first)
        if why is not None:
            raise PermissionError(f"{who} may not write those results lines for {producer}/{lo}..{hi - 1}: {why}")
        return a if text is a[A_LINES] else (producer, first, lo, hi, text, a[A_FAILED], a[A_VALUES])

    def failures(self, queue: str | None = None) -> list[dict[str, Any]]:
        """The last failed results (not dead letters), oldest first, of one queue or all."""
        st = self.state
        with st.lock:
            return [f for f in st.failed if queue is None or f["queue"] == queue]
