"""A consumer's worker processes: start them, replace the dead, stop the overdue.

No task passes through here: each worker leases and acks over its own connection
(consumer/worker.py). The pool says what became of a worker that died: the task it was
running, read from the memory it shares with us.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from multiprocessing.connection import Connection, wait
from multiprocessing.context import SpawnContext
from multiprocessing.process import BaseProcess
from typing import Any

from consumer.loop import WorkerSpec
from consumer.places import KILL_GRACE_S, Running, Shared, running_task
from consumer.policy import Policy
from consumer.recycle import NO_RECYCLE, Recycle
from consumer.worker import worker_main
from shared.config import Settings
from shared.log import logger
from shared.records import R_LO, R_PRODUCER, Run
from shared.wakeup import Wakeup

JOIN_S = 3.0  # seconds a worker gets at each step of a forced stop
RESPAWN_FIRST_S = 0.5  # wait before replacing a worker after the second fast death in a row
RESPAWN_MAX_S = 30.0  # longest wait before replacing a worker that keeps dying at once


@dataclass(eq=False)
class WorkerHandle:
    """One worker process."""

    index: int
    name: str  # its name at god
    process: BaseProcess
    control: Connection  # ours: "drain" goes out, ("ended", why) comes back
    shared: Any  # Shared, in memory both processes see ...
    running: Any  # ... and Running[concurrency]: the tasks it runs
    ended: tuple[Any, ...] | None = None  # what it said last, if it ended of its own accord
    timed_out: bool = False  # killed for running over --task-timeout
    cancelled: bool = False  # killed for running a task cancelled at god


@dataclass(slots=True)
class Lost:
    """A worker that died or was stopped: what god must be told."""

    worker: WorkerHandle
    running: list[Run]  # the tasks it was running (that killed it), or those that ran over their time
    timed_out: str | None  # why it was stopped, if it was (those tasks then failed with this)


@dataclass(slots=True)
class Events:
    """What happened to the workers in one look."""

    ended: list[WorkerHandle] = field(default_factory=list)  # said how they ended, and did
    lost: list[Lost] = field(default_factory=list)


class WorkerPool:
    """``processes`` worker processes that lease from god themselves; not thread-safe (the
    consumer's main thread owns it, and the heartbeat thread only reads ``workers``)."""

    def __init__(
        self, ctx: SpawnContext, settings: Settings, *, policy: Policy, consumer: str, queues: tuple[str, ...],
        processes: int, prefetch: int, concurrency: int = 1, burst: bool = False, task_timeout: float | None = None,
        recycle: Recycle = NO_RECYCLE, log_args: tuple[str, bool] = ("INFO", False),
    ) -> None:
        self.settings = settings
        self.policy = policy
        self.consumer = consumer
        self.queues = queues
        self.processes = processes
        self.prefetch = prefetch
        self.concurrency = concurrency
        self.burst = burst
        self.task_timeout = task_timeout
        self.recycle = recycle
        self.replacing = True  # cleared to drain: the dead are not replaced
        self.rtt_s = 0.0  # a round trip to god, as the consumer's heartbeats measure it
        self.done = 0  # results of workers that ended, and timeouts
        self.failed = 0
        self._ctx = ctx
        self._log_args = log_args
        self.workers: list[WorkerHandle] = []
        self._respawns: list[tuple[float, int]] = []  # (when, index) of workers to start again
        self._fast_deaths = 0  # workers in a row that died before their first task
        self._stopping: dict[tuple[str, int], float] = {}  # cancelled tasks: until when a worker may stop one itself
        self._log = logger.bind(role="consumer")

    def activity(self) -> tuple[tuple[int, ...], bool]:
        """What the workers have done (their tasks started and results acked, each: a change is
        work), and whether a task runs now."""
        counts = tuple(n for w in self.workers for n in (w.shared.tasks, w.shared.done))
        return counts, any(place.seq >= 0 for w in self.workers for place in w.running)

    def start(self) -> None:
        """Start every worker process."""
        self.workers = [self._spawn(i) for i in range(self.processes)]

    def _spawn(self, index: int) -> WorkerHandle:
        ours, theirs = self._ctx.Pipe()
        shared = self._ctx.RawValue(Shared)
        shared.rtt_s = self.rtt_s
        running = self._ctx.RawArray(Running, self.concurrency)
        for place in running:
            place.seq = -1
        name = f"{self.consumer}/{index}"
        spec = WorkerSpec(self.settings, name, self.consumer, self.policy, self.queues, self.prefetch, self.burst,
                          self.concurrency, self.task_timeout, self.recycle, *self._log_args)
        p = self._ctx.Process(target=worker_main, name=f"worker-{index}", daemon=True,
                              args=(spec, theirs, shared, running))
        p.start()
        theirs.close()  # our copy of its end must go, or its death would never read as EOF
        return WorkerHandle(index, name, p, ours, shared, running)

    def set_rtt(self, seconds: float) -> None:
        """Tell the workers the round trip to god, which sizes what they lease."""
        self.rtt_s = seconds
        for w in list(self.workers):
            w.shared.rtt_s = seconds

    def counts(self) -> tuple[int, int]:
        """Results acked so far by every worker, and failures among them."""
        done, failed = self.done, self.failed
        for w in self.workers:
            done += w.shared.done
            failed += w.shared.failed
        return done, failed

    def waiting_to_respawn(self) -> bool:
        """True while a dead worker waits out its backoff before it is replaced."""
        return bool(self._respawns) and self.replacing

    def drain(self) -> None:
        """Tell every worker to finish its running task, ack, hand back the rest and end."""
        self.replacing = False
        for w in self.workers:
            try:
                w.control.send(("drain",))
            except OSError:
                pass  # dead: its end is seen by watch()

    def watch(self, timeout: float, wakeup: Wakeup | None = None) -> Events:
        """Wait up to timeout for workers to end or die, or for a signal (``wakeup``); replaces
        the dead (see ``Lost``)."""
        out = Events()
        ready = set(wait([x for w in self.workers for x in (w.control, w.process.sentinel)]
                         + ([wakeup.readable] if wakeup is not None else []), timeout))
        if wakeup is not None and wakeup.readable in ready:
            wakeup.drain()
        for w in list(self.workers):
            if w.control not in ready and w.process.sentinel not in ready:
                continue
            try:
                while w.control.poll():
                    msg = w.control.recv()
                    if msg[0] == "ended":
                        w.ended = tuple(msg[1:])
            except (EOFError, OSError):
                pass  # it exited: its sentinel says so
            if w.process.sentinel not in ready:
                continue
            w.process.join(JOIN_S)
            self.workers.remove(w)
            self.done += w.shared.done
            self.failed += w.shared.failed
            if w.ended is not None:
                out.ended.append(w)
                if w.ended[0] == "replace" and self.replacing:  # recycled, or a task thread ran over its time
                    self.workers.append(self._spawn(w.index))
            else:
                out.lost.append(self._lost(w))
        return out

    def _lost(self, w: WorkerHandle) -> Lost:
        running = [r for r in map(running_task, w.running) if r is not None]
        timed_out = None
        if w.cancelled:  # god has their results (cancelled); the rest of what it held goes back
            running = [r for r in running if (r[R_PRODUCER], r[R_LO]) in self._stopping]
            timed_out = "cancelled by an operator (python -m god cancel); its worker was stopped"
        elif w.timed_out:
            running = [r for place, r in zip(w.running, map(running_task, w.running))
                       if r is not None and self._overdue(place, time.monotonic())]
            timed_out = f"TimeoutError: timed out after {self.task_timeout:g}s (--task-timeout); its worker was stopped"
            self.failed += len(running)
            self.done += len(running)
        delay = self._respawn_delay(w)
        if self.replacing and delay:
            self._respawns.append((time.monotonic() + delay, w.index))
        elif self.replacing:
            self.workers.append(self._spawn(w.index))
        self._log.warning(
            "worker {} (pid {}) {} with exit code {}{}; {}", w.index, w.process.pid,
            "was stopped" if w.timed_out or w.cancelled else "died", w.process.exitcode,
            f" while running task {', '.join(f'{r[R_PRODUCER]}/{r[R_LO]}' for r in running)}" if running else "",
            "not replaced while stopping" if not self.replacing else
            f"starting a new one in {delay:.1f}s ({self._fast_deaths} in a row died before their first task)"
            if delay else "started a new one",
        )
        return Lost(w, running, timed_out)

    def _respawn_delay(self, w: WorkerHandle) -> float:
        """Replace at once, unless workers keep dying as soon as they start."""
        # A worker that dies running a task (a poison task) is replaced at once: the task is
        # god's to count and dead-letter. Only workers that die before their first one (a task
        # module that crashes on import) would die again at once, so they are paced.
        if w.timed_out or w.cancelled or w.shared.tasks > 0:
            self._fast_deaths = 0
            return 0.0
        self._fast_deaths += 1
        if self._fast_deaths < 2:
            return 0.0
        return float(min(RESPAWN_MAX_S, RESPAWN_FIRST_S * 2 ** (self._fast_deaths - 2)))

    def respawn_due(self) -> None:
        """Start the workers whose backoff is over."""
        now = time.monotonic()
        due = [i for when, i in self._respawns if when <= now]
        self._respawns = [(when, i) for when, i in self._respawns if when > now]
        if self.replacing and due:
            self.workers += [self._spawn(index) for index in due]

    def stop_tasks(self, tasks: list[tuple[str, int]]) -> None:
        """Stop the tasks god says were cancelled: every worker is told (one that holds one does
        not start it; one that runs it stops it if it can); a worker that runs one alone, or
        has not stopped it within KILL_GRACE_S, is killed, and replaced."""
        now = time.monotonic()
        for key in tasks:
            if key in self._stopping:
                continue
            self._stopping[key] = now + KILL_GRACE_S
            for w in self.workers:
                try:
                    w.control.send(("stop", *key))
                except OSError:
                    pass  # dead: its end is seen by watch()
        self._stopping = {key: self._stopping[key] for key in tasks}  # god says each for a while, then forgets
        if not self._stopping:
            return
        for w in self.workers:
            if w.cancelled:
                continue
            for place in w.running:
                r = running_task(place)
                until = self._stopping.get((r[R_PRODUCER], r[R_LO])) if r is not None else None
                if until is not None and (self.concurrency == 1 or now >= until):
                    w.cancelled = True
                    self._log.warning("worker {} (pid {}): task {}/{} was cancelled; stopping it", w.index,
                                      w.process.pid, r[R_PRODUCER], r[R_LO])  # type: ignore[index]
                    w.process.kill()
                    break

    def stop_overdue(self) -> None:
        """Kill workers whose task runs over --task-timeout; their exit then reads as a death."""
        if self.task_timeout is None:
            return
        now = time.monotonic()
        for w in self.workers:
            if w.timed_out:
                continue
            overdue = [running_task(place) for place in w.running if self._overdue(place, now)]
            if overdue:
                w.timed_out = True
                self._log.warning("worker {} (pid {}): task {} ran over --task-timeout {:g}s; stopping it",
                                  w.index, w.process.pid,
                                  ", ".join(f"{r[R_PRODUCER]}/{r[R_LO]}" for r in overdue if r), self.task_timeout)
                w.process.kill()

    def _overdue(self, place: Running, now: float) -> bool:
        """Whether the task in that place runs over --task-timeout: at once for a plain function
        its worker runs alone; a grace later for what the worker stops or gives up itself (a
        coroutine, tasks running side by side: consumer/concurrent.py)."""
        since = place.since
        assert self.task_timeout is not None
        return bool(place.seq >= 0 and since > 0 and now - since > self.task_timeout + place.grace)

    def terminate(self) -> None:
        """Stop every worker still running (a drained one has ended itself): kill it. Workers
        ignore SIGTERM (consumer/worker.py), and a task's own work is not asked to stop."""
        self.replacing = False
        workers = list(self.workers)
        for w in workers:
            if w.process.is_alive():
                w.process.kill()
        for w in workers:
            w.process.join(JOIN_S)
        for w in workers:
            w.control.close()
