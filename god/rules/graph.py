"""Tasks that wait for other tasks: a batch put with ``after`` (the executor's futures among a
call's arguments, ``producer --after``) stays off its queue, blocked, until every task it
names has a result; then it is served, a call with their values in its payloads.

What a task gave is kept here (an ``Outcome``, journaled) from its result until the last
batch that waits for it, or uses its value, is done: memory follows the graph in flight, not
its history. A batch can be put after what it waits for is done: its outcome is then taken
from here, from its producer's mailbox (an executor's results not yet confirmed), or from
the failures god keeps; a task that failed, or that god never had, fails the batch at once.
A failure, a dead letter or a cancel fails each batch that waits for it with a result that
names it, and so on down the graph (a loop of events, not recursion: a chain of any length).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Any, Protocol

from god.store.batches import Batch, Queue, Slice
from god.store.mailboxes import Mailboxes
from god.store.values import ValueStore, names_in
from shared import items
from shared.calls import is_call
from shared.records import (
    F_SEQ, V_ERROR, V_NAMES, V_OK, V_TRACEBACK, V_VALUE, Failed, Value, failure_fields, is_packed, split_id, task_id,
)

DEPENDENCY = "dependency "  # how the error of a task failed by what it waited for begins
_OK: Value = (True, None, None, None)  # what a task gave when no one uses its value

#: (producer, seq) of a task.
Key = tuple[str, int]


class GraphState(Protocol):
    """What the graph needs of the broker's state (god/rules/state.py), which holds it."""

    queues: dict[str, Queue]
    counts: dict[str, int]
    mailboxes: Mailboxes
    blocked: int  # tasks waiting for other tasks' results, all queues

    def queue(self, name: str) -> Queue: ...

    def place(self, s: Slice, due: float | None, *, first: bool) -> None: ...

    def conclude(self, b: Batch, lo: int, hi: int, v: Value, attempts: int) -> None: ...

    def batch_of(self, producer: str, seq: int) -> Batch | None: ...

    def done_before(self, producer: str, seq: int) -> bool: ...

    def failure_of(self, tid: str) -> str | None: ...


class GraphJournal(Protocol):
    """What the graph tells the journal (god/journal/journal.py)."""

    def keep_outcome(self, tid: str, value: bytes) -> int: ...

    def drop_outcomes(self, tids: list[str]) -> int: ...


@dataclass(slots=True)
class Outcome:
    """What a task others wait for gave, and how many batches not done yet use it."""

    value: Value  # its value when it is a call's (others' values stay unread at god: None)
    users: int = 0


def _value(data: bool, v: Any) -> Value:
    """What a call gave, as an ack's values hold it (shared/items.py): a Value is data; anything
    else came from a consumer that does not follow the protocol, and fails what waits for it."""
    if data and type(v) is tuple and len(v) >= 4 and type(v[V_OK]) is bool:
        return v
    return False, None, "its value did not come as a call's value (a tuple of builtin data)", None


def because(tid: str, error: str | None) -> str:
    """The error of a task that waited for tid, which failed with ``error``: it names tid, and
    the task where the failure began when that is another (two levels at most, however deep)."""
    error = error or "failed"
    if error.startswith(DEPENDENCY):
        _, _, rest = error.partition(" failed: ")
        if rest.startswith(DEPENDENCY):
            error = rest
    return f"{DEPENDENCY}{tid} failed: {error}"


def root_error(error: str) -> str:
    """The error where a failure down a graph began (``because``'s innermost)."""
    while error.startswith(DEPENDENCY) and " failed: " in error:
        error = error.partition(" failed: ")[2]
    return error


class Graph:
    """Batches that wait for other tasks' results (lock held in every method)."""

    def __init__(self, state: GraphState, journal: GraphJournal | None = None,
                 values: ValueStore | None = None) -> None:
        """``values``: god's large values, kept while an outcome kept here names them."""
        self.state = state
        self.journal = journal
        self.values = values
        #: Per producer, per seq: the batches blocked until that task has its result.
        self.waiters: dict[str, dict[int, list[Batch]]] = {}
        self.outcomes: dict[Key, Outcome] = {}
        #: The journal ticket of the last outcome kept: a results line must not come before it
        #: (a restarted god takes a task whose line it finds as done, and then its outcome must
        #: be in the journal for what waits for it).
        self.ticket = 0
        self._events: deque[tuple[Key, Value, list[Batch]]] = deque()
        self._busy = False

    # -- a batch that waits -----------------------------------------------------------------

    def link(self, b: Batch) -> bool:
        """b waits for the tasks in b.after: True if it may be served at once (all have results),
        False if it is blocked, or failed now (one failed, or cannot be had)."""
        st = self.state
        assert b.after is not None
        calls = is_call(b.task)
        waits: list[Key] = []
        uses: list[tuple[Key, Value]] = []
        for tid in dict.fromkeys(b.after):
            key = split_id(tid)
            o = self.outcomes.get(key)
            if o is not None:
                v: Value | None = o.value
            else:
                d = st.batch_of(*key)
                if d is not None and not d.done[key[1] - d.first]:
                    if calls and is_call(d.task):
                        d.keep = True  # its consumer sends the value back
                    waits.append(key)
                    continue
                v, why = self._looked_up(tid, key, calls)
                if why is not None:
                    self._fail_now(b, why, None)
                    return False
            assert v is not None
            if not v[V_OK]:
                self._fail_now(b, because(tid, v[V_ERROR]), v)
                return False
            uses.append((key, v))
        for key, v in uses:
            self._use(b, key, v)
        for producer, seq in waits:
            self.waiters.setdefault(producer, {}).setdefault(seq, []).append(b)
        if waits:
            self._block(b, len(waits))
            return False
        self._values(b)
        return True

    def _fail_now(self, b: Batch, error: str, root: Value | None) -> None:
        """b, on no queue yet, fails as it is put: counted as blocked first, where its results
        then count it off (State.settle)."""
        self._block(b, 1)
        self._fail(b, error, root)

    def _block(self, b: Batch, missing: int) -> None:
        """b waits for that many tasks: off its queue, counted as blocked."""
        st = self.state
        b.missing = missing
        st.queue(b.queue).blocked += b.left
        st.blocked += b.left

    def _looked_up(self, tid: str, key: Key, calls: bool) -> tuple[Value | None, str | None]:
        """What a task done before gave (a batch put after it was done waits for it), or why it
        cannot be had."""
        st = self.state
        producer, seq = key
        if not st.done_before(producer, seq):
            return None, (f"{DEPENDENCY}{tid}: god never had this task (none of {producer}'s tasks up to {seq} "
                          "came here, or they finished more than --dedupe-window ago)")
        v = st.mailboxes.value_of(producer, seq) if calls else None
        if v is not None:
            return v, None
        error = st.failure_of(tid)
        if error is not None:
            return (False, None, error, None), None
        if calls:
            return None, (f"{DEPENDENCY}{tid} finished before this task came, and god no longer has its value "
                          "(pass the value itself)")
        return _OK, None

    def blocked_on(self, b: Batch) -> list[str]:
        """The ids b still waits for."""
        waiters = self.waiters
        on = []
        for tid in dict.fromkeys(b.after or ()):
            producer, seq = split_id(tid)
            if b in waiters.get(producer, {}).get(seq, ()):
                on.append(tid)
        return on

    # -- results ----------------------------------------------------------------------------

    def waits_for(self, producer: str) -> bool:
        """Whether a batch waits for a task of that producer's."""
        return producer in self.waiters

    def resolved(self, b: Batch, lo: int, hi: int, values: list[Value] | bytes | None,
                 outcome: Value | None, failed: tuple[Failed, ...]) -> None:
        """Offsets [lo, hi) of b have their results (State.record): what waits for them goes on.

        ``outcome``: what all of them gave (a result god gave them itself), else ``values`` (a
        call's, sent back because someone waits) or the ``failed`` among them, as fields.
        """
        waiters = self.waiters
        w = waiters.get(b.producer)
        if not w:
            return
        start, end = b.first + lo, b.first + hi
        seqs = [s for s in range(start, end) if s in w] if end - start <= len(w) else [s for s in w if start <= s < end]
        if not seqs:
            return
        loaded: Any = None
        failures = {f[F_SEQ]: f for f in failed}
        for seq in seqs:
            v = outcome
            if v is None and values is not None and is_call(b.task):
                if loaded is None:
                    loaded = items.load(values) if isinstance(values, bytes) else values
                v = _value(*items.item(loaded, seq - start))
            if v is None:
                f = failures.get(seq)
                if f is not None:
                    error, tb, _ = failure_fields(f)
                    v = (False, None, error, tb)
                else:
                    v = _OK
            self._events.append(((b.producer, seq), v, w.pop(seq)))
        if not w:
            del waiters[b.producer]
        self._go_on()

    def _go_on(self) -> None:
        """Let what waited for results go on, or fail (the results of those fail what waits for
        them in turn, through ``resolved``: events, handled here in order)."""
        if self._busy:
            return
        self._busy = True
        try:
            while self._events:
                key, v, batches = self._events.popleft()
                live = [x for x in batches if x.left and x.missing]  # not failed or cancelled meanwhile
                if not live:
                    continue
                tid = task_id(*key)
                if not v[V_OK]:
                    for x in live:
                        self._fail(x, because(tid, v[V_ERROR]), v)
                    continue
                for x in live:
                    self._use(x, key, v)
                    x.missing -= 1
                    if not x.missing:
                        self._serve(x)
        finally:
            self._busy = False

    def _serve(self, b: Batch) -> None:
        """b waits for nothing more: on its queue (or its time) with the values it waited for."""
        st = self.state
        self._values(b)
        st.queues[b.queue].blocked -= b.left
        st.blocked -= b.left
        for lo, hi in b.undone(0, b.n):
            st.place(Slice(b, lo, hi, 0), b.due, first=False)

    def _values(self, b: Batch) -> None:
        if is_call(b.task):
            b.values = tuple(self.outcomes[split_id(tid)].value for tid in b.after or ())

    def _fail(self, b: Batch, error: str, root: Value | None) -> None:
        """Every task of b not done fails with error (what failed gave: root, if known)."""
        st = self.state
        tb = root[V_TRACEBACK] if root is not None else None
        v: Value = (False, None, error, tb)
        if root is not None and is_call(b.task) and is_packed(root):  # the exception, for the program
            v = (False, root[V_VALUE], error, tb, True)
        q = st.queue(b.queue)
        cancel = root_error(error).startswith("cancelled")
        for lo, hi in b.undone(0, b.n):
            st.conclude(b, lo, hi, v, 0)
            n = hi - lo
            q.failed += n
            st.counts["failed"] += n
            if cancel:
                st.counts["cancelled"] += n

    def finished(self, b: Batch) -> None:
        """b is done (State.settle): the outcomes it used are let go by it (dropped with the last)."""
        gone = []
        for key in b.uses or ():
            o = self.outcomes[key]
            o.users -= 1
            if o.users <= 0:
                gone.append(key)
        b.values = b.uses = None
        self._drop(gone)

    def _use(self, b: Batch, key: Key, v: Value) -> None:
        """b uses what the task of key gave (v, kept from now if it was not)."""
        self._keep(key, v).users += 1
        if b.uses is None:
            b.uses = []
        b.uses.append(key)

    def _keep(self, key: Key, v: Value) -> Outcome:
        o = self.outcomes.get(key)
        if o is None:
            o = self.outcomes[key] = Outcome(v)
            self._pin(key, v)
            if self.journal is not None:
                self.ticket = self.journal.keep_outcome(task_id(*key), items.dump([v]))  # (a Value: data)
        return o

    # -- a restart ----------------------------------------------------------------------------

    def restore(self, outcomes: dict[str, bytes]) -> None:
        """Outcomes a journal kept (before the batches that use them are linked again)."""
        for tid, blob in outcomes.items():
            key = split_id(tid)
            o = self.outcomes[key] = Outcome(_value(*items.item(items.load(blob), 0)))
            self._pin(key, o.value)

    def forget_unused(self) -> None:
        """Drop the outcomes restored that no batch uses (after linking the batches again)."""
        self._drop([key for key, o in self.outcomes.items() if o.users <= 0])

    def _drop(self, keys: list[Key]) -> None:
        """No batch uses these outcomes any more: here, and in the journal."""
        for key in keys:
            self._pin(key, self.outcomes.pop(key).value, False)
        if keys and self.journal is not None:
            self.journal.drop_outcomes([task_id(*key) for key in keys])

    def _pin(self, key: Key, v: Value, keep: bool = True) -> None:
        """Keep (or let go of) the large values an outcome names (god/store/values.py)."""
        if self.values is not None and len(v) > V_NAMES:
            names = names_in([v])
            if names:
                (self.values.pin if keep else self.values.unpin)(("outcome", task_id(*key)), names)
