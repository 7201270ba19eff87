"""God's stored tasks: batches, the slices of them that wait or are leased, and queues.

Data and its small questions only (which tasks of a run are done, which payloads to send);
the rules that move slices between queues and consumers are in the rule sets god/rules/broker.py
puts together (god/rules/leases.py, god/rules/acks.py, god/rules/redelivery.py and the rest).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Any, Protocol

from shared import items
from shared.calls import call_view, is_call, needs_python, shown_json, with_values
from shared.records import PRIORITIES, RetryPolicy
from shared.resources import Res

#: Tries of a run of a batch's offsets, as recovered: (lo, hi, tries, retries, due or None).
Tries = tuple[int, int, int, int, "float | None"]
#: Tries of a run, as the journal keeps them: (producer, first, lo, hi, tries, retries,
#: wall-clock time its retry is due or None).
Attempts = tuple[str, int, int, int, int, int, "float | None"]


class Holder(Protocol):
    """Who holds a leased slice: a consumer or one of its workers (god/store/peers.py's
    ``ConsumerState``, which knows the slices it holds; this module knows none of it)."""

    name: str
    leased: dict[Slice, None]  # an ordered set
    stop: dict[tuple[str, int], float]  # cancelled tasks it runs: until when to say so
    concurrency: int  # tasks each of its processes runs at once

    @property
    def top(self) -> Holder: ...


@dataclass(eq=False, slots=True)
class Batch:
    """A producer's put: n tasks numbered first..first+n-1, on one queue, at one priority."""

    producer: str
    first: int
    n: int
    queue: str
    task: str | None
    priority: int
    blob: bytes  # the payloads as the producer packed them (shared/items.py)
    keep: bool  # someone waits for the values: the ack carries them
    at: float  # when god took it (its clock)
    retry: RetryPolicy | None = None  # how its failed tasks are tried again
    loaded: Any = None  # the blob loaded as data (shared.items.load), once it is cut or shown
    origin: list[str] | None = None  # the dead letters its tasks were, when it serves them again
    after: tuple[str, ...] | None = None  # ids of the tasks whose results its tasks wait for (god/rules/graph.py)
    due: float | None = None  # the Unix time before which it is not served (placed when it stops waiting)
    missing: int = 0  # of those, how many have no result yet: it is blocked while some have none
    values: tuple[Any, ...] | None = None  # their values, in after's order, sent with a call's payloads
    uses: list[tuple[str, int]] | None = None  # the outcomes god keeps for it, (producer, seq) each
    resources: Res | None = None  # what each of its tasks needs of a consumer (shared/resources.py)
    unfit_since: float | None = None  # since when it fits no consumer serving its queue (god --fit-timeout)
    done: bytearray = field(init=False)  # one byte per task: 1 once it has a result
    left: int = field(init=False)  # tasks without a result
    out: list[Slice] = field(default_factory=list)  # its leased slices
    later: list[Slice] = field(default_factory=list)  # its slices waiting for a retry's time
    _python: str | None | bool = False  # needs_python of its calls, once asked (False: not yet)

    def __post_init__(self) -> None:
        self.done = bytearray(self.n)
        self.left = self.n

    @property
    def key(self) -> tuple[str, int]:
        return self.producer, self.first

    def items(self) -> Any:
        """Its payloads loaded as data: a list of them, or each one's pickle (shared/items.py)."""
        if self.loaded is None:
            self.loaded = items.load(self.blob)
        return self.loaded

    def shown(self, i: int) -> Any:
        """What listings show of the payload at offset i: a call's as ``{"fn", "args", "kwargs"}``
        (shared/calls.py), one god does not load as its pickle's size and digest, any other as
        it is."""
        data, payload = items.item(self.items(), i)
        if not data:
            return items.opaque_view(payload)
        return call_view(self.task, payload) if self.task is not None and is_call(self.task) else payload

    def python(self) -> str | None:
        """The Python its calls need (``shared.calls.needs_python``; None: any), read once from
        its first payload: a program's calls are all pickled on its one Python."""
        if self._python is False:
            first = None
            if self.task is not None and is_call(self.task) and self.n:
                data, payload = items.item(self.items(), 0)
                first = payload if data else None
            self._python = needs_python(first)
        return self._python if isinstance(self._python, str) else None

    def shown_json(self, i: int, payload_max: int | None) -> str:
        """The same as a results line has it, a payload over payload_max in brief (shared/calls.py)."""
        data, payload = items.item(self.items(), i)
        return shown_json(self.task, payload, payload_max) if data else items.opaque_json(payload)

    def payloads_of(self, lo: int, hi: int) -> bytes | Any:
        """Payloads of offsets [lo, hi) as consumers get them: the producer's blob as it came when
        that is all of them, else a part of it loaded (shared.items.cut); a call's with the
        values it waited for (shared.calls.with_values)."""
        if self.values is not None:
            return self._with_values(items.cut(self.items(), lo, hi))
        if lo == 0 and hi == self.n:
            return self.blob
        return items.cut(self.items(), lo, hi)

    def payload(self, i: int) -> bytes:
        """The payload at offset i as consumers get it, as a blob of one (a dead letter keeps it so)."""
        one = items.cut(self.items(), i, i + 1)
        return items.dump(self._with_values(one) if self.values is not None else one)

    def _with_values(self, part: Any) -> Any:
        values = self.values
        if values is None or type(part) is not list:
            return part
        return [with_values(p, values) for p in part]

    def undone(self, lo: int, hi: int) -> list[tuple[int, int]]:
        """The runs of offsets in [lo, hi) without a result."""
        done = self.done
        if done.find(1, lo, hi) == -1:
            return [(lo, hi)] if hi > lo else []
        runs = []
        i = lo
        while i < hi:
            start = done.find(0, i, hi)
            if start == -1:
                break
            end = done.find(1, start, hi)
            end = hi if end == -1 else end
            runs.append((start, end))
            i = end
        return runs


@dataclass(eq=False, slots=True)
class Slice:
    """A run [lo, hi) of a batch's offsets, waiting in its queue or leased to a consumer."""

    batch: Batch
    lo: int
    hi: int
    tries: int  # waiting: leases so far; leased: this lease's attempt
    owner: Holder | None = None  # leased: the consumer holding it
    retried: int = 0  # retries of its tasks so far (failures tried again, not deaths)
    avoid: Holder | None = None  # waiting: a consumer whose worker died running it...
    avoid_until: float = 0.0  # ...kept from it until then (the broker's clock), while another serves the queue
    alone: bool = False  # its tasks ran beside others in a worker that died: run each alone
    since: float = 0.0  # leased: when (the broker's clock)
    warned: bool = False  # leased: god warned that it is held for longer than --warn-after
    gpus: tuple[str, ...] = ()  # leased, a task that needs GPUs: the consumer's GPU ids it holds


@dataclass(slots=True)
class Bucket:
    """A queue's rate limit: tasks it may start a second, across all consumers (a token bucket
    that holds up to one second's worth, at least one task)."""

    rate: float  # tasks a second
    tokens: float
    at: float  # the clock when tokens was last brought up to date

    def refill(self, now: float) -> int:
        """Bring the tokens up to now; how many whole tasks may start."""
        self.tokens = min(max(1.0, self.rate), self.tokens + (now - self.at) * self.rate)
        self.at = now
        return int(self.tokens)


@dataclass(eq=False, slots=True)
class Queue:
    """One named queue: waiting slices by priority, and its counts."""

    name: str
    levels: list[deque[Slice]] = field(default_factory=lambda: [deque() for _ in PRIORITIES])
    waiting: int = 0  # on its levels, to be handed out
    running: int = 0  # leased to consumers
    scheduled: int = 0  # waiting for a retry's time
    blocked: int = 0  # waiting for other tasks' results (god/rules/graph.py)
    limit: Bucket | None = None  # its rate limit, if it has one
    paused: bool = False  # nothing starts from it (python -m god pause)
    done: int = 0
    failed: int = 0
    dead: int = 0
    task_s: float | None = None  # seconds a task takes, as its finished slices measured it (god/rules/wanted.py)

    def oldest(self) -> float | None:
        """When the oldest waiting batch came (its clock); None when nothing waits."""
        if self.waiting <= 0:
            return None
        return min((level[0].batch.at for level in self.levels if level), default=None)


def runs_of(offsets: list[int]) -> list[tuple[int, int]]:
    """Sorted offsets as runs [lo, hi) of consecutive ones."""
    runs: list[tuple[int, int]] = []
    for i in offsets:
        if runs and runs[-1][1] == i:
            runs[-1] = (runs[-1][0], i + 1)
        else:
            runs.append((i, i + 1))
    return runs
