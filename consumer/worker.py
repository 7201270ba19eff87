"""A worker process: leases tasks from god over its own connection, runs them, acks them.

A task crosses god, worker, god and nothing else. Each ack carries the next lease in the
same round trip (``ack_lease``), sent while the tasks in hand still run, so the worker
rarely waits for god. The worker formats each result's JSON line itself (it has the id,
payload, attempt and time), so god only appends lines.

What the worker cannot do for itself its consumer (the parent process) does: heartbeats
that go on while a task holds every thread of the worker (god counts a worker alive while
its consumer beats), and, when a worker dies, telling god which task it was running. For
that the worker keeps the task it runs in shared memory (``Shared``); the parent reads it.
"""

from __future__ import annotations

import asyncio
import ctypes
import os
import pickle
import resource
import signal
import sys
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any

from loguru import logger

from consumer.concurrent import Calls, is_async, run_coroutine
from consumer.tasks import Retry, TaskFunction, resolve_task
from shared.client import GodClient
from shared.config import Settings, hostname
from shared.errors import ConfigError, GodError, Interrupted
from shared.log import count, setup_logging
from shared.records import (
    A_FAILED, A_HI, A_LO, G_ALONE, G_ATTEMPT, G_FIRST, G_HI, G_KEEP, G_LO, G_PAYLOADS, G_PRODUCER, G_QUEUE, G_TASK,
    V_ERROR, V_OK, V_TRACEBACK, V_VALUE, Ack, Failed, Grant, Run, Value, failure, json_line, ok_lines, task_id,
)

_PLAIN = (str, int, float, bool, type(None))  # values that always pickle
_CANCELLED: Value = (False, None, "cancelled by an operator (python -m god cancel)", None)
FLUSH_S = 0.02  # seconds a finished result may wait to be sent with the next ones
POLL_EVERY = 64  # tasks run between looks at god's reply and the consumer's pipe while there is work in hand
LEASE_WAIT_S = 1.0  # seconds a lease waits at god for the first task when the worker has none
BURST_WAIT_S = 0.3  # the same with --burst: an empty queue ends the run sooner
IDLE_LOOK_S = 0.05  # how often a worker waiting for god's reply looks at its consumer's pipe
TARGET_QUEUED_S = 0.05  # seconds of work kept in hand (sizes each lease) ...
GRACE_S = 1.0  # seconds past --task-timeout before a coroutine that was not cancelled is given up
KILL_GRACE_S = 3.0  # seconds past --task-timeout before the consumer kills a worker that could stop the task itself
RTT_QUEUED = 5.0  # ... or this many round trips to god, if longer: work in hand while results, acks and
# the next lease travel (a result waits up to a flush and the ack's round trip)

# The consumer sends ("drain",): finish the running task, ack, hand back the rest, and end;
# ("stop", producer, seq): a task cancelled at god: skip it if held, cancel it if a coroutine
# runs it, give up its thread (and be replaced) if a thread does; one worker running it alone
# is killed by its consumer.
# Its pipe closing means it is gone: end at once (god serves our tasks again).
# The worker sends, last, ("ended", why): "drained", "empty" (--burst), "replace" (a task thread
# ran over --task-timeout and runs on: start another worker), or ("error", message, exit code).


class Shared(ctypes.Structure):
    """What a worker and its consumer share: its counts, and the round trip to god."""

    _fields_ = [
        ("done", ctypes.c_int64),  # results acked, successes and failures
        ("failed", ctypes.c_int64),
        ("tasks", ctypes.c_int64),  # tasks started, ever: a death before the first is a broken worker
        ("rtt_s", ctypes.c_double),  # a round trip to god, as the consumer's heartbeats measure it
    ]


class Running(ctypes.Structure):
    """One of a worker's --concurrency places to run a task: which task runs there, since when."""

    _fields_ = [
        ("producer", ctypes.c_char * 1024),  # the task's grant (its producer, first seq) ...
        ("first", ctypes.c_int64),
        ("seq", ctypes.c_int64),  # ... and its seq; -1: none runs here
        ("since", ctypes.c_double),  # monotonic time it started (one worker: with --task-timeout only)
        ("grace", ctypes.c_double),  # seconds past --task-timeout the worker has to stop it itself
    ]


@dataclass(frozen=True)
class Recycle:
    """When a worker process is replaced by a fresh one, for task code that leaks."""

    tasks: int | None = None  # after this many tasks
    memory_mb: float | None = None  # once its RSS passed this many MB


NO_RECYCLE = Recycle()


def rss_mb() -> float:
    """This process's resident memory now, in MB (its peak where /proc is missing)."""
    try:
        with open("/proc/self/statm", "rb") as f:
            return int(f.read().split()[1]) * _PAGE / 2**20
    except (OSError, IndexError, ValueError):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kB on Linux


_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


@dataclass(frozen=True)
class WorkerSpec:
    """What a worker process is started with."""

    settings: Settings
    name: str  # its name at god: its consumer's, a slash, its index
    consumer: str
    task_spec: str
    queues: tuple[str, ...]
    prefetch: int
    burst: bool
    concurrency: int  # tasks run at once
    task_timeout: float | None
    recycle: Recycle
    log_level: str
    log_json: bool


def running_task(r: Running) -> Run | None:
    """The run of the task that runs in place r (or ran there when its worker died)."""
    seq = r.seq
    if seq < 0:
        return None
    return (r.producer.decode(), r.first, seq, seq + 1)


class Acks:
    """Results of the tasks of one grant after another, cut into acks of runs.

    The worker's loop appends the lines of successes to ``lines`` itself, with ``ok_line``
    and the time in ``stamp`` (the hot path); everything else goes through ``add``.
    """

    def __init__(self, consumer: str) -> None:
        self.consumer = consumer
        self.done: list[Ack] = []  # closed runs
        self.count = 0  # tasks in them
        self.grant: Grant | None = None  # the open run's grant
        self.ok_line: Callable[[int, Any, Any, str], str] = lambda seq, payload, v, at: ""
        self.stamp = repr(time.time())  # the time written in result lines
        self.lines: list[str] = []
        self._lo = 0
        self._failed: list[Failed] = []
        self._values: list[Value] = []

    def begin(self, g: Grant, seq: int) -> None:
        """Results of grant g follow, from seq on, in order (a gap starts a new run)."""
        if g is self.grant and seq == self._lo + len(self.lines):
            return
        self.close()
        self.grant, self._lo = g, seq
        self.ok_line = ok_lines(g[G_PRODUCER], self.consumer, g[G_ATTEMPT], g[G_QUEUE], g[G_TASK])

    def add(self, g: Grant, seq: int, payload: Any, v: Value, exc: BaseException | None = None) -> None:
        """The result of task seq of grant g; exc: the exception a failed task raised, if any."""
        self.begin(g, seq)
        if v[V_OK]:
            self.lines.append(self.ok_line(seq, payload, v[V_VALUE], self.stamp))
        else:
            self.lines.append(json_line(task_id(g[G_PRODUCER], seq), payload, False, v[V_VALUE], v[V_ERROR],
                                        v[V_TRACEBACK], self.consumer, g[G_ATTEMPT], float(self.stamp), g[G_QUEUE],
                                        g[G_TASK]))
            self._failed.append((seq, type(exc).__name__ if exc is not None else "Error",
                                 exc.after if isinstance(exc, Retry) else None))
        if g[G_KEEP]:
            self._values.append(v)

    def close(self) -> None:
        """End the open run: it becomes an ack."""
        g = self.grant
        if g is None or not self.lines:
            return
        n = len(self.lines)
        values = pickle.dumps(self._values, pickle.HIGHEST_PROTOCOL) if g[G_KEEP] else None
        self.done.append((g[G_PRODUCER], g[G_FIRST], self._lo, self._lo + n, "\n".join(self.lines) + "\n",
                          tuple(self._failed), values))
        self.count += n
        self._lo += n
        self.lines, self._failed, self._values = [], [], []

    def take(self) -> tuple[list[Ack], int]:
        """The acks so far, and how many tasks they hold."""
        self.close()
        out, n = self.done, self.count
        self.done, self.count = [], 0
        return out, n


def _unpicklable(value: Any) -> str | None:
    """Why the value cannot be pickled; None if it can."""
    try:
        pickle.dumps(value, pickle.HIGHEST_PROTOCOL)
        return None
    except Exception as e:
        return f"the task's return value cannot be pickled: {e}"


class Functions:
    """Task functions by name, imported on first use and kept; the consumer's own for None."""

    def __init__(self, default: str, consumer: str) -> None:
        self.consumer = consumer
        self._fns: dict[str | None, TaskFunction | str] = {None: resolve_task(default)}

    def get(self, name: str | None) -> TaskFunction | str:
        """The function, or why it cannot be had (a message naming it and this consumer)."""
        fn = self._fns.get(name)
        if fn is None:
            assert name is not None
            try:
                fn = resolve_task(name)
            except ConfigError as e:
                fn = f"task function {name!r} cannot be used on consumer {self.consumer}: " \
                     f"{str(e).removeprefix(f'--task {name!r}: ')}"
            self._fns[name] = fn
        return fn



def _listed(g: Grant) -> Grant:
    """The grant with its payloads as a list (god sends a whole batch as the producer's pickle)."""
    payloads = g[G_PAYLOADS]
    if isinstance(payloads, bytes):
        return (*g[:G_PAYLOADS], pickle.loads(payloads), *g[G_PAYLOADS + 1 :])
    return g


class Worker:
    """The loop of one worker process: lease, run, ack; see the module's docstring."""

    def __init__(self, spec: WorkerSpec, control: Connection, shared: Shared, running: Any) -> None:
        self.spec = spec
        self.control = control
        self.shared = shared
        self.running = running  # Running[concurrency], in memory the consumer reads
        self.fns = Functions(spec.task_spec, spec.consumer)
        self.client = GodClient(spec.settings, name=spec.name, role="consumer",
                                info={"host": hostname(), "pid": os.getpid(), "parent": spec.consumer},
                                should_stop=self._told)
        self.todo: deque[Grant] = deque()  # leased runs, payloads as lists; todo[0] from seq at
        self.at = 0
        self.held = 0  # tasks in todo not started yet
        self.busy: dict[int, Started] = {}  # place -> the task running there (--concurrency over 1)
        self.finished: list[Finished] = []  # results of those, not in acks yet
        self.acks = Acks(spec.consumer)
        self.draining = False
        self.gone = False  # the consumer's pipe closed
        self.avg_task_s: float | None = None
        self.spent = 0.0  # seconds of task time since the last lease was sized
        self.ran = 0  # tasks in that time
        self.lease_seq = 0
        self.last_send = self.told_at = time.monotonic()
        self.asked = 0  # tasks the call in flight asks for
        self.more = True  # the last lease got all it asked for: more may wait at god
        self.why = "drained"  # why the loop ended, for the consumer
        self._loop: asyncio.AbstractEventLoop | None = None  # for async def tasks, one at a time
        self.skip: set[tuple[str, int]] = set()  # (producer, seq) of tasks cancelled at god: not to run
        self._calls: Calls | None = None  # with --concurrency over 1: what runs the tasks

    def _told(self) -> bool:
        """Whether the consumer said to drain or went away (reads its pipe)."""
        if not (self.draining or self.gone):
            try:
                while self.control.poll():
                    msg = self.control.recv()
                    if msg[0] == "stop":
                        self._stop_task(str(msg[1]), int(msg[2]))
                    else:
                        self.draining = True
            except (EOFError, OSError):
                self.gone = True
        return self.draining or self.gone

    def _stop_task(self, producer: str, seq: int) -> None:
        """A task cancelled at god: never start it; stop it if it runs here (side by side with others)."""
        self.skip.add((producer, seq))
        for i, (g, s, payload, _, token, coroutine) in list(self.busy.items()):
            if g[G_PRODUCER] != producer or s != seq:
                continue
            if coroutine and self._calls is not None:
                self._calls.cancel((i, token))  # it ends as a CancelledError, its result a duplicate at god
                continue
            del self.busy[i]  # a thread cannot be stopped: give it up, and be replaced
            self.running[i].seq = -1
            self.finished.append((g, s, payload, _CANCELLED, None))
            if not self.draining:
                self.draining, self.why = True, "replace"

    def _slots(self) -> int:
        """How many tasks to hold besides those running: about TARGET_QUEUED_S of work for each
        place to run one, or RTT_QUEUED round trips."""
        places = self.spec.concurrency
        if self.avg_task_s is None:
            return places
        per_task = max(self.avg_task_s, 1e-9)
        ahead = RTT_QUEUED * self.shared.rtt_s  # far from god, a worker needs this much work in hand
        cap = max(self.spec.prefetch, int(ahead / per_task))  # --prefetch, unless the round trip needs more
        return max(places, min(cap, int(max(TARGET_QUEUED_S, ahead) / per_task * places)))

    def _send(self) -> None:
        """Ack what is done and lease what there is room for, in one call whose reply comes later."""
        if self.ran:
            per_task = self.spent / self.ran
            self.avg_task_s = per_task if self.avg_task_s is None else 0.8 * self.avg_task_s + 0.2 * per_task
            self.spent, self.ran = 0.0, 0
        self._add_finished()
        out, _ = self.acks.take()
        for a in out:
            failed = len(a[A_FAILED])
            self.shared.done += a[A_HI] - a[A_LO]
            self.shared.failed += failed
        want = 0 if self.draining else max(0, self._slots() - self.held)
        if self.spec.recycle.tasks is not None:  # never hold more than it may still run
            want = min(want, max(0, self.spec.recycle.tasks - self.shared.tasks - self.held))
        wait = (BURST_WAIT_S if self.spec.burst else LEASE_WAIT_S) if not (self.held or self.busy) else 0.0
        self.lease_seq += 1
        self.asked = want
        self.client.send("ack_lease", self.spec.name, out, self.spec.queues, want, wait, self.lease_seq)
        self.last_send = time.monotonic()

    def _take(self, grants: list[Grant]) -> None:
        for g in grants:
            if not self.todo:
                self.at = g[G_LO]
            self.todo.append(_listed(g))
            self.held += g[G_HI] - g[G_LO]

    def _look(self) -> bool:
        """Between tasks: read god's reply if it came (wait for it when idle), start the next
        call when due. False: the worker is to end."""
        client = self.client
        now = time.monotonic()
        idle = not self.held and not self.busy
        if idle or now - self.told_at >= FLUSH_S:  # (a poll costs as much as a few tiny tasks)
            self.told_at = now
            if self._told() and self.gone:
                return False
        if client.sent:
            if not idle:
                if not client.ready():
                    return True
            else:
                while not client.ready(IDLE_LOOK_S):
                    if self._told() and self.gone:
                        return False
            grants = client.reply()
            self.more = sum(g[G_HI] - g[G_LO] for g in grants) >= self.asked > 0
            self._take(grants)
            if not grants and not self.held and not self.busy and self.spec.burst and not self.draining:
                self.draining = True  # the queue is empty: end as a drain does
                self.why = "empty"
        if not self.draining and self._recycle_due():
            self.draining, self.why = True, "replace"
        if self.draining:
            if self.busy:
                return True  # running tasks finish first
            self._send()  # the last results; no lease
            client.reply()
            client.bye()  # what we still hold goes back, unstarted
            return False
        # Lease ahead while tasks run, but only while god has more: asked again at once, a
        # queue god just emptied answers "nothing", and the results wait for that answer
        # (a round trip more for each lone task).
        slots = self._slots()
        pending = bool(self.acks.lines or self.acks.done or self.finished)
        if (not self.held and not self.busy) or (self.more and slots - self.held >= max(1, slots // 2)) or (
                pending and time.monotonic() - self.last_send >= FLUSH_S):
            self._send()
        return True

    def _recycle_due(self) -> bool:
        """Whether this worker is to be replaced: it ran --max-tasks-per-worker tasks, or its RSS
        passed --max-worker-memory (said once, as it begins to drain)."""
        r = self.spec.recycle
        if r.tasks is not None and self.shared.tasks >= r.tasks:
            why = f"ran {count(self.shared.tasks, 'task')} (--max-tasks-per-worker {r.tasks})"
        elif r.memory_mb is not None and (mb := rss_mb()) > r.memory_mb:
            why = f"uses {mb:.0f} MB (--max-worker-memory {r.memory_mb:g})"
        else:
            return False
        logger.bind(role="consumer").info("worker {} (pid {}) {}: replacing it once its running tasks end",
                                          self.spec.name, os.getpid(), why)
        return True

    def run(self) -> None:
        """Lease, run and ack until drained, out of work with --burst, or orphaned."""
        if self.spec.concurrency > 1:
            self._run_concurrently()
        else:
            self._run_one_at_a_time()

    def _awaited(self, fn: TaskFunction) -> TaskFunction:
        """fn, or for an ``async def`` fn, a function that runs its coroutine to its end on our loop."""
        if not is_async(fn):
            return fn
        if self._loop is None:
            self._loop = asyncio.new_event_loop()
        loop, timeout = self._loop, self.spec.task_timeout
        return lambda payload: run_coroutine(fn(payload), timeout, loop)

    def _run_one_at_a_time(self) -> None:
        shared, acks, todo, fns = self.shared, self.acks, self.todo, self.fns
        place = self.running[0]
        timed = self.spec.task_timeout is not None
        monotonic = time.monotonic
        last_poll = now = monotonic()
        since_poll = 0
        while True:
            # Look at god's reply and the consumer's pipe when out of work, else every
            # POLL_EVERY tasks or FLUSH_S seconds: a poll is a system call, and at tiny tasks it
            # cost more than the task (3.4 us a task with a poll each, 0.9 without).
            if not self.held or since_poll >= POLL_EVERY or now - last_poll >= FLUSH_S:
                if not self._look():
                    return
                since_poll, last_poll = 0, monotonic()
                now = last_poll
                continue
            # Run the tasks of the first grant, in one loop: up to the next look, or until
            # results have waited FLUSH_S.
            g = todo[0]
            fn = fns.get(g[G_TASK])
            if not isinstance(fn, str):
                place.grace = KILL_GRACE_S if is_async(fn) else 0.0  # a coroutine is cancelled here
                fn = self._awaited(fn)
            payloads, lo, hi = g[G_PAYLOADS], g[G_LO], g[G_HI]
            seq, stop = self.at, min(hi, self.at + POLL_EVERY - since_poll)
            acks.begin(g, seq)
            acks.stamp = stamp = repr(time.time())  # a time per round of tasks: at most FLUSH_S off
            add, lines, ok_line, fast = acks.add, acks.lines, acks.ok_line, not g[G_KEEP]
            place.producer, place.first = g[G_PRODUCER].encode(), g[G_FIRST]
            shared.tasks += stop - seq
            last_send = self.last_send
            t0 = begin = monotonic()
            skip, producer = self.skip, g[G_PRODUCER]
            while seq < stop:
                payload = payloads[seq - lo]
                if skip and (producer, seq) in skip:  # cancelled at god while held here
                    add(g, seq, payload, _CANCELLED)
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
                        why = None if type(value) in _PLAIN else _unpicklable(value)
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
            self.spent += now - begin
            self.ran += seq - self.at
            since_poll += seq - self.at
            self._advance(seq - self.at)

    def _advance(self, n: int) -> None:
        """n more tasks of todo[0] were started."""
        self.held -= n
        self.at += n
        if self.at >= self.todo[0][G_HI]:
            self.todo.popleft()
            if self.todo:
                self.at = self.todo[0][G_LO]

    def _add_finished(self) -> None:
        """The results of tasks that ran concurrently, into acks: in order, so they make runs."""
        if not self.finished:
            return
        self.finished.sort(key=lambda f: (f[0][G_PRODUCER], f[0][G_FIRST], f[0][G_LO], f[1]))
        self.acks.stamp = repr(time.time())
        for g, seq, payload, v, exc in self.finished:
            self.acks.add(g, seq, payload, v, exc)
        self.finished = []

    def _run_concurrently(self) -> None:
        """Up to --concurrency tasks at once: plain functions on threads, coroutines on a loop."""
        spec, shared, todo = self.spec, self.shared, self.todo
        calls = self._calls = Calls(spec.concurrency)
        free = list(range(spec.concurrency - 1, -1, -1))
        timeout = spec.task_timeout
        token = 0
        while True:
            if not self._look():
                return
            now = time.monotonic()
            # Start what there is room for; a task that ran beside others in a worker that died
            # runs alone, so that if it kills this one too, god knows it was that task.
            alone = any(started[0][G_ALONE] for started in self.busy.values())
            while free and self.held and not self.draining and not alone:
                g = todo[0]
                if g[G_ALONE] and self.busy:
                    break
                alone = g[G_ALONE]
                seq = self.at
                payload = g[G_PAYLOADS][seq - g[G_LO]]
                self._advance(1)
                shared.tasks += 1
                fn = self.fns.get(g[G_TASK])
                if isinstance(fn, str) or (g[G_PRODUCER], seq) in self.skip:
                    v: Value = (False, None, fn, None) if isinstance(fn, str) else _CANCELLED
                    self.finished.append((g, seq, payload, v, None))
                    continue
                i = free.pop()
                place = self.running[i]
                place.producer, place.first, place.seq, place.since = g[G_PRODUCER].encode(), g[G_FIRST], seq, now
                place.grace = KILL_GRACE_S  # the worker gives up what runs over its time itself
                token += 1
                self.busy[i] = (g, seq, payload, now, token, is_async(fn))
                calls.submit((i, token), fn, payload, timeout)
            # Wait for a task to end; for god's reply, a look now and then (often while it is due).
            calls.wait(0.001 if self.client.sent else FLUSH_S / 2)
            for (i, tok), value, exc, ended in calls.ended():
                started = self.busy.get(i)
                if started is None or started[4] != tok:
                    continue  # given up for running over its time: its result was written then
                del self.busy[i]
                free.append(i)
                self.running[i].seq = -1
                g, seq, payload, t0 = started[:4]
                self.spent += ended - t0
                self.ran += 1
                self.finished.append((g, seq, payload, *_outcome(value, exc)))
            if timeout is not None:
                self._give_up_overdue(calls, timeout)

    def _give_up_overdue(self, calls: Calls, timeout: float) -> None:
        """Fail the tasks running over --task-timeout that could not be stopped: a thread, or a
        coroutine that holds its event loop (it never awaits), so that none is cancelled. Their
        worker then drains and is replaced (what runs on in it holds a place for good)."""
        now = time.monotonic()
        for i, (g, seq, payload, t0, token, coroutine) in list(self.busy.items()):
            if i not in self.busy or now - t0 <= timeout + (GRACE_S if coroutine else 0.0):
                continue  # (handed back with a coroutine given up before it, or not overdue)
            if coroutine:  # the one that holds the loop is to blame; the others wait behind it
                key = calls.blocking()
                blocker = self.busy.get(key[0]) if key is not None else None
                if blocker is not None and blocker[4] == key[1]:  # (the same task, not a later one in its place)
                    i = key[0]
                    g, seq, payload = self.busy[i][:3]
            del self.busy[i]
            self.running[i].seq = -1
            what = "coroutine was not cancelled in time (it blocks its event loop)" if coroutine else \
                "thread cannot be stopped"
            exc = TimeoutError(f"timed out after {timeout:g}s (--task-timeout); its {what}, "
                               "so its worker is replaced once the others are done")
            self.finished.append((g, seq, payload, failure(exc), exc))
            if coroutine:  # the coroutines beside it cannot go on while it holds the loop: they go back
                for j in [j for j, started in self.busy.items() if started[5]]:
                    del self.busy[j]  # the bye at the end hands them back, unfinished
                    self.running[j].seq = -1
            if not self.draining:
                self.draining, self.why = True, "replace"


#: A task running concurrently: (grant, seq, payload, monotonic start, token, a coroutine).
Started = tuple[Grant, int, Any, float, int, bool]
#: A task that ended: (grant, seq, payload, outcome, exception or None).
Finished = tuple[Grant, int, Any, Value, "BaseException | None"]


def _outcome(value: Any, exc: BaseException | None) -> tuple[Value, BaseException | None]:
    """What a task call gave, as a result: its value, or its failure (an unpicklable value is one)."""
    if exc is not None:
        return failure(exc), exc
    why = None if type(value) in _PLAIN else _unpicklable(value)
    if why is not None:
        e = TypeError(why)
        return failure(e), e
    return (True, value, None, None), None


def worker_main(spec: WorkerSpec, control: Connection, shared: Shared, running: Any) -> None:
    """A worker process's life: see ``Worker``; says how it ended on the pipe, last."""
    # Ctrl-C reaches the whole process group; the consumer decides how to stop, not us.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    setup_logging("consumer", level=spec.log_level, json=spec.log_json)
    worker = Worker(spec, control, shared, running)
    try:
        worker.run()
        end: tuple[Any, ...] = ("ended", worker.why)
    except Interrupted:  # told to drain while god was away: it serves our tasks again
        end = ("ended", "drained")
    except GodError as e:
        end = ("ended", "error", str(e), e.exit_code)
    finally:
        worker.client.close()
    if not worker.gone:
        try:
            control.send(end)
        except OSError:
            pass
    if worker.why == "replace":  # a task thread runs on and cannot be stopped: do not wait for it
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)
