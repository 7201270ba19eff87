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
from enum import Enum, auto
from multiprocessing.connection import Connection, wait
from types import FrameType
from typing import Any, cast

from loguru import logger

from consumer.pool import WorkerPool
from shared import exitcodes
from shared.client import GodClient
from shared.config import Settings, format_address, hostname
from shared.errors import GodError, Interrupted
from shared.records import A_FAILED, A_HI, A_LO, DEFAULT_QUEUE, G_FIRST, G_HI, G_LO, G_PRODUCER, Ack, Grant, Run

LEASE_WAIT_S = 1.0  # seconds a lease call waits at god for the first task
BURST_WAIT_S = 0.3  # the same with --burst: an empty queue ends the run sooner
COLLECT_WAIT_S = 0.2  # seconds the collector waits for worker output per round
DRAIN_RETRY_S = 10.0  # seconds a draining consumer keeps trying to hand results back


class State(Enum):
    """Where a consumer is in its life."""

    STARTING = auto()
    RUNNING = auto()
    DRAINING = auto()
    STOPPED = auto()


class ColdStop(BaseException):
    """Raised by the second SIGINT/SIGTERM: stop now, let god serve our tasks again."""


class Consumer:
    """Runs tasks from god in ``processes`` worker processes until stopped (or, with burst, idle)."""

    def __init__(
        self,
        settings: Settings,
        *,
        task_spec: str,
        processes: int,
        prefetch: int,
        queues: tuple[str, ...] = (DEFAULT_QUEUE,),
        burst: bool = False,
        task_timeout: float | None = None,
        log_level: str = "INFO",
        log_json: bool = False,
    ) -> None:
        self.settings = settings
        self.task_spec = task_spec
        self.processes = processes
        self.queues = queues
        self.burst = burst
        self.name = f"{hostname()}:{os.getpid()}"
        self.state = State.STARTING
        self.reason = ""
        self.done = 0
        self.failed = 0
        self.pool = WorkerPool(mp.get_context("spawn"), task_spec=task_spec, consumer=self.name, processes=processes,
                               prefetch=prefetch, task_timeout=task_timeout, log_args=(log_level, log_json))
        self._lease_seq = 0
        self._signals = 0
        self._signal_name = ""
        self._fatal: GodError | None = None
        self._threads_stopped = threading.Event()  # set: the collector and heartbeat threads end
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

    @property
    def _threads_stop(self) -> bool:
        return self._threads_stopped.is_set()

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
            self._beat_client.connect()  # the handshakes take several round trips: not timed
            self._beat_client.connect()  # one round trip, timed (the next ones are heartbeats)
            self._note_rtt()
            self.pool.start()
            for target in (self._collect_loop, self._heartbeat_loop):
                t = threading.Thread(target=target, name=target.__name__, daemon=True)
                t.start()
                self._threads.append(t)
            self.state = State.RUNNING
            self._log.info("consumer {} running {} in {} processes on queues {}, god at {}", self.name, self.task_spec,
                           self.processes, ",".join(self.queues), format_address(self.settings.address))
            while self.state is State.RUNNING:
                self.step()
            self._wait_drained()
        except ColdStop:
            self._log.warning("consumer {}: second {}: stopping at once; god serves its tasks again", self.name,
                              self._signal_name)
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
        with self.pool.lock:
            want = self.pool.free_slots()
            if want <= 0:
                self.pool.room.wait(LEASE_WAIT_S)
                return
        self._lease_seq += 1
        try:
            tasks = self._lease_client.lease(self.queues, want, BURST_WAIT_S if self.burst else LEASE_WAIT_S,
                                             self._lease_seq)
        except Interrupted:
            if self._fatal is None and self._signals:
                return  # a stop was asked for while god was away: drain next round
            raise
        if tasks:
            self._dispatch(tasks)
        elif self.burst and self.pool.idle():
            self._begin_drain("the queue is empty (--burst)")

    def _begin_drain(self, reason: str) -> None:
        self.state, self.reason = State.DRAINING, reason
        self._drain_started = time.monotonic()
        self._log.info("consumer {}: {}; finishing running tasks, handing back the rest", self.name, reason)
        self.pool.drain()

    def _wait_drained(self) -> None:
        collector, beater = self._threads
        while collector.is_alive():  # short joins, so a second signal gets through
            collector.join(0.2)
        self._threads_stopped.set()  # no heartbeat may follow our goodbye
        beater.join()
        if self._fatal is None:
            try:
                self._ack_client.bye()
            except GodError:
                pass  # god will give us up when our lease runs out; nothing is held anyway
        self.state = State.STOPPED

    def _teardown(self) -> None:
        self._threads_stopped.set()
        self.pool.terminate()
        for c in self._clients:
            c.close()
        self.state = State.STOPPED

    def _fail(self, e: GodError) -> None:
        if self._fatal is None:
            self._fatal = e
        self._threads_stopped.set()

    def _dispatch(self, grants: list[Grant]) -> None:
        left = self.pool.dispatch(grants)
        if left:  # every worker died meanwhile and waits out its backoff: god serves them again
            self._lease_client.release([(g[G_PRODUCER], g[G_FIRST], g[G_LO], g[G_HI]) for g in left])

    # -- collector and heartbeat threads --------------------------------------------------

    def _collect_loop(self) -> None:
        try:
            while not self._threads_stop:
                self.pool.stop_overdue()
                self.pool.respawn_due()
                with self.pool.lock:
                    conns = {w.results_in: w for w in self.pool.workers}
                if not conns:
                    if not self.pool.waiting_to_respawn():
                        return  # every worker drained and gone
                    time.sleep(COLLECT_WAIT_S)
                    continue
                results: list[Ack] = []
                unstarted: list[Run] = []
                crashed: list[Run] = []
                for conn in cast(list[Connection], wait(list(conns), COLLECT_WAIT_S)):
                    w = conns[conn]
                    # Everything the worker sent: results pile up while an ack travels to god
                    # and back, and each one read frees room for the next lease. One message a
                    # round held a consumer 40 ms from god to a few tasks a round trip.
                    while True:
                        try:
                            msg: Any = conn.recv()
                        except (EOFError, OSError):
                            gone = self.pool.exited(w)
                            unstarted += gone.unstarted
                            crashed += gone.crashed
                            results += gone.timed_out
                            self._count(gone.timed_out)
                            break
                        if msg[0] == "results":
                            results += msg[1]
                            self.pool.took(w, msg[2], msg[3])
                            self._count(msg[1])
                        elif msg[0] == "unstarted":
                            unstarted += msg[1]
                            self.pool.drained(w)
                        try:
                            if not conn.poll():
                                break
                        except (EOFError, OSError):
                            pass  # the next recv says it ended
                if results:
                    self._ack_client.ack_many(results)
                if unstarted or crashed:
                    self._ack_client.release(unstarted, crashed)
        except GodError as e:
            self._fail(e)

    def _count(self, acks: list[Ack]) -> None:
        for a in acks:
            failed = len(a[A_FAILED])
            self.done += a[A_HI] - a[A_LO] - failed
            self.failed += failed

    def _note_rtt(self) -> None:
        """What the workers hold follows the round trip to god, as the heartbeats measure it (a
        beat that had to reconnect says nothing about it)."""
        seconds = self._beat_client.round_trip_s
        if seconds is None:
            return
        self._beat_client.round_trip_s = None
        rtt = self.pool.rtt_s
        self.pool.rtt_s = seconds if not rtt else 0.7 * rtt + 0.3 * seconds

    def _heartbeat_loop(self) -> None:
        try:
            # An event, not a polled flag: a stop ends the wait at once, and an idle consumer
            # does not wake twenty times a second to look.
            while not self._threads_stopped.wait(self._heartbeat_s):
                alive = self._beat_client.heartbeat()
                self._note_rtt()
                if not alive:
                    self._log.warning("god had given consumer {} up; its tasks were served again", self.name)
        except GodError as e:
            self._fail(e)
