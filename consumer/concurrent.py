"""Running up to --concurrency of a worker's tasks at once: plain functions on threads,
coroutines on an event loop (consumer/calls.py runs them).

A task that ran beside others in a worker that died runs alone, so that if it kills this one
too, god knows it was that task. One that runs over --task-timeout and cannot be stopped (a
thread, a coroutine that never awaits) fails here, and its worker is replaced.
"""

from __future__ import annotations

import time

from consumer.acks import CANCELLED, never, outcome, unpicklable
from consumer.callers import Caller, Target
from consumer.calls import Calls, is_async
from consumer.loop import FLUSH_S, Worker
from consumer.places import KILL_GRACE_S
from shared.calls import RemoteError, is_call
from shared.records import G_ALONE, G_FIRST, G_LO, G_PAYLOADS, G_PRODUCER, G_TASK, Value, failure, grant_gpus
from shared.resources import see_gpus

GRACE_S = 1.0  # seconds past --task-timeout before a coroutine that was not cancelled is given up


def run_concurrently(w: Worker) -> None:
    """Up to --concurrency tasks at once, until drained, out of work with --burst, or orphaned."""
    spec, shared, todo = w.spec, w.shared, w.todo
    calls = w.calls = Calls(spec.concurrency)
    free = list(range(spec.concurrency - 1, -1, -1))
    timeout = spec.task_timeout
    token = 0
    while True:
        if not w.look():
            return
        now = time.monotonic()
        # Start what there is room for; a task that ran beside others in a worker that died
        # runs alone, so that if it kills this one too, god knows it was that task.
        alone = any(started[0][G_ALONE] for started in w.busy.values())
        while free and w.held and not w.draining and not alone:
            g = todo[0]
            if g[G_ALONE] and w.busy:
                break
            alone = g[G_ALONE]
            seq = w.at
            payload = g[G_PAYLOADS][seq - g[G_LO]]
            w.advance(1)
            shared.tasks += 1
            fn = w.fns.get(g[G_TASK])
            if isinstance(fn, str) or (g[G_PRODUCER], seq) in w.skip:
                v: Value = (False, None, fn, None) if isinstance(fn, str) else CANCELLED
                w.finished.append((g, seq, payload, v, None))
                continue
            call: Target = (fn, (payload,), {})
            if isinstance(fn, Caller):
                try:
                    call = fn.target(payload)
                except RemoteError as e:  # its function or arguments cannot be loaded here
                    w.finished.append((g, seq, payload, failure(e), e))
                    continue
            i = free.pop()
            place = w.running[i]
            place.producer, place.first, place.seq, place.since = g[G_PRODUCER].encode(), g[G_FIRST], seq, now
            place.grace = KILL_GRACE_S  # the worker gives up what runs over its time itself
            token += 1
            w.busy[i] = (g, seq, payload, now, token, is_async(call[0]))
            see_gpus(grant_gpus(g))  # (one environment for the worker's tasks side by side: the last one's)
            calls.submit((i, token), *call, timeout)
        # Wait for a task to end; for god's reply, a look now and then (often while it is due).
        # (a lease waiting at god for a free place: its reply wakes us; no poll every millisecond)
        parked = w.client.fileno() if w._parked() else None
        calls.wait(FLUSH_S / 2 if parked is not None or not w.client.sent else 0.001, parked)
        for (i, tok), value, exc, ended in calls.ended():
            started = w.busy.get(i)
            if started is None or started[4] != tok:
                continue  # given up for running over its time: its result was written then
            del w.busy[i]
            free.append(i)
            w.running[i].seq = -1
            g, seq, payload, t0 = started[:4]
            w.spent += ended - t0
            w.ran += 1
            w.finished.append((g, seq, payload, *outcome(value, exc, never if is_call(g[G_TASK]) else unpicklable)))
        if timeout is not None:
            _give_up_overdue(w, calls, timeout)

def _give_up_overdue(w: Worker, calls: Calls, timeout: float) -> None:
    """Fail the tasks running over --task-timeout that could not be stopped: a thread, or a
    coroutine that holds its event loop (it never awaits), so that none is cancelled. Their
    worker then drains and is replaced (what runs on in it holds a place for good)."""
    now = time.monotonic()
    for i, (g, seq, payload, t0, token, coroutine) in list(w.busy.items()):
        if i not in w.busy or now - t0 <= timeout + (GRACE_S if coroutine else 0.0):
            continue  # (handed back with a coroutine given up before it, or not overdue)
        if coroutine:  # the one that holds the loop is to blame; the others wait behind it
            key = calls.blocking()
            blocker = w.busy.get(key[0]) if key is not None else None
            if blocker is not None and blocker[4] == key[1]:  # (the same task, not a later one in its place)
                i = key[0]
                g, seq, payload = w.busy[i][:3]
        del w.busy[i]
        w.running[i].seq = -1
        what = "coroutine was not cancelled in time (it blocks its event loop)" if coroutine else \
            "thread cannot be stopped"
        exc = TimeoutError(f"timed out after {timeout:g}s (--task-timeout); its {what}, "
                           "so its worker is replaced once the others are done")
        w.finished.append((g, seq, payload, failure(exc), exc))
        if coroutine:  # the coroutines beside it cannot go on while it holds the loop: they go back
            for j in [j for j, started in w.busy.items() if started[5]]:
                del w.busy[j]  # the bye at the end hands them back, unfinished
                w.running[j].seq = -1
        if not w.draining:
            w.draining, w.why = True, "replace"
