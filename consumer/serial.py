"""Running a worker's tasks one at a time (``consumer --concurrency 1``, the default): the hot
path, a loop over the payloads of a grant with as little as possible between two calls.

An ``async def`` task runs to its end on an event loop of the worker's own, one at a time.
"""

from __future__ import annotations

import time
from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any

from consumer.acks import CANCELLED, PLAIN
from consumer.callers import Caller
from consumer.calls import is_async, run_coroutine
from consumer.loop import FLUSH_S, Worker
from consumer.places import KILL_GRACE_S
from consumer.tasks import TaskFunction
from shared.records import G_FIRST, G_HI, G_KEEP, G_LO, G_PAYLOADS, G_PRODUCER, G_TASK, Value, failure, grant_gpus
from shared.resources import see_gpus

if TYPE_CHECKING:
    import asyncio

POLL_EVERY = 64  # tasks run between looks at god's reply and the consumer's pipe while there is work in hand


class _Awaited:
    """Task functions as the loop calls them: an ``async def`` one runs its coroutine to its end
    on an event loop made on first need."""

    def __init__(self, timeout: float | None) -> None:
        self.timeout = timeout
        self._loop: asyncio.AbstractEventLoop | None = None

    def __call__(self, fn: TaskFunction) -> TaskFunction:
        if isinstance(fn, Caller):  # a call of an async def function returns its coroutine to run
            if fn.awaits is None:
                fn.awaits = self.run
            return fn
        if not is_async(fn):
            return fn
        run = self.run
        return lambda payload: run(fn(payload))

    def run(self, coroutine: Coroutine[Any, Any, Any]) -> Any:
        """Run a coroutine to its end, within the timeout."""
        if self._loop is None:
            import asyncio  # for a worker that runs coroutines only

            self._loop = asyncio.new_event_loop()
        return run_coroutine(coroutine, self.timeout, self._loop)


def run_one_at_a_time(w: Worker) -> None:
    """Lease, run and ack until drained, out of work with --burst, or orphaned."""
    shared, acks, todo, fns = w.shared, w.acks, w.todo, w.fns
    place = w.running[0]
    timed = w.spec.task_timeout is not None
    awaited = _Awaited(w.spec.task_timeout)
    monotonic = time.monotonic
    last_poll = now = monotonic()
    since_poll = 0
    while True:
        # Look at god's reply and the consumer's pipe when out of work, else every
        # POLL_EVERY tasks or FLUSH_S seconds: a poll is a system call, and at tiny tasks it
        # cost more than the task (3.4 us a task with a poll each, 0.9 without).
        if not w.held or since_poll >= POLL_EVERY or now - last_poll >= FLUSH_S:
            if not w.look():
                return
            since_poll, last_poll = 0, monotonic()
            now = last_poll
            continue
        # Run the tasks of the first grant, in one loop: up to the next look, or until
        # results have waited FLUSH_S.
        g = todo[0]
        fn = fns.get(g[G_TASK])
        payloads, lo, hi = g[G_PAYLOADS], g[G_LO], g[G_HI]
        seq, stop = w.at, min(hi, w.at + POLL_EVERY - since_poll)
        if not isinstance(fn, str):
            coroutines = fn.is_async(payloads[seq - lo]) if isinstance(fn, Caller) else is_async(fn)
            place.grace = KILL_GRACE_S if coroutines else 0.0  # a coroutine is cancelled here
            fn = awaited(fn)
        acks.begin(g, seq)
        acks.stamp = stamp = repr(time.time())  # a time per round of tasks: at most FLUSH_S off
        add, lines, ok_line, fast, check = acks.add, acks.lines, acks.ok_line, not g[G_KEEP], acks.check
        place.producer, place.first = g[G_PRODUCER].encode(), g[G_FIRST]
        see_gpus(grant_gpus(g))
        shared.tasks += stop - seq
        last_send = w.last_send
        t0 = begin = monotonic()
        skip, producer = w.skip, g[G_PRODUCER]
        while seq < stop:
            payload = payloads[seq - lo]
            if skip and (producer, seq) in skip:  # cancelled at god while held here
                add(g, seq, payload, CANCELLED)
                seq += 1
                continue
            place.seq = seq
            if timed:  # one clock for both: monotonic is system-wide, so the consumer can compare
                place.since = t0
            v: Value | None
            exc: BaseException | None = None
            if isinstance(fn, str):
                v = (False, None, fn, None)
            else:
                try:
                    value = fn(payload)
                except BaseException as e:  # a task that calls sys.exit() fails; the worker goes on
                    v, exc = failure(e), e
                else:  # a value must be able to reach whoever waits for it
                    why = None if type(value) in PLAIN else check(value)
                    if why is not None:
                        exc = TypeError(why)
                        v = failure(exc)
                    elif fast:  # the usual case: its line, without a tuple or a call
                        lines.append(ok_line(seq, payload, value, stamp))
                        v = None
                    else:
                        v = (True, value, None, None)
            if timed:
                place.since = 0.0
            if v is not None:
                add(g, seq, payload, v, exc)
            seq += 1
            t0 = monotonic()
            if t0 - last_send >= FLUSH_S:
                break
        place.seq = -1
        now = t0
        w.spent += now - begin
        w.ran += seq - w.at
        since_poll += seq - w.at
        w.advance(seq - w.at)
