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

import ctypes
import os
import pickle
import signal
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any

from consumer.tasks import Retry, TaskFunction, resolve_task
from shared.client import GodClient
from shared.config import Settings, hostname
from shared.errors import ConfigError, GodError, Interrupted
from shared.log import setup_logging
from shared.records import (
    A_FAILED, A_HI, A_LO, G_ATTEMPT, G_FIRST, G_HI, G_KEEP, G_LO, G_PAYLOADS, G_PRODUCER, G_QUEUE, G_TASK, V_ERROR, V_OK, V_TRACEBACK,
    V_VALUE, Ack, Failed, Grant, Run, Value, failure, json_line, ok_lines, task_id,
)

_PLAIN = (str, int, float, bool, type(None))  # values that always pickle
FLUSH_S = 0.02  # seconds a finished result may wait to be sent with the next ones
POLL_EVERY = 64  # tasks run between looks at god's reply and the consumer's pipe while there is work in hand
LEASE_WAIT_S = 1.0  # seconds a lease waits at god for the first task when the worker has none
BURST_WAIT_S = 0.3  # the same with --burst: an empty queue ends the run sooner
IDLE_LOOK_S = 0.05  # how often a worker waiting for god's reply looks at its consumer's pipe
TARGET_QUEUED_S = 0.05  # seconds of work kept in hand (sizes each lease) ...
RTT_QUEUED = 5.0  # ... or this many round trips to god, if longer: work in hand while results, acks and
# the next lease travel (a result waits up to a flush and the ack's round trip)

# The consumer sends ("drain",): finish the running task, ack, hand back the rest, and end.
# Its pipe closing means it is gone: end at once (god serves our tasks again).
# The worker sends, last, ("ended", why): "drained", "empty" (--burst), or ("error", message, exit code).


class Shared(ctypes.Structure):
    """What a worker and its consumer share: the task the worker runs, its counts, the round trip."""

    _fields_ = [
        ("producer", ctypes.c_char * 1024),  # the running task's grant (its producer, first seq) ...
        ("first", ctypes.c_int64),
        ("seq", ctypes.c_int64),  # ... and its seq; -1 between tasks
        ("busy_since", ctypes.c_double),  # monotonic time the running task started (with --task-timeout)
        ("done", ctypes.c_int64),  # results acked, successes and failures
        ("failed", ctypes.c_int64),
        ("tasks", ctypes.c_int64),  # tasks started, ever: a death before the first is a broken worker
        ("rtt_s", ctypes.c_double),  # a round trip to god, as the consumer's heartbeats measure it
    ]


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
    timed: bool  # a --task-timeout: keep busy_since
    log_level: str
    log_json: bool


def running_task(shared: Shared) -> Run | None:
    """The run of the one task a worker runs (or ran when it died), from what it shares."""
    seq = shared.seq
    if seq < 0:
        return None
    return (shared.producer.decode(), shared.first, seq, seq + 1)


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
        """Results of grant g follow, from seq on (each grant's tasks in order)."""
        if g is self.grant:
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

    def __init__(self, spec: WorkerSpec, control: Connection, shared: Shared) -> None:
        self.spec = spec
        self.control = control
        self.shared = shared
        self.fns = Functions(spec.task_spec, spec.consumer)
        self.client = GodClient(spec.settings, name=spec.name, role="consumer",
                                info={"host": hostname(), "pid": os.getpid(), "parent": spec.consumer},
                                should_stop=self._told)
        self.todo: deque[Grant] = deque()  # leased runs, payloads as lists; todo[0] from seq at
        self.at = 0
        self.held = 0  # tasks in todo not run yet
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

    def _told(self) -> bool:
        """Whether the consumer said to drain or went away (reads its pipe)."""
        if not (self.draining or self.gone):
            try:
                while self.control.poll():
                    self.control.recv()
                    self.draining = True
            except (EOFError, OSError):
                self.gone = True
        return self.draining or self.gone

    def _slots(self) -> int:
        """How many tasks to hold: about TARGET_QUEUED_S of work, or RTT_QUEUED round trips."""
        if self.avg_task_s is None:
            return 1
        per_task = max(self.avg_task_s, 1e-9)
        ahead = RTT_QUEUED * self.shared.rtt_s  # far from god, a worker needs this much work in hand
        cap = max(self.spec.prefetch, int(ahead / per_task))  # --prefetch, unless the round trip needs more
        return max(1, min(cap, int(max(TARGET_QUEUED_S, ahead) / per_task)))

    def _send(self) -> None:
        """Ack what is done and lease what there is room for, in one call whose reply comes later."""
        if self.ran:
            per_task = self.spent / self.ran
            self.avg_task_s = per_task if self.avg_task_s is None else 0.8 * self.avg_task_s + 0.2 * per_task
            self.spent, self.ran = 0.0, 0
        out, _ = self.acks.take()
        for a in out:
            failed = len(a[A_FAILED])
            self.shared.done += a[A_HI] - a[A_LO]
            self.shared.failed += failed
        want = 0 if self.draining else max(0, self._slots() - self.held)
        wait = (BURST_WAIT_S if self.spec.burst else LEASE_WAIT_S) if not self.held else 0.0
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
        """Between tasks: read god's reply if it came (wait for it when out of work), start the
        next call when due. False: the worker is to end."""
        client = self.client
        now = time.monotonic()
        if (not self.held or now - self.told_at >= FLUSH_S) and self._told() and self.gone:
            return False  # (its pipe is looked at every FLUSH_S: a poll costs as much as a few tasks)
        self.told_at = now
        if client.sent:
            if self.held:
                if not client.ready():
                    return True
            else:
                while not client.ready(IDLE_LOOK_S):
                    if self._told() and self.gone:
                        return False
            grants = client.reply()
            self.more = sum(g[G_HI] - g[G_LO] for g in grants) >= self.asked > 0
            self._take(grants)
            if not grants and not self.held and self.spec.burst and not self.draining:
                self.draining = True  # the queue is empty: end as a drain does
                self.why = "empty"
        if self.draining:
            self._send()  # the last results; no lease
            client.reply()
            client.bye()  # what we still hold goes back, unstarted
            return False
        # Lease ahead while tasks run, but only while god has more: asked again at once, a
        # queue god just emptied answers "nothing", and the results wait for that answer
        # (a round trip more for each lone task).
        slots = self._slots()
        pending = bool(self.acks.lines or self.acks.done)
        if not self.held or (self.more and slots - self.held >= max(1, slots // 2)) or (
                pending and time.monotonic() - self.last_send >= FLUSH_S):
            self._send()
        return True

    def run(self) -> None:
        """Lease, run and ack until drained, out of work with --burst, or orphaned."""
        shared, acks, todo, fns, timed = self.shared, self.acks, self.todo, self.fns, self.spec.timed
        monotonic = time.monotonic
        last_poll = now = monotonic()
        since_poll = 0
        shared.seq = -1
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
            payloads, lo, hi = g[G_PAYLOADS], g[G_LO], g[G_HI]
            seq, stop = self.at, min(hi, self.at + POLL_EVERY - since_poll)
            acks.begin(g, seq)
            acks.stamp = stamp = repr(time.time())  # a time per round of tasks: at most FLUSH_S off
            add, lines, ok_line, fast = acks.add, acks.lines, acks.ok_line, not g[G_KEEP]
            shared.producer, shared.first = g[G_PRODUCER].encode(), g[G_FIRST]
            shared.tasks += stop - seq
            last_send = self.last_send
            t0 = begin = monotonic()
            while seq < stop:
                payload = payloads[seq - lo]
                shared.seq = seq
                if timed:  # one clock for both: monotonic is system-wide, so the consumer can compare
                    shared.busy_since = t0
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
                    shared.busy_since = 0.0
                if v is not None:
                    add(g, seq, payload, v, exc)
                seq += 1
                t0 = monotonic()
                if t0 - last_send >= FLUSH_S:
                    break
            shared.seq = -1
            now = t0
            self.spent += now - begin
            self.ran += seq - self.at
            since_poll += seq - self.at
            self.held -= seq - self.at
            self.at = seq
            if seq >= hi:
                todo.popleft()
                if todo:
                    self.at = todo[0][G_LO]


def worker_main(spec: WorkerSpec, control: Connection, shared: Shared) -> None:
    """A worker process's life: see ``Worker``; says how it ended on the pipe, last."""
    # Ctrl-C reaches the whole process group; the consumer decides how to stop, not us.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    setup_logging("consumer", level=spec.log_level, json=spec.log_json)
    worker = Worker(spec, control, shared)
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
