"""The consumer process: starts its workers, keeps them, beats for them, drains them.

Workers lease, run and ack over their own connections (consumer/worker.py); no task
passes through here. The main thread watches the workers: a dead one is replaced at
once, and god is told which task it was running (``worker_lost``); a task over
--task-timeout has its worker stopped. The heartbeat thread keeps the leases of every
worker alive (god counts a worker alive while its consumer beats), whatever the tasks
are doing, and tells the workers the round trip it measures.
"""

from __future__ import annotations

import math
import multiprocessing as mp
import os
import signal
import threading
import time
from enum import Enum, auto
from types import FrameType

from consumer.policy import Policy
from consumer.values import values_cache
from shared.resources import of_host, shown
from consumer.pool import Lost, WorkerPool
from consumer.recycle import NO_RECYCLE, Recycle
from shared import exitcodes
from shared.client import GodClient
from shared.config import Settings, format_address, hostname
from shared.errors import GodError, Interrupted
from shared.log import count, logger
from shared.records import DEFAULT_QUEUE
from shared.wakeup import Wakeup

WATCH_S = 0.2  # seconds the main thread waits for a worker to end between other chores
DRAIN_RETRY_S = 10.0  # seconds a draining consumer keeps trying to tell god of a lost worker
BYE_S = 2.0  # seconds a consumer that stops keeps trying to say goodbye (its connection may need a new one)


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
        policy: Policy,
        processes: int,
        prefetch: int,
        concurrency: int = 1,
        queues: tuple[str, ...] = (DEFAULT_QUEUE,),
        burst: bool = False,
        idle_exit: float | None = None,
        task_timeout: float | None = None,
        recycle: Recycle = NO_RECYCLE,
        log_level: str = "INFO",
        log_json: bool = False,
    ) -> None:
        self.settings = settings
        self.policy = policy
        self.processes = processes
        self.queues = queues
        self.burst = burst
        self.idle_exit = idle_exit  # --idle-exit: drain and exit 0 once no task ran for this long
        self._active: tuple[tuple[int, ...], float] = ((), time.monotonic())  # the workers' counts, since when
        self.name = f"{hostname()}:{os.getpid()}"
        self.state = State.STARTING
        self.reason = ""
        self.pool = WorkerPool(mp.get_context("spawn"), settings, policy=policy, consumer=self.name,
                               queues=queues, processes=processes, prefetch=prefetch, concurrency=concurrency, burst=burst,
                               task_timeout=task_timeout, recycle=recycle, log_args=(log_level, log_json))
        self._signals = 0
        self._signal_name = ""
        self._rtt_s = 0.0  # a round trip to god, as the heartbeats measure it (smoothed)
        self._fatal: GodError | None = None
        self._threads_stopped = threading.Event()  # set: the heartbeat thread ends
        self._beater: threading.Thread | None = None
        self._wakeup: Wakeup | None = None
        self._log = logger.bind(role="consumer")
        self.concurrency = concurrency
        self.resources, self.gpus = of_host(dict(policy.resources))
        info = {"host": hostname(), "pid": os.getpid(), "processes": processes, "concurrency": concurrency,
                "queues": queues, "cache": values_cache(policy.cache_dir), "resources": self.resources,
                "gpus": self.gpus}
        self._drain_started: float | None = None
        self._bye_until = math.inf  # when saying goodbye gives up
        self._asked_to_drain = False  # an operator asked god to drain us (python -m god drain)
        self._stop: list[tuple[str, int]] = []  # cancelled tasks to stop, from the heartbeat thread
        self._client = GodClient(settings, name=self.name, role="consumer", info=info, should_stop=self._stop_calling)
        self._beat_client = GodClient(settings, name=self.name, role="consumer", info=info,
                                      should_stop=self._threads_stopped.is_set)

    # -- life cycle ----------------------------------------------------------------------

    def _stop_calling(self) -> bool:
        # While draining, telling god of a lost worker is worth a short wait, not an endless
        # one: god gives the worker up when our heartbeats stop.
        drain, now = self._drain_started, time.monotonic()
        return self._signals > 1 or (drain is not None and now - drain > DRAIN_RETRY_S) or now > self._bye_until

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
        self._wakeup = Wakeup()  # a signal ends the wait for the workers at once: a stop begins now
        self._heartbeat_s = 1.0
        code = exitcodes.OK
        try:
            hello = self._client.connect()
            self._heartbeat_s = float(hello.get("heartbeat_s", 1.0))
            self._beat_client.connect()  # the handshakes take several round trips: not timed
            self._beat_client.connect()  # one round trip, timed (the next ones are heartbeats)
            self._note_rtt()
            self.pool.start()
            self._beater = threading.Thread(target=self._heartbeat_loop, name="heartbeat", daemon=True)
            self._beater.start()
            self.state = State.RUNNING
            self._log.info("consumer {} running {}{} in {}{} on queues {}, with {}{}, god at {}", self.name,
                           self.policy.task, self.policy.shown(), count(self.processes, "process", "processes"),
                           f" of {self.concurrency} tasks at once" if self.concurrency > 1 else "",
                           ",".join(self.queues), shown(self.resources),
                           f" (GPUs {','.join(self.gpus)})" if self.gpus else "", format_address(self.settings.address))
            while self.state is not State.STOPPED:
                self.step()
            self._say_bye()
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
        done, failed = self.pool.counts()
        log = self._log.error if code not in (exitcodes.OK,) else self._log.info
        log("consumer {} stopped: {} (done {}, failed {})", self.name, self.reason, done, failed)
        return code

    def step(self) -> None:
        """One round of the main loop: watch the workers, drain when asked to, stop when all ended."""
        if self._signals and self.state is State.RUNNING:
            self._begin_drain(f"{self._signal_name} received")
        if self._fatal is not None and self.state is State.RUNNING:
            self._begin_drain(str(self._fatal))
        if self._asked_to_drain and self.state is State.RUNNING:
            self._begin_drain("god asked it to drain (python -m god drain)")
        if self.idle_exit is not None and self.state is State.RUNNING:
            self._exit_when_idle(self.idle_exit)
        pool = self.pool
        pool.stop_tasks(self._stop)
        pool.stop_overdue()
        pool.respawn_due()
        events = pool.watch(WATCH_S, self._wakeup)
        for w in events.ended:
            why = w.ended or ("drained",)
            if why[0] == "error" and self._fatal is None:
                self._fatal = _ended_error(str(why[1]), int(why[2]))
            elif why[0] == "empty" and self.state is State.RUNNING:
                self._begin_drain("the queue is empty (--burst)")
        for lost in events.lost:
            self._tell(lost)
        if not pool.workers and not pool.waiting_to_respawn():
            self.state = State.STOPPED

    def _exit_when_idle(self, idle_s: float) -> None:
        """Drain (and so exit 0) once the workers started and finished nothing for idle_s."""
        counts, running = self.pool.activity()
        now = time.monotonic()
        if running or counts != self._active[0]:
            self._active = counts, now
        elif now - self._active[1] >= idle_s:
            self._begin_drain(f"no task for {idle_s:g}s (--idle-exit)")

    def _tell(self, lost: Lost) -> None:
        """Tell god a worker died (or was stopped), so what it held is served again now."""
        try:
            self._client.worker_lost(lost.worker.name, lost.running, lost.timed_out)
        except Interrupted:
            pass  # stopping: god gives the worker up when our heartbeats end

    def _begin_drain(self, reason: str) -> None:
        self.state, self.reason = State.DRAINING, reason
        self._drain_started = time.monotonic()
        self._log.info("consumer {}: {}; finishing running tasks, handing back the rest", self.name, reason)
        self.pool.drain()

    def _say_bye(self) -> None:
        self._threads_stopped.set()  # no heartbeat may follow our goodbye
        if self._beater is not None:
            self._beater.join()
        if self._fatal is None:
            # Tried for BYE_S at most: the workers handed back what they held, so a god that
            # is away (restarting, gone) loses nothing by not hearing it, and gives us up when
            # our heartbeats stay away; a stop does not wait for it to come back.
            self._bye_until = time.monotonic() + BYE_S
            try:
                self._client.bye()
            except GodError:
                pass

    def _teardown(self) -> None:
        if self._wakeup is not None:
            self._wakeup.close()
            self._wakeup = None
        self._threads_stopped.set()
        self.pool.terminate()
        for c in (self._client, self._beat_client):
            c.close()
        self.state = State.STOPPED

    def _note_rtt(self) -> None:
        """What the workers hold follows the round trip to god, as the heartbeats measure it (a
        beat that had to reconnect says nothing about it)."""
        seconds = self._beat_client.round_trip_s
        if seconds is None:
            return
        self._beat_client.round_trip_s = None
        rtt = self._rtt_s
        self._rtt_s = seconds if not rtt else 0.7 * rtt + 0.3 * seconds
        self.pool.set_rtt(self._rtt_s)

    def _heartbeat_loop(self) -> None:
        try:
            # An event, not a polled flag: a stop ends the wait at once, and an idle consumer
            # does not wake twenty times a second to look.
            while not self._threads_stopped.wait(self._heartbeat_s):
                alive, orders = self._beat_client.heartbeat()
                self._note_rtt()
                self._asked_to_drain = bool(orders.get("drain"))
                self._stop = [(str(p), int(seq)) for p, seq in orders.get("stop", ())]
                if not alive:
                    self._log.warning("god had given consumer {} up; its tasks were served again", self.name)
        except GodError as e:
            # A beat cut short because we stop (a god away, retried) is no failure of ours.
            if self._fatal is None and not self._threads_stopped.is_set():
                self._fatal = e


def _ended_error(message: str, code: int) -> GodError:
    e = GodError(message)
    e.exit_code = code
    return e
