"""The consumer process: leases tasks from god, feeds its workers, acks results, beats.

Three threads, each with its own connection to god: the main thread leases and hands
tasks to workers (``step``); the collector reads results from workers and acks them in
batches; the heartbeat thread keeps our leases alive whatever the workers are doing.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import signal
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from enum import Enum, auto
from multiprocessing.connection import Connection, wait
from multiprocessing.process import BaseProcess
from types import FrameType
from typing import Any, cast

from loguru import logger

from consumer.worker import worker_main
from shared import exitcodes
from shared.client import GodClient
from shared.config import Settings, format_address, hostname
from shared.errors import GodError, Interrupted
from shared.records import ID, Leased, ResultIn, failure

LEASE_WAIT_S = 1.0  # seconds a lease call waits at god for the first task
BURST_WAIT_S = 0.3  # the same with --burst: an empty queue ends the run sooner
COLLECT_WAIT_S = 0.2  # seconds the collector waits for worker output per round
TARGET_QUEUED_S = 0.05  # seconds of work kept queued at each worker (sizes its batches)
JOIN_S = 3.0  # seconds a worker gets at each step of a forced stop
DRAIN_RETRY_S = 10.0  # seconds a draining consumer keeps trying to hand results back
FAST_DEATH_S = 1.0  # a worker dying sooner than this after its start counts towards a backoff
RESPAWN_FIRST_S = 0.5  # wait before replacing a worker after the second fast death in a row
RESPAWN_MAX_S = 30.0  # longest wait before replacing a worker that keeps dying at once


class State(Enum):
    """Where a consumer is in its life."""

    STARTING = auto()
    RUNNING = auto()
    DRAINING = auto()
    STOPPED = auto()


class ColdStop(BaseException):
    """Raised by the second SIGINT/SIGTERM: stop now, let god serve our tasks again."""


@dataclass(eq=False)
class WorkerHandle:
    """One worker process and what the consumer has handed it."""

    index: int
    process: BaseProcess
    tasks_out: Connection
    results_in: Connection
    started: Any  # shared counter, incremented by the worker before each task
    busy_since: Any  # shared monotonic time its running task started; 0 between tasks
    born: float = field(default_factory=time.monotonic)
    timed_out: bool = False  # killed by the consumer for running over --task-timeout
    inflight: deque[Leased] = field(default_factory=deque)
    completed: int = 0
    finished: bool = False  # drained: it said which tasks it did not start


class Consumer:
    """Runs tasks from god in ``processes`` worker processes until stopped (or, with burst, idle)."""

    def __init__(
        self,
        settings: Settings,
        *,
        task_spec: str,
        processes: int,
        prefetch: int,
        burst: bool = False,
        task_timeout: float | None = None,
        log_level: str = "INFO",
        log_json: bool = False,
    ) -> None:
        self.settings = settings
        self.task_spec = task_spec
        self.processes = processes
        self.prefetch = prefetch
        self.burst = burst
        self.task_timeout = task_timeout
        self.name = f"{hostname()}:{os.getpid()}"
        self.state = State.STARTING
        self.reason = ""
        self.done = 0
        self.failed = 0
        self._log_args = (log_level, log_json)
        self._ctx = mp.get_context("spawn")
        self._lock = threading.Lock()
        self._room = threading.Condition(self._lock)
        self._workers: list[WorkerHandle] = []
        self._respawns: list[tuple[float, int]] = []  # (when, index) of workers to start again
        self._fast_deaths = 0  # workers in a row that died within FAST_DEATH_S of starting
        self._avg_task_s: float | None = None
        self._lease_seq = 0
        self._signals = 0
        self._signal_name = ""
        self._fatal: GodError | None = None
        self._threads_stop = False
        self._threads: list[threading.Thread] = []
        self._log = logger.bind(role="consumer")
        info = {"host": hostname(), "pid": os.getpid(), "processes": processes}
        self._drain_started: float | None = None
        self._clients = [
            GodClient(settings, name=self.name, role="consumer", info=info, should_stop=stop)
            for stop in (self._stop_leasing, self._stop_acking, self._stopping)
        ]
        self._lease_client, self._ack_client, self._beat_client = self._clients

    # -- life cycle ----------------------------------------------------------------------

    def _stopping(self) -> bool:
        return self._threads_stop or self._signals > 1

    def _stop_leasing(self) -> bool:
        return self._stopping() or self._signals > 0

    def _stop_acking(self) -> bool:
        # While draining, results are worth a short wait for god, not an endless one: god
        # serves again whatever we could not hand back.
        drain = self._drain_started
        return self._stopping() or (drain is not None and time.monotonic() - drain > DRAIN_RETRY_S)

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        # The first signal only sets a flag (the main loop drains); the second stops now.
        self._signals += 1
        self._signal_name = signal.Signals(signum).name
        if self._signals > 1:
            raise ColdStop

    def run(self) -> int:
        """Run until drained; returns the exit code."""
        signal.signal(signal.SIGINT, self._on_signal)
        signal.signal(signal.SIGTERM, self._on_signal)
        self._heartbeat_s = 1.0
        code = exitcodes.OK
        try:
            hello = self._lease_client.connect()
            self._heartbeat_s = float(hello.get("heartbeat_s", 1.0))
            with self._lock:
                self._workers = [self._spawn(i) for i in range(self.processes)]
            for target in (self._collect_loop, self._heartbeat_loop):
                t = threading.Thread(target=target, name=target.__name__, daemon=True)
                t.start()
                self._threads.append(t)
            self.state = State.RUNNING
            self._log.info("consumer {} running {} in {} processes, god at {}", self.name, self.task_spec,
                           self.processes, format_address(self.settings.address))
            while self.state is State.RUNNING:
                self.step()
            self._wait_drained()
        except ColdStop:
            self.reason, code = f"second {self._signal_name}: stopped at once", exitcodes.INTERRUPTED
        except Interrupted as e:
            self.reason, code = (str(self._fatal), self._fatal.exit_code) if self._fatal else (str(e), e.exit_code)
        except GodError as e:
            self.reason, code = str(e), e.exit_code
        finally:
            for sig in (signal.SIGINT, signal.SIGTERM):  # the stop is under way; more signals change nothing
                signal.signal(sig, signal.SIG_IGN)
            self._teardown()
        if self._fatal is not None and code == exitcodes.OK:
            self.reason, code = str(self._fatal), self._fatal.exit_code
        log = self._log.error if code not in (exitcodes.OK,) else self._log.info
        log("consumer {} stopped: {} (done {}, failed {})", self.name, self.reason, self.done, self.failed)
        return code

    def step(self) -> None:
        """One round of the main loop: lease what the workers have room for and hand it out."""
        if self._signals:
            self._begin_drain(f"{self._signal_name} received")
            return
        if self._fatal is not None:
            self.state = State.STOPPED
            return
        with self._lock:
            want = self._free_slots()
            if want <= 0:
                self._room.wait(LEASE_WAIT_S)
                return
        self._lease_seq += 1
        try:
            tasks = self._lease_client.lease(want, BURST_WAIT_S if self.burst else LEASE_WAIT_S, self._lease_seq)
        except Interrupted:
            if self._fatal is None and self._signals:
                return  # a stop was asked for while god was away: drain next round
            raise
        if tasks:
            self._dispatch(tasks)
        elif self.burst and self._idle():
            self._begin_drain("the queue is empty (--burst)")

    def _begin_drain(self, reason: str) -> None:
        self.state, self.reason = State.DRAINING, reason
        self._drain_started = time.monotonic()
        self._log.info("consumer {}: {}; finishing running tasks, handing back the rest", self.name, reason)
        with self._lock:
            workers = list(self._workers)
        for w in workers:
            self._send(w, ("drain",))

    def _wait_drained(self) -> None:
        collector, beater = self._threads
        while collector.is_alive():  # short joins, so a second signal gets through
            collector.join(0.2)
        self._threads_stop = True  # no heartbeat may follow our goodbye
        beater.join()
        if self._fatal is None:
            try:
                self._ack_client.bye()
            except GodError:
                pass  # god will give us up when our lease runs out; nothing is held anyway
        self.state = State.STOPPED

    def _teardown(self) -> None:
        self._threads_stop = True
        with self._lock:
            workers = list(self._workers)
        for w in workers:
            if w.process.is_alive():
                w.process.terminate()
        for w in workers:
            w.process.join(JOIN_S)
            if w.process.is_alive():
                w.process.kill()
                w.process.join(JOIN_S)
        for c in self._clients:
            c.close()
        self.state = State.STOPPED

    def _fail(self, e: GodError) -> None:
        if self._fatal is None:
            self._fatal = e
        self._threads_stop = True

    # -- workers -------------------------------------------------------------------------

    def _spawn(self, index: int) -> WorkerHandle:
        tasks_in, tasks_out = self._ctx.Pipe(duplex=False)
        results_in, results_out = self._ctx.Pipe(duplex=False)
        started = self._ctx.RawValue("q", 0)
        busy_since = self._ctx.RawValue("d", 0.0)
        p = self._ctx.Process(
            target=worker_main, name=f"worker-{index}", daemon=True,
            args=(self.task_spec, tasks_in, results_out, started, busy_since, *self._log_args),
        )
        p.start()
        # Our copies of the worker's ends must go, or its death would never read as EOF.
        tasks_in.close()
        results_out.close()
        return WorkerHandle(index, p, tasks_out, results_in, started, busy_since)

    def _slots(self) -> int:
        if self._avg_task_s is None:
            return 1
        return max(1, min(self.prefetch, int(TARGET_QUEUED_S / max(self._avg_task_s, 1e-9))))

    def _free_slots(self) -> int:
        slots = self._slots()
        return sum(max(0, slots - len(w.inflight)) for w in self._workers if not w.finished)

    def _idle(self) -> bool:
        with self._lock:
            return all(not w.inflight for w in self._workers)

    def _send(self, w: WorkerHandle, msg: tuple[Any, ...]) -> None:
        try:
            w.tasks_out.send(msg)
        except OSError:
            pass  # it died; the collector hands back what it held

    def _dispatch(self, tasks: list[Leased]) -> None:
        with self._lock:
            live = [w for w in self._workers if not w.finished]
            plan: dict[WorkerHandle, list[Leased]] = {w: [] for w in live}
            slots, i = self._slots(), 0
            for w in live:
                n = max(0, slots - len(w.inflight))
                plan[w], i = tasks[i : i + n], i + n
            if live:
                for t in tasks[i:]:  # more than the room we asked for (a worker was replaced meanwhile)
                    plan[min(live, key=lambda w: len(w.inflight) + len(plan[w]))].append(t)
            for w, batch in plan.items():
                w.inflight.extend(batch)
        if not live:  # every worker died meanwhile and waits out its backoff: god serves them again
            self._lease_client.release([t[ID] for t in tasks])
        for w, batch in plan.items():  # outside the lock: a full pipe must not stall the collector
            if batch:
                self._send(w, ("tasks", batch))

    def _running_task(self, w: WorkerHandle) -> str | None:
        """The id of the task w is running, or was when it died (lock held)."""
        running = w.started.value - w.completed  # started, and no result read yet
        return w.inflight[running - 1][ID] if 0 < running <= len(w.inflight) else None

    def _worker_exited(self, w: WorkerHandle) -> tuple[list[str], list[str], list[ResultIn]]:
        """A worker's results pipe closed: replace it if it died.

        Returns:
            (unstarted task ids, the id of the task it died running, a failure for the task
            it was stopped for running over --task-timeout).
        """
        w.process.join(JOIN_S)
        timed_out: list[ResultIn] = []
        with self._lock:
            self._workers.remove(w)
            if w.finished:
                return [], [], []
            running = self._running_task(w)
            crashed = [running] if running is not None else []
            unstarted = [t[ID] for t in w.inflight if t[ID] != running]
            if w.timed_out and crashed:
                timed_out = [failure(crashed.pop(), TimeoutError(
                    f"timed out after {self.task_timeout:g}s (--task-timeout); its worker was stopped"))]
            delay = self._respawn_delay(w)
            if self.state is State.RUNNING:
                if delay:
                    self._respawns.append((time.monotonic() + delay, w.index))
                else:
                    self._workers.append(self._spawn(w.index))
            self._room.notify_all()
        self._log.warning(
            "worker {} (pid {}) {} with exit code {}{}; {}", w.index, w.process.pid,
            "was stopped" if w.timed_out else "died", w.process.exitcode,
            f" while running task {running}" if running else "",
            "not replaced while stopping" if self.state is not State.RUNNING else
            f"starting a new one in {delay:.1f}s ({self._fast_deaths} died within {FAST_DEATH_S:g}s of starting)"
            if delay else "started a new one",
        )
        return unstarted, crashed, timed_out

    def _respawn_delay(self, w: WorkerHandle) -> float:
        """Replace at once, unless workers keep dying as soon as they start (lock held)."""
        if w.timed_out or time.monotonic() - w.born >= FAST_DEATH_S:
            self._fast_deaths = 0
            return 0.0
        self._fast_deaths += 1
        if self._fast_deaths < 2:
            return 0.0
        return float(min(RESPAWN_MAX_S, RESPAWN_FIRST_S * 2 ** (self._fast_deaths - 2)))

    def _respawn_due(self) -> None:
        """Start the workers whose backoff is over."""
        now = time.monotonic()
        with self._lock:
            due = [i for when, i in self._respawns if when <= now]
            self._respawns = [(when, i) for when, i in self._respawns if when > now]
            if self.state is State.RUNNING:
                for index in due:
                    self._workers.append(self._spawn(index))
                if due:
                    self._room.notify_all()

    def _stop_overdue(self) -> None:
        """Kill workers whose task runs over --task-timeout; their exit is handled as a death."""
        if self.task_timeout is None:
            return
        now = time.monotonic()
        with self._lock:
            for w in self._workers:
                since = w.busy_since.value
                if since and not w.timed_out and now - since > self.task_timeout:
                    w.timed_out = True
                    self._log.warning("worker {} (pid {}): task {} ran over --task-timeout {:g}s; stopping it",
                                      w.index, w.process.pid, self._running_task(w), self.task_timeout)
                    w.process.kill()

    # -- collector and heartbeat threads --------------------------------------------------

    def _collect_loop(self) -> None:
        try:
            while not self._threads_stop:
                self._stop_overdue()
                self._respawn_due()
                with self._lock:
                    conns = {w.results_in: w for w in self._workers}
                    waiting = bool(self._respawns) and self.state is State.RUNNING
                if not conns:
                    if not waiting:
                        return  # every worker drained and gone
                    time.sleep(COLLECT_WAIT_S)
                    continue
                results: list[ResultIn] = []
                unstarted: list[str] = []
                crashed: list[str] = []
                for conn in cast(list[Connection], wait(list(conns), COLLECT_WAIT_S)):
                    w = conns[conn]
                    try:
                        msg: Any = conn.recv()
                    except (EOFError, OSError):
                        u, c, r = self._worker_exited(w)
                        unstarted += u
                        crashed += c
                        results += r
                        continue
                    if msg[0] == "results":
                        results += msg[1]
                        self._took(w, msg[1], msg[2])
                    elif msg[0] == "unstarted":
                        unstarted += msg[1]
                        with self._lock:
                            w.inflight.clear()
                            w.finished = True
                if results:
                    self._ack_client.ack_many(results)
                if unstarted or crashed:
                    self._ack_client.release(unstarted, crashed)
        except GodError as e:
            self._fail(e)

    def _took(self, w: WorkerHandle, results: list[ResultIn], spent: float) -> None:
        n = len(results)
        with self._lock:
            for _ in range(n):
                w.inflight.popleft()
            w.completed += n
            per_task = spent / n
            self._avg_task_s = per_task if self._avg_task_s is None else 0.8 * self._avg_task_s + 0.2 * per_task
            self._room.notify_all()
        ok = sum(1 for r in results if r[1])
        self.done += ok
        self.failed += n - ok

    def _heartbeat_loop(self) -> None:
        try:
            while not self._threads_stop:
                beat_at = time.monotonic() + self._heartbeat_s
                while not self._threads_stop and time.monotonic() < beat_at:
                    time.sleep(0.05)
                if self._threads_stop:
                    return
                if not self._beat_client.heartbeat():
                    self._log.warning("god had given consumer {} up; its tasks were served again", self.name)
        except GodError as e:
            self._fail(e)
