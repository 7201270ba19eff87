"""God's core in one process, on the path production uses: the API our clients call, its
waits, the broker, and a fake clock. What the hub does with a call (answer it, or park it
and answer it on a later round) is what ``Core.call`` and ``Core.step`` do here."""

from __future__ import annotations

import json
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

from consumer.acks import Acks
from consumer.functions import Functions
from consumer.policy import Policy
from consumer.tasks import DEFAULT_TASK
from god.journal.recovery import Recovered
from god.journal.results_file import ResultsFile
from god.journal.journal import Journal
from god.rules.broker import Broker
from god.rules.state import JournalLike
from god.store.values import ValueStore
from god.transport.api import Api
from god.transport.waits import Wait, Waits
from shared import items
from shared.records import DEFAULT_QUEUE, G_HI, G_LO, G_PAYLOADS, Ack, Grant, RetryPolicy, Run, failure, task_id


class Clock:
    """A clock that moves only when told."""

    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


class Call:
    """A call made to god: answered at once, or parked until a later step answers it."""

    def __init__(self) -> None:
        self.done = False
        self.value: Any = None
        self.error: BaseException | None = None

    def answer(self, value: Any, error: BaseException | None) -> None:
        self.done, self.value, self.error = True, value, error

    def result(self) -> Any:
        assert self.done, "the call is still waiting"
        if self.error is not None:
            raise self.error
        return self.value


def payloads_of(g: Grant) -> list[Any]:
    return items.unpack(g[G_PAYLOADS])


class Core:
    """Broker, waits and API with a fake clock; calls as the hub makes them."""

    def __init__(self, *, journal: JournalLike | None = None, **broker_args: Any) -> None:
        self.clock = Clock()
        self.waits = Waits(now=self.clock)
        self.broker = Broker(now=self.clock, wall=self.clock, journal=journal, on_change=self.waits.changed, **broker_args)
        self.api = Api(self.broker, self.waits, journal=journal)
        self.next_seq: defaultdict[str, int] = defaultdict(lambda: 1)

    def close(self) -> None:
        self.waits.close()

    def call(self, method: str, *args: Any) -> Call:
        """Call an API method; a call that waits is parked, as the hub parks it."""
        c = Call()
        try:
            reply = getattr(self.api, method)(*args)
        except Exception as e:
            c.answer(None, e)
            return c
        if isinstance(reply, Wait):
            self.waits.park(reply, c.answer)
        else:
            c.answer(reply, None)
        return c

    def step(self) -> int:
        """One round of the hub's: retry what waits; returns how many calls were answered."""
        return self.waits.retry()

    def settle(self, call: Call, timeout: float = 10.0) -> Any:
        """Step until the call is answered (a journal commit takes real time); its result."""
        deadline = time.monotonic() + timeout
        while not call.done:
            self.waits.changed()
            self.step()
            assert time.monotonic() < deadline, "the call was never answered"
            if not call.done:
                time.sleep(0.001)
        return call.result()

    # -- what producers and consumers do ----------------------------------------------------

    def put(self, producer: str, payloads: list[Any], *, queue: str = DEFAULT_QUEUE, task: str | None = None,
            priority: int = 0, first: int | None = None, timeout: float = 0.0,
            retry: RetryPolicy | None = None, due: float | None = None, after: tuple[str, ...] | None = None) -> Call:
        """A producer's put_many of one batch (numbered on from its last unless first is given);
        ``after``: the ids of the tasks it waits for."""
        if first is None:
            first = self.next_seq[producer]
        self.next_seq[producer] = max(self.next_seq[producer], first + len(payloads))
        put = (first, len(payloads), items.pack(payloads), queue, task, priority, retry, due, after)
        return self.call("put_many", producer, put, timeout)

    def lease(self, consumer: str, n: int, *, queues: tuple[str, ...] = (DEFAULT_QUEUE,), timeout: float = 0.0,
              seq: int | None = None) -> list[Grant]:
        """A lease that answers at once."""
        c = self.call("lease", consumer, queues, n, timeout, seq)
        grants: list[Grant] = c.result()
        return grants

    def ack(self, consumer: str, grants: list[Grant], value: Any = None, *,
            fail: frozenset[int] | set[int] = frozenset(), only: tuple[int, int] | None = None,
            raised: BaseException | None = None) -> int:
        """Ack the tasks of grants as a worker does (each one's value is its payload, or value);
        fail: seqs that raised (raised, else a ValueError); only: ack just the seqs in [lo, hi)."""
        acks = Acks(consumer, Functions(Policy(DEFAULT_TASK), consumer))
        for g in grants:
            for seq, payload in zip(range(g[G_LO], g[G_HI]), payloads_of(g)):
                if only is not None and not only[0] <= seq < only[1]:
                    continue
                if seq in fail:
                    exc = raised if raised is not None else ValueError("no")
                    acks.add(g, seq, payload, failure(exc), exc)
                else:
                    acks.add(g, seq, payload, (True, payload if value is None else value, None, None))
        out: list[Ack] = acks.take()[0]
        return int(self.call("ack_many", consumer, out).result())

    def hello(self, consumer: str, parent: str | None = None, queues: tuple[str, ...] = (DEFAULT_QUEUE,)) -> None:
        """A consumer says hello (with the queues it serves), or a worker process of consumer parent."""
        info: dict[str, Any] = {"host": "h", "queues": queues} if parent is None else {"parent": parent}
        self.call("hello", consumer, "consumer", info).result()

    def lost(self, worker: str, running: Run | None, timed_out: str | None = None) -> None:
        """The consumer of worker says it died (or was stopped) while running that task."""
        self.call("worker_lost", worker, [running] if running is not None else [], timed_out).result()


def kill_three_times(core: Core, n: int = 1, queue: str = "default") -> None:
    """Lease the first n waiting tasks of a queue to consumers that are lost (the clock past
    their lease each time), until they are dead letters (god's default of 3 attempts)."""
    for attempt in range(3):
        core.lease(f"doomed{attempt}", n, queues=(queue,))
        core.clock.t += 6
        core.broker.reap()


def seqs(grants: list[Grant]) -> list[int]:
    """The seqs the grants hold, in order."""
    return [s for g in grants for s in range(g[G_LO], g[G_HI])]


def ids(producer: str, numbers: list[int]) -> list[str]:
    return [task_id(producer, n) for n in numbers]


def lines(core: Core) -> list[dict[str, object]]:
    """The result lines the monitor would write now, read back."""
    out, _ = core.broker.take_results()
    return [json.loads(line) for text, _ in out for line in text.splitlines()]


def opened(path: Path, results: ResultsFile | None = None, values: Path | None = None
           ) -> tuple[Journal, Recovered, Core]:
    """Open a journal the way god starts on it: recover, a new core that takes it over, start
    (``values``: the folder of its large values)."""
    j = Journal(path)
    r = j.recover(results)
    core = Core(journal=j, values=ValueStore(values) if values is not None else None)
    core.broker.restore(r.batches, r.upto, r.dead, r.schedules, r.mailboxes, r.outcomes)
    j.start()
    return j, r, core


def restarted(j: Journal, results: ResultsFile | None = None, values: Path | None = None
              ) -> tuple[Journal, Recovered, Core]:
    """Close a journal and open it again, the way a restarted god does: a new core on it."""
    j.close()
    return opened(j.path, results, values)
