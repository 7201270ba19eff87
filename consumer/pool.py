"""A consumer's worker processes: start them, feed them, replace the dead, stop the overdue.

No network here: the consumer decides what to lease, ack and release; the pool says which
tasks each worker holds, and what became of them when a worker died.
"""

from __future__ import annotations

import pickle
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from multiprocessing.context import SpawnContext
from multiprocessing.process import BaseProcess
from typing import Any

from loguru import logger

from consumer.worker import Acks, worker_main
from shared.records import G_ATTEMPT, G_FIRST, G_HI, G_LO, G_PAYLOADS, G_PRODUCER, Ack, Grant, Run, failure

TARGET_QUEUED_S = 0.05  # seconds of work kept queued at each worker (sizes its batches) ...
RTT_QUEUED = 5.0  # ... or this many round trips to god, if longer: work in hand while results, acks and
# the next lease travel (a result waits up to a flush and an ack's round trip before it frees room)
JOIN_S = 3.0  # seconds a worker gets at each step of a forced stop
RESPAWN_FIRST_S = 0.5  # wait before replacing a worker after the second fast death in a row
RESPAWN_MAX_S = 30.0  # longest wait before replacing a worker that keeps dying at once


@dataclass(eq=False)
class WorkerHandle:
    """One worker process and what the consumer has handed it."""

    index: int
    process: BaseProcess
    tasks_out: Connection
    results_in: Connection
    started: Any  # shared counter, incremented by the worker before each task
    busy_since: Any  # shared monotonic time its running task started; 0 between tasks
    inflight: deque[Grant] = field(default_factory=deque)  # runs handed to it, payloads as lists
    held: int = 0  # tasks in inflight without a result read yet
    at: int = 0  # the seq of inflight[0]'s first task without a result read yet
    completed: int = 0
    finished: bool = False  # drained: it said which tasks it did not start
    timed_out: bool = False  # killed for running over --task-timeout


@dataclass(slots=True)
class Exit:
    """What became of a dead worker's tasks."""

    unstarted: list[Run] = field(default_factory=list)  # to hand back, no attempt used
    crashed: list[Run] = field(default_factory=list)  # the task it died running: an attempt used
    timed_out: list[Ack] = field(default_factory=list)  # the failure of the task it was stopped for


class WorkerPool:
    """``processes`` worker processes, each with a queue of leased tasks; thread-safe.

    ``room`` is notified whenever a worker can take more (a result came, a worker started).
    Dead workers are replaced while ``replacing`` is true; the consumer clears it to drain.
    """

    def __init__(
        self, ctx: SpawnContext, *, task_spec: str, consumer: str, processes: int, prefetch: int,
        task_timeout: float | None = None, log_args: tuple[str, bool] = ("INFO", False),
    ) -> None:
        self.task_spec = task_spec
        self.consumer = consumer
        self.processes = processes
        self.prefetch = prefetch
        self.task_timeout = task_timeout
        self.replacing = True
        self.terminating = False  # every worker is being stopped: their ends are not news
        self.rtt_s = 0.0  # a round trip to god, as the heartbeats measure it
        self._ctx = ctx
        self._log_args = log_args
        self.lock = threading.Lock()
        self.room = threading.Condition(self.lock)
        self.workers: list[WorkerHandle] = []
        self._respawns: list[tuple[float, int]] = []  # (when, index) of workers to start again
        self._fast_deaths = 0  # workers in a row that died before their first task
        self._avg_task_s: float | None = None
        self._log = logger.bind(role="consumer")

    def start(self) -> None:
        """Start every worker process."""
        with self.lock:
            self.workers = [self._spawn(i) for i in range(self.processes)]

    def _spawn(self, index: int) -> WorkerHandle:
        tasks_in, tasks_out = self._ctx.Pipe(duplex=False)
        results_in, results_out = self._ctx.Pipe(duplex=False)
        started = self._ctx.RawValue("q", 0)
        busy_since = self._ctx.RawValue("d", 0.0)
        p = self._ctx.Process(
            target=worker_main, name=f"worker-{index}", daemon=True,
            args=(self.task_spec, self.consumer, tasks_in, results_out, started, busy_since,
                  self.task_timeout is not None, *self._log_args),
        )
        p.start()
        # Our copies of the worker's ends must go, or its death would never read as EOF.
        tasks_in.close()
        results_out.close()
        return WorkerHandle(index, p, tasks_out, results_in, started, busy_since)

    # -- feeding -------------------------------------------------------------------------

    def _slots(self) -> int:
        if self._avg_task_s is None:
            return 1
        per_task = max(self._avg_task_s, 1e-9)
        ahead = RTT_QUEUED * self.rtt_s  # far from god, a worker needs this much work in hand
        cap = max(self.prefetch, int(ahead / per_task))  # --prefetch, unless the round trip needs more
        return max(1, min(cap, int(max(TARGET_QUEUED_S, ahead) / per_task)))

    def free_slots(self) -> int:
        """How many more tasks the workers should be given now (lock held)."""
        slots = self._slots()
        return sum(max(0, slots - w.held) for w in self.workers if not w.finished)

    def idle(self) -> bool:
        """True when no worker holds a task."""
        with self.lock:
            return all(not w.held for w in self.workers)

    def waiting_to_respawn(self) -> bool:
        """True while a dead worker waits out its backoff before it is replaced."""
        with self.lock:
            return bool(self._respawns) and self.replacing

    @staticmethod
    def send(w: WorkerHandle, msg: tuple[Any, ...]) -> None:
        """Send a message to a worker; a dead one is dealt with when its results pipe ends."""
        try:
            w.tasks_out.send(msg)
        except OSError:
            pass

    def dispatch(self, grants: list[Grant]) -> list[Grant]:
        """Hand the granted tasks to the workers with room, in runs; returns those no worker could take."""
        pieces = [_listed(g) for g in grants]
        with self.lock:
            live = [w for w in self.workers if not w.finished]
            if not live:  # every worker died meanwhile and waits out its backoff
                return grants
            plan: dict[WorkerHandle, list[Grant]] = {w: [] for w in live}
            room = {w: max(0, self._slots() - w.held) for w in live}
            load = {w: w.held for w in live}
            for g in pieces:
                lo = g[G_LO]
                while lo < g[G_HI]:
                    w = next((w for w in live if room[w] > 0), None)
                    if w is None:  # more than the room asked for (a worker was replaced meanwhile)
                        w = min(live, key=load.__getitem__)
                        n = g[G_HI] - lo
                    else:
                        n = min(g[G_HI] - lo, room[w])
                        room[w] -= n
                    plan[w].append(_part(g, lo, lo + n))
                    load[w] += n
                    lo += n
            for w, runs in plan.items():
                if runs and not w.inflight:
                    w.at = runs[0][G_LO]
                w.inflight.extend(runs)
                w.held += sum(g[G_HI] - g[G_LO] for g in runs)
        for w, runs in plan.items():  # outside the lock: a full pipe must not stall the collector
            if runs:
                self.send(w, ("tasks", runs))
        return []

    def drain(self) -> None:
        """Tell every worker to finish its running task and say which it did not start."""
        with self.lock:
            self.replacing = False
            workers = list(self.workers)
        for w in workers:
            self.send(w, ("drain",))

    def took(self, w: WorkerHandle, n: int, spent: float) -> None:
        """A worker sent n results that took spent seconds of its time."""
        with self.lock:
            w.held -= n
            left = n
            while left and w.inflight:
                g = w.inflight[0]
                k = min(left, g[G_HI] - w.at)
                w.at += k
                left -= k
                if w.at >= g[G_HI]:
                    w.inflight.popleft()
                    w.at = w.inflight[0][G_LO] if w.inflight else 0
            w.completed += n
            per_task = spent / n
            self._avg_task_s = per_task if self._avg_task_s is None else 0.8 * self._avg_task_s + 0.2 * per_task
            self.room.notify_all()

    def drained(self, w: WorkerHandle) -> None:
        """A worker said which tasks it did not start, and is ending."""
        with self.lock:
            w.inflight.clear()
            w.held = 0
            w.finished = True

    # -- deaths, replacements, timeouts -----------------------------------------------------

    def _running_task(self, w: WorkerHandle) -> tuple[Grant, int] | None:
        """The grant and seq of the task w is running, or was when it died (lock held)."""
        k = w.started.value - w.completed - 1  # started, and no result read yet: the k-th held task
        if k < 0:
            return None
        for i, g in enumerate(w.inflight):
            lo = w.at if i == 0 else g[G_LO]
            if k < g[G_HI] - lo:
                return g, lo + k
            k -= g[G_HI] - lo
        return None

    def exited(self, w: WorkerHandle) -> Exit:
        """A worker's results pipe closed: replace it if it died; says what became of its tasks."""
        w.process.join(JOIN_S)
        out = Exit()
        with self.lock:
            self.workers.remove(w)
            if w.finished:
                return out
            running = self._running_task(w)
            seq = running[1] if running is not None else 0
            for i, g in enumerate(w.inflight):
                lo = w.at if i == 0 else g[G_LO]
                parts = ((lo, g[G_HI]),) if running is None or g is not running[0] else ((lo, seq), (seq + 1, g[G_HI]))
                for a, z in parts:
                    if z > a:
                        out.unstarted.append((g[G_PRODUCER], g[G_FIRST], a, z))
            if running is not None and w.timed_out:
                g, seq = running
                acks = Acks(self.consumer)
                stopped = TimeoutError(f"timed out after {self.task_timeout:g}s (--task-timeout); its worker was stopped")
                acks.add(g, seq, g[G_PAYLOADS][seq - g[G_LO]], failure(stopped), stopped)
                out.timed_out = acks.take()[0]
            elif running is not None:
                g, seq = running
                out.crashed = [(g[G_PRODUCER], g[G_FIRST], seq, seq + 1)]
            delay = self._respawn_delay(w)
            replacing = self.replacing
            if self.terminating:
                return out
            if replacing and delay:
                self._respawns.append((time.monotonic() + delay, w.index))
            elif replacing:
                self.workers.append(self._spawn(w.index))
            self.room.notify_all()
        self._log.warning(
            "worker {} (pid {}) {} with exit code {}{}; {}", w.index, w.process.pid,
            "was stopped" if w.timed_out else "died", w.process.exitcode,
            f" while running task {running[0][G_PRODUCER]}/{running[1]}" if running else "",
            "not replaced while stopping" if not replacing else
            f"starting a new one in {delay:.1f}s ({self._fast_deaths} in a row died before their first task)"
            if delay else "started a new one",
        )
        return out

    def _respawn_delay(self, w: WorkerHandle) -> float:
        """Replace at once, unless workers keep dying as soon as they start (lock held)."""
        # A worker that dies running a task (a poison task) is replaced at once: the task is
        # god's to count and dead-letter. Only workers that die before their first one (a task
        # module that crashes on import) would die again at once, so they are paced.
        if w.timed_out or w.started.value > 0:
            self._fast_deaths = 0
            return 0.0
        self._fast_deaths += 1
        if self._fast_deaths < 2:
            return 0.0
        return float(min(RESPAWN_MAX_S, RESPAWN_FIRST_S * 2 ** (self._fast_deaths - 2)))

    def respawn_due(self) -> None:
        """Start the workers whose backoff is over."""
        now = time.monotonic()
        with self.lock:
            due = [i for when, i in self._respawns if when <= now]
            self._respawns = [(when, i) for when, i in self._respawns if when > now]
            if self.replacing and due:
                self.workers += [self._spawn(index) for index in due]
                self.room.notify_all()

    def stop_overdue(self) -> None:
        """Kill workers whose task runs over --task-timeout; their exit then reads as a death."""
        if self.task_timeout is None:
            return
        now = time.monotonic()
        with self.lock:
            for w in self.workers:
                since = w.busy_since.value
                if since and not w.timed_out and now - since > self.task_timeout:
                    w.timed_out = True
                    running = self._running_task(w)
                    self._log.warning("worker {} (pid {}): task {} ran over --task-timeout {:g}s; stopping it",
                                      w.index, w.process.pid,
                                      f"{running[0][G_PRODUCER]}/{running[1]}" if running else "?", self.task_timeout)
                    w.process.kill()

    def terminate(self) -> None:
        """Stop every worker: ask (SIGTERM), wait, then kill."""
        with self.lock:
            self.replacing = False
            self.terminating = True
            workers = list(self.workers)
        for w in workers:
            if w.process.is_alive():
                w.process.terminate()
        for w in workers:
            w.process.join(JOIN_S)
            if w.process.is_alive():
                w.process.kill()
                w.process.join(JOIN_S)


def _listed(g: Grant) -> Grant:
    """The grant with its payloads as a list (god sends a whole batch as the producer's pickle)."""
    payloads = g[G_PAYLOADS]
    if isinstance(payloads, bytes):
        return (*g[:G_PAYLOADS], pickle.loads(payloads), *g[G_PAYLOADS + 1 :])
    return g


def _part(g: Grant, lo: int, hi: int) -> Grant:
    """Tasks [lo, hi) of a grant whose payloads are a list."""
    if lo == g[G_LO] and hi == g[G_HI]:
        return g
    payloads = g[G_PAYLOADS]
    assert isinstance(payloads, list)
    return (*g[:G_LO], lo, hi, g[G_ATTEMPT], payloads[lo - g[G_LO] : hi - g[G_LO]],  # type: ignore[return-value]
            *g[G_PAYLOADS + 1 :])
