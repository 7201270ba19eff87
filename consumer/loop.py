"""The worker's lease/ack loop: leases tasks from god over its own connection, acks them.

A task crosses god, worker, god and nothing else. Each ack carries the next lease in the
same round trip (``ack_lease``), sent while the tasks in hand still run, so the worker
rarely waits for god. Between tasks the loop reads god's reply and its consumer's pipe
(``look``); what runs the tasks, one at a time (consumer/serial.py) or up to --concurrency
at once (consumer/concurrent.py), calls it.
"""

from __future__ import annotations

import os
import time
from collections import deque
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any

from consumer.acks import CANCELLED, Acks, in_frames
from consumer.calls import Calls
from consumer.functions import Functions
from consumer.output import Capture, Key, Streamer, current_call, install
from consumer.places import Shared
from consumer.policy import Policy, unloadable
from consumer.recycle import Recycle
from consumer.values import CACHE_BYTES, Fetcher, folder_of, set_fetcher
from shared import items
from shared.client import GodClient, SideClient
from shared.config import Settings, hostname
from shared.log import logger
from shared.records import (
    A_FAILED, A_HI, A_LO, G_FIRST, G_HI, G_LO, G_PAYLOADS, G_PRODUCER, MAX_PAYLOAD, Ack, Grant, Value,
)
from shared.transport import Readable

FLUSH_S = 0.02  # seconds a finished result may wait to be sent with the next ones
LEASE_WAIT_S = 1.0  # seconds a lease waits at god for the first task when the worker has none
BURST_WAIT_S = 0.3  # the same with --burst: an empty queue ends the run sooner
IDLE_LOOK_S = 0.05  # how often a worker waiting for god's reply looks at its consumer's pipe
TARGET_QUEUED_S = 0.05  # seconds of work kept in hand (sizes each lease) ...
RTT_QUEUED = 5.0  # ... or this many round trips to god, if longer: work in hand while results, acks and
# the next lease travel (a result waits up to a flush and the ack's round trip)

# The consumer sends ("drain",): finish the running task, ack, hand back the rest, and end;
# ("stop", producer, seq): a task cancelled at god: skip it if held, cancel it if a coroutine
# runs it, give up its thread (and be replaced) if a thread does; one worker running it alone
# is killed by its consumer.
# Its pipe closing means it is gone: end at once (god serves our tasks again).
# The worker sends, last, ("ended", why): "drained", "empty" (--burst), "replace" (a task thread
# ran over --task-timeout and runs on: start another worker), or ("error", message, exit code).


@dataclass(frozen=True)
class WorkerSpec:
    """What a worker process is started with."""

    settings: Settings
    name: str  # its name at god: its consumer's, a slash, its index
    consumer: str
    policy: Policy
    queues: tuple[str, ...]
    prefetch: int
    burst: bool
    concurrency: int  # tasks run at once
    task_timeout: float | None
    recycle: Recycle
    log_level: str
    log_json: bool


#: A task running concurrently: (grant, seq, payload, monotonic start, token, a coroutine).
Started = tuple[Grant, int, Any, float, int, bool]
#: A task that ended: (grant, seq, payload, outcome, exception or None).
Finished = tuple[Grant, int, Any, Value, "BaseException | None"]


def _listed(g: Grant, policy: Policy, consumer: str) -> Grant:
    """The grant with its payloads as a list (god sends a whole batch as the producer's blob,
    shared/items.py, and a part of one as it holds it loaded), loaded as the policy allows
    (with --no-by-value, a payload that is not data is an ``Unloadable``, its task's failure)."""
    payloads = g[G_PAYLOADS]
    if type(payloads) is list:
        return g
    fail = None if policy.by_value else unloadable(consumer, by_value=False)
    listed: Any = items.unpack(payloads, fail, policy.loads)
    return (*g[:G_PAYLOADS], listed, *g[G_PAYLOADS + 1 :])


class Worker:
    """The state of one worker process and its lease/ack loop; see the module's docstring."""

    def __init__(self, spec: WorkerSpec, control: Connection, shared: Shared, running: Any) -> None:
        self.spec = spec
        self.control = control
        self._control_readable = Readable(control)  # (Connection.poll makes a selector each time: 8 us)
        self.shared = shared
        self.running = running  # Running[concurrency], in memory the consumer reads
        self.fns = Functions(spec.policy, spec.consumer)
        self.client = GodClient(spec.settings, name=spec.name, role="consumer",
                                info={"host": hostname(), "pid": os.getpid(), "parent": spec.consumer},
                                should_stop=self._told)
        self.todo: deque[Grant] = deque()  # leased runs, payloads as lists; todo[0] from seq at
        self.at = 0
        self.held = 0  # tasks in todo not started yet
        self.busy: dict[int, Started] = {}  # place -> the task running there (--concurrency over 1)
        self.finished: list[Finished] = []  # results of those, not in acks yet
        self.acks = Acks(spec.consumer, self.fns, lambda: self.client.server_info.get("results_payload_max"),
                         self._frame_max)
        self.draining = False
        self.gone = False  # the consumer's pipe closed
        self.avg_task_s: float | None = None
        self.spent = 0.0  # seconds of task time since the last lease was sized
        self.ran = 0  # tasks in that time
        self.lease_seq = 0
        self.last_send = self.told_at = time.monotonic()
        self.asked: deque[tuple[int, bool]] = deque()  # calls in flight: (tasks asked for, a lease that waits at god)
        self.more = True  # the last lease got all it asked for: more may wait at god
        self.why = "drained"  # why the loop ended, for the consumer
        self.skip: set[tuple[str, int]] = set()  # (producer, seq) of tasks cancelled at god: not to run
        self.calls: Calls | None = None  # with --concurrency over 1: what runs the tasks (consumer/concurrent.py)
        self.capture: Capture | None = None  # what tasks write, with --capture (consumer/output.py)
        self.streamer: Streamer | None = None
        # Lines of running tasks and large values go on a connection of their own, made at first need
        self.side = SideClient(spec.settings, name=spec.name, role="consumer", info=self.client.info,
                               should_stop=lambda: self.gone)
        policy = spec.policy  # large values (consumer/values.py), in the host's cache
        self.fetcher = Fetcher(self.side.call, spec.name, folder_of(policy.cache_dir),
                               policy.cache_mb << 20 if policy.cache_mb is not None else CACHE_BYTES, self.side)
        set_fetcher(self.fetcher)
        if spec.policy.capture:
            self.capture = Capture(self._writer_serial if spec.concurrency == 1 else self._writer_concurrent)
            install(self.capture)
            self.streamer = Streamer(self.capture, self._stream)

    # -- output (consumer/output.py) ------------------------------------------------------

    def _writer_serial(self) -> Key | None:
        """The task a write is for, one task at a time: the one running, whoever writes."""
        place = self.running[0]
        seq = place.seq
        return (place.producer.decode(), seq) if seq >= 0 else None

    def _writer_concurrent(self) -> Key | None:
        """The task a write is for, with --concurrency: the call of the thread or coroutine that writes."""
        key = current_call.get()
        started = self.busy.get(key[0]) if key is not None else None
        if started is None or started[4] != key[1]:
            return None
        return started[0][G_PRODUCER], started[1]

    def _stream(self, items: list[Any]) -> None:
        """A running task's lines, sent on their own (the streamer's thread, the side connection)."""
        self.side.call("output", self.spec.name, items)

    def _send_output(self) -> None:
        """What tasks wrote, ahead of their results, on the worker's connection."""
        assert self.capture is not None
        running = None
        if self.busy:
            keys = {(started[0][G_PRODUCER], started[1]) for started in self.busy.values()}
            running = keys.__contains__
        with self.capture.sending:
            while True:
                items = self.capture.take(running)
                if not items:
                    return
                self.asked.append((-1, False))  # (its answer is read as any other's, and skipped)
                self.client.send("output", self.spec.name, items)

    def close(self) -> None:
        """End the worker's connections."""
        if self.streamer is not None:
            self.streamer.stop()
        self.side.close()
        self.client.close()

    def _told(self) -> bool:
        """Whether the consumer said to drain or went away (reads its pipe)."""
        if not (self.draining or self.gone):
            try:
                while self._control_readable(0.0):
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
            if coroutine and self.calls is not None:
                self.calls.cancel((i, token))  # it ends as a CancelledError, its result a duplicate at god
                continue
            del self.busy[i]  # a thread cannot be stopped: give it up, and be replaced
            self.running[i].seq = -1
            self.finished.append((g, s, payload, CANCELLED, None))
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

    def _send(self, want: int | None = None) -> None:
        """Ack what is done and lease what there is room for (or ``want`` tasks), in one call
        whose reply comes later. With no task in hand and a place free, the lease waits at god
        for the first task; results sent behind it end its wait (god/transport/hub.py)."""
        if self.ran:
            per_task = self.spent / self.ran
            self.avg_task_s = per_task if self.avg_task_s is None else 0.8 * self.avg_task_s + 0.2 * per_task
            self.spent, self.ran = 0.0, 0
        self._add_finished()
        if self.capture is not None and self.capture.pending:
            self._send_output()
        out, _ = self.acks.take()
        for a in out:
            failed = len(a[A_FAILED])
            self.shared.done += a[A_HI] - a[A_LO]
            self.shared.failed += failed
        if want is None:
            want = 0 if self.draining else max(0, self._slots() - self.held)
        if self.spec.recycle.tasks is not None:  # never hold more than it may still run
            want = min(want, max(0, self.spec.recycle.tasks - self.shared.tasks - self.held))
        wait = (BURST_WAIT_S if self.spec.burst else LEASE_WAIT_S) if self._free() and want > 0 else 0.0
        frames = in_frames(out, self._frame_max()) if len(out) > 1 else [out]
        for part in frames[:-1]:  # (acks over what one request may hold: each part its own call)
            self._ack_lease(part, 0, 0.0)
        self._ack_lease(frames[-1], want, wait)
        self.last_send = time.monotonic()

    def _ack_lease(self, acks: list[Ack], want: int, wait: float) -> None:
        self.lease_seq += 1
        self.asked.append((want, wait > 0))
        self.client.send("ack_lease", self.spec.name, acks, self.spec.queues, want, wait, self.lease_seq)

    def _frame_max(self) -> int:
        """The most a request's acks may take: god's --max-payload (it says so on connecting)."""
        return int(self.client.server_info.get("max_payload") or MAX_PAYLOAD)

    def _read_reply(self) -> list[Grant]:
        """Read the reply to the oldest call in flight: the tasks it leased, now held."""
        grants: list[Grant] = self.client.reply()
        asked, _ = self.asked.popleft()
        if asked < 0:  # an output call's: how many items god took
            return []
        self.more = sum(g[G_HI] - g[G_LO] for g in grants) >= asked > 0
        self._take(grants)
        return grants

    def _free(self) -> bool:
        """Whether a task would start now: nothing in hand, a place free."""
        return not self.held and len(self.busy) < self.spec.concurrency

    def _parked(self) -> bool:
        """Whether the one call in flight is a lease that waits at god (a drain, or results,
        end its wait: they are sent behind it)."""
        return len(self.asked) == 1 and self.asked[0][1]

    def _take(self, grants: list[Grant]) -> None:
        for g in grants:
            if not self.todo:
                self.at = g[G_LO]
            self.todo.append(_listed(g, self.spec.policy, self.spec.consumer))
            self.held += g[G_HI] - g[G_LO]

    def look(self) -> bool:
        """Between tasks: read god's reply if it came (wait for it when idle), start the next
        call when due. False: the worker is to end."""
        client = self.client
        now = time.monotonic()
        idle = not self.held and not self.busy
        if idle or now - self.told_at >= FLUSH_S:  # (a poll costs as much as a few tiny tasks)
            self.told_at = now
            if self._told() and self.gone:
                return False
        pending = bool(self.acks.lines or self.acks.done or self.finished)
        if client.sent:
            while not client.ready(IDLE_LOOK_S if idle else 0.0):
                # A lease waits at god (places are free here): results, or a drain, go behind
                # it, asking for nothing, and end its wait there.
                if self._parked() and (self.draining or pending):
                    self._send(want=0)
                if not idle:
                    return True
                if self._told() and self.gone:
                    return False
            grants = self._read_reply()
            if client.sent:
                return True  # the next reply in a later look
            if not grants and not self.held and not self.busy and self.spec.burst and not self.draining:
                self.draining = True  # the queue is empty: end as a drain does
                self.why = "empty"
        if not self.draining and self._recycle_due():
            self.draining, self.why = True, "replace"
        if self.draining:
            if self.busy:
                return True  # running tasks finish first
            self._send()  # the last results; no lease
            while client.sent:
                self._read_reply()
            client.bye()  # what we still hold goes back, unstarted
            return False
        # Lease ahead while tasks run, but only while god has more: asked again at once, a
        # queue god just emptied answers "nothing", and the results wait for that answer
        # (a round trip more for each lone task). With a place free and nothing in hand, a
        # lease waits at god, so that a task put meanwhile starts at once.
        slots = self._slots()
        if self._free() or (self.more and slots - self.held >= max(1, slots // 2)) or (
                pending and time.monotonic() - self.last_send >= FLUSH_S):
            self._send()
        return True

    def _recycle_due(self) -> bool:
        """Whether this worker is to be replaced: it ran --max-tasks-per-worker tasks, or its RSS
        passed --max-worker-memory (said once, as it begins to drain)."""
        why = self.spec.recycle.due(self.shared.tasks)
        if why is None:
            return False
        logger.bind(role="consumer").info("worker {} (pid {}) {}: replacing it once its running tasks end",
                                          self.spec.name, os.getpid(), why)
        return True

    def advance(self, n: int) -> None:
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

