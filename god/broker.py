"""Task rules: batches on named queues with priorities, leases, acks, dedupe, redelivery, dead letters.

A producer's put stays one unit from the wire to the journal: a ``Batch`` with the
producer's name, a range of sequence numbers and its payloads as the one pickled blob the
producer sent. Queues hold ``Slice``s (a run of a batch), a lease hands out slices, an ack
settles a run; which tasks of a batch are done is one byte each in a bytearray, read and
written with C calls over whole runs. Per-task Python objects exist only on the paths of
exceptions: a slice carved for a redelivery, a batch whose payloads are unpickled because
it is leased in parts, a dead letter.

A plain object with one lock: no sockets, no threads and no waiting of its own. Calls
return at once; a caller that waits for tasks, room or results parks in ``god/waits.py``,
which ``on_change`` wakes. The clock is injected, so tests expire leases without sleeping.
"""

from __future__ import annotations

import heapq
import itertools
import json
import math
import pickle
import random
import secrets
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any, Protocol

from loguru import logger

from god.batches import Batch, Bucket, Queue, Slice, runs_of
from god.dead import DEAD_KEEP, DeadJournal, DeadLetter, DeadLetters, shown
from god.schedules import Schedule, check_name, parse_cron
from god.mailbox import Mailboxes, Posted
from god.peers import ConsumerState, Peers
from shared.records import (
    A_FAILED, A_FIRST, A_HI, A_LINES, A_LO, A_PRODUCER, A_VALUES, DEFAULT_QUEUE, F_AFTER, F_NAME, F_SEQ, PUT_FIRST,
    PUT_DUE, PUT_N, PUT_PAYLOADS, PUT_PRIORITY, PUT_QUEUE, PUT_RETRY, PUT_TASK, R_FIRST, R_HI, R_LO, R_PRODUCER, RP_BACKOFF,
    RP_MAX_BACKOFF, RP_ON, RP_RETRIES, Ack, Failed,
    Grant, Put, Run, Value,
    json_line, split_id, task_id,
)
from shared.log import count
from shared.stats import ConsumerFigures, ProducerFigures, QueueFigures, Stats

LEASE_S = 5.0  # seconds without a heartbeat before a consumer's tasks are served again
BEATS_PER_LEASE = 5  # consumers beat this many times per lease period
CAPACITY = 1_000_000  # tasks waiting, all queues together, before producers are made to wait
MAX_PAYLOAD = 16 * 2**20  # bytes of one pickled payload; producers check before sending
MAX_ATTEMPTS = 3  # leases of one task whose consumer dies before it is dead-lettered
CANCELLED = "cancelled by an operator (python -m god cancel)"  # the error of a cancelled task's result
FAILED_KEEP = 1_000  # recent failed results kept for ``failed``
TRACEBACK_CHARS = 4_000  # of a failure's traceback kept there
#: Seconds god remembers a producer it no longer hears from: a put it sends again within
#: that time is recognised as sent before. Its client gives up after --give-up-after (180 s
#: by default), so a re-send comes long before; the memory is a dict entry per producer.
DEDUPE_WINDOW_S = 86_400.0
WARN_AFTER_S = 600.0  # seconds a consumer may hold a task before god warns (once) that it is stuck
FORGET_JOURNAL_EVERY_S = 60.0  # seconds between forgetting such producers in the journal too
TUTORIAL = "tutorial"  # producer name prefix of tasks put through the queue views

_ONE = b"\x01"


#: Tries of a run of a batch's offsets, as recovered: (lo, hi, tries, retries, due or None).
Tries = tuple[int, int, int, int, "float | None"]
#: Tries of a run, as the journal keeps them: (producer, first, lo, hi, tries, retries,
#: wall-clock time its retry is due or None).
Attempts = tuple[str, int, int, int, int, int, "float | None"]


class JournalLike(DeadJournal, Protocol):
    """What the broker tells the journal, under its lock (god/journal.py)."""

    @property
    def ticket(self) -> int: ...

    def add_batch(self, producer: str, put: Put, origin: list[str] | None = None) -> int: ...

    def add_done(self, runs: list[Run]) -> int: ...

    def committed(self, ticket: int) -> bool: ...

    def set_attempts(self, rows: list[Attempts]) -> int: ...

    def set_limit(self, queue: str, rate: float | None) -> int: ...

    def set_paused(self, queue: str, paused: bool) -> int: ...

    def set_schedule(self, s: Schedule) -> int: ...

    def drop_schedule(self, name: str) -> int: ...

    def forget_producers(self, before: float) -> int: ...


#: What the monitor takes: result lines (each ending in a newline) and the runs they settle.
Outgoing = tuple[str, list[Run]]


def _nothing() -> None:
    pass


class Broker:
    """Queues, leases and results with at-least-once delivery and one result per task id."""

    def __init__(
        self,
        *,
        capacity: int = CAPACITY,
        lease_s: float = LEASE_S,
        max_attempts: int = MAX_ATTEMPTS,
        max_payload: int = MAX_PAYLOAD,
        now: Callable[[], float] = time.monotonic,
        journal: JournalLike | None = None,
        on_change: Callable[[], None] = _nothing,
        figures: Callable[[], dict[str, int]] = dict,
        dedupe_window_s: float = DEDUPE_WINDOW_S,
        dead_keep: int = DEAD_KEEP,
        warn_after_s: float | None = WARN_AFTER_S,
        wall: Callable[[], float] = time.time,
    ) -> None:
        """Args:
            journal: told of every accepted batch, settled handout and counted attempt.
            on_change: called after a change that may let a waiting call go on (tasks to
                lease, room to put, results to fetch).
            figures: more counts for ``stats`` (the door's connections and refusals).
            dedupe_window_s: how long a producer not heard from is remembered (its last seq).
            dead_keep: dead letters kept, the oldest let go first.
            warn_after_s: a task held by a consumer longer than this is reported once by ``reap``.
            wall: the Unix time, for schedules (injected too, for tests).
        """
        self.capacity = capacity
        self.lease_s = lease_s
        self.max_attempts = max_attempts
        self.max_payload = max_payload
        self.dedupe_window_s = dedupe_window_s
        self.warn_after_s = warn_after_s
        self.journal = journal
        self._now = now
        self._wall = wall
        self._on_change = on_change
        self._figures = figures
        self._started = now()
        self._lock = threading.Lock()
        self.results_ready = threading.Event()  # set when results wait for the monitor
        self.peers = Peers()
        self.mailboxes = Mailboxes()  # results kept for producers that wait for theirs
        self._queues: dict[str, Queue] = {}
        self._batches: dict[tuple[str, int], Batch] = {}  # batches with tasks not done yet
        self._upto: dict[str, int] = {}  # per producer: the last seq taken (re-sent puts are dupes)
        self._finished: list[tuple[str, int]] = []  # batches done since take_results (journal: to release)
        self.schedules: dict[str, Schedule] = {}
        self._heard: dict[str, float] = {}  # producers in _upto by when they last put, oldest first
        self._forgot_at = now()  # when the journal last forgot producers
        self._pending = 0  # tasks waiting, all queues
        self._outbox: list[Outgoing] = []
        self.dead = DeadLetters(dead_keep, journal)
        self._failed: deque[dict[str, Any]] = deque(maxlen=FAILED_KEEP)  # recent failed results, oldest first
        self._counts = dict.fromkeys(("accepted", "done", "failed", "dead", "duplicates", "redelivered",
                                      "handed_out", "retried", "forgotten", "unknown_puts", "cancelled"), 0)
        self._scheduled: list[tuple[float, int, Slice]] = []  # a heap: (due on the clock, order, slice)
        self._order = itertools.count()  # ties in the heap go first in, first out
        self.run = secrets.token_hex(6)  # this god's life: restarts get another

    # -- helpers (lock held) ------------------------------------------------------------

    def _queue(self, name: str) -> Queue:
        q = self._queues.get(name)
        if q is None:
            q = self._queues[name] = Queue(name)
        return q

    def _take(self, producer: str, put: Put, keep: bool, blob: bytes | None, payloads: list[Any] | None,
              origin: list[str] | None = None) -> int:
        """Queue a batch if there is room: its ticket (0 without a journal), or -1 if full."""
        if self._pending >= self.capacity:
            return -1
        n = put[PUT_N]
        b = Batch(producer, put[PUT_FIRST], n, put[PUT_QUEUE], put[PUT_TASK], put[PUT_PRIORITY], blob, keep,
                  self._now(), put[PUT_RETRY], payloads, origin)
        self._batches[b.key] = b
        self._upto[producer] = put[PUT_FIRST] + n - 1
        self._place(Slice(b, 0, n, 0), put[PUT_DUE], first=False)
        self._counts["accepted"] += n
        return self.journal.add_batch(producer, put, origin) if self.journal is not None else 0

    def _place(self, s: Slice, due: float | None, *, first: bool) -> None:
        """A waiting slice goes on its queue (at the front of its level with first), or, when
        due is a Unix time still to come, waits for it off the queue."""
        b = s.batch
        q = self._queue(b.queue)
        n = s.hi - s.lo
        wait = due - time.time() if due is not None else 0.0
        if wait > 0:
            b.later.append(s)
            heapq.heappush(self._scheduled, (self._now() + wait, next(self._order), s))
            q.scheduled += n
            return
        level = q.levels[b.priority]
        level.appendleft(s) if first else level.append(s)
        q.pending += n
        self._pending += n

    def _settle(self, b: Batch, lo: int, hi: int) -> None:
        """Offsets [lo, hi) of b, none done before, are done now: count them off where they were."""
        b.done[lo:hi] = _ONE * (hi - lo)
        b.left -= hi - lo
        held = 0
        for s in list(b.out):
            overlap = min(s.hi, hi) - max(s.lo, lo)
            if overlap > 0:
                held += overlap
                if b.done.find(0, s.lo, s.hi) == -1:  # all of the slice is done
                    b.out.remove(s)
                    if s.owner is not None:
                        s.owner.leased.pop(s, None)
        later = 0  # a late result for a task waiting for its retry's time
        for s in b.later:
            later += max(0, min(s.hi, hi) - max(s.lo, lo))
        q = self._queues[b.queue]
        q.in_flight -= held
        q.scheduled -= later
        waiting = hi - lo - held - later  # a late result for a task that waited to be served again
        q.pending -= waiting
        self._pending -= waiting
        if b.left == 0:
            del self._batches[b.key]
            if self.journal is not None:
                self._finished.append(b.key)

    def _unlease(self, s: Slice) -> None:
        b = s.batch
        if s in b.out:
            b.out.remove(s)
        if s.owner is not None:
            s.owner.leased.pop(s, None)

    def _requeue(self, s: Slice, *, counted: bool, reason: str, avoid: ConsumerState | None = None,
                 alone: bool = False) -> int:
        """A leased slice goes back to the front of its level, or to the dead letters once its
        tasks were served max_attempts times; returns how many went back. ``avoid``: a consumer
        not to serve it again while another can (its worker died running it)."""
        b = s.batch
        runs = b.undone(s.lo, s.hi)
        if counted and runs and s.tries - s.retried >= self.max_attempts:  # deaths, not retries
            self._dead_letter(b, runs, f"{reason}; {count(s.tries, 'attempt')}", s.tries)  # settles s as well
            return 0
        self._unlease(s)
        total = sum(hi - lo for lo, hi in runs)
        if not total:
            return 0
        self._queues[b.queue].in_flight -= total
        tries = s.tries if counted else s.tries - 1
        for lo, hi in reversed(runs):
            self._place(Slice(b, lo, hi, tries, retried=s.retried, avoid=avoid, alone=alone or s.alone), None, first=True)
        self._counts["redelivered"] += total
        if counted and self.journal is not None:
            self.journal.set_attempts([(b.producer, b.first, b.first + lo, b.first + hi, tries, s.retried, None)
                                       for lo, hi in runs])
        return total

    def _dead_letter(self, b: Batch, runs: list[tuple[int, int]], reason: str, attempts: int) -> None:
        error = f"dead letter: {reason}"
        payloads = b.payload_list()
        at = time.time()
        letters = []
        for lo, hi in runs:
            lines = []
            for i in range(lo, hi):
                tid = task_id(b.producer, b.first + i)
                lines.append(json_line(tid, payloads[i], False, None, error, None, "god", attempts, at, b.queue,
                                       b.task) + "\n")
                letters.append(DeadLetter(tid, b.queue, b.task, b.priority, b.retry, shown(payloads[i]), reason,
                                          attempts, at, pickle.dumps(payloads[i], pickle.HIGHEST_PROTOCOL)))
            dead: Value = (False, None, error, None)
            values = [dead] * (hi - lo) if b.keep else None
            self._record(b, lo, hi, "".join(lines), values, "god", attempts)
            self._settle(b, lo, hi)
            n = hi - lo
            self._counts["dead"] += n
            self._queues[b.queue].dead += n
        self.dead.add(letters)
        self.results_ready.set()

    def _record(self, b: Batch, lo: int, hi: int, lines: str, values: list[Value] | bytes | None,
                consumer: str, attempt: int) -> None:
        """Results for offsets [lo, hi) of b: to the monitor, and to whoever waits for the values."""
        first = b.first
        if b.origin is not None:  # served again from dead letters: each line says which
            lines = "".join(f'{line[:-1]}, "requeued_from": {json.dumps(tid)}}}\n'
                            for line, tid in zip(lines.splitlines(), b.origin[lo:hi]))
        self._outbox.append((lines, [(b.producer, first, first + lo, first + hi)]))
        if values is None or not b.keep:
            return
        blob = values if isinstance(values, bytes) else pickle.dumps(values, pickle.HIGHEST_PROTOCOL)
        self.mailboxes.post(b.producer, (first + lo, first + hi, blob, consumer, attempt))

    def _grant(self, c: ConsumerState, b: Batch, lo: int, hi: int, w: Slice) -> tuple[Slice, Grant]:
        """Lease [lo, hi) of b, out of the waiting slice w, to c."""
        s = Slice(b, lo, hi, w.tries + 1, c, w.retried, alone=w.alone, since=self._now())
        b.out.append(s)
        c.leased[s] = None
        return s, (b.producer, b.first, b.first + lo, b.first + hi, w.tries + 1, b.payloads_of(lo, hi), b.task,
                   b.queue, b.keep, w.alone)

    def _lease_now(self, c: ConsumerState, queues: tuple[str, ...], max_n: int) -> list[tuple[Slice, Grant]]:
        """Lease up to max_n waiting tasks to c: queues in order, higher priority first."""
        out: list[tuple[Slice, Grant]] = []
        want = max_n
        for name in queues:
            q = self._queues.get(name)
            if q is None or q.pending <= 0 or q.paused:
                continue
            others: bool | None = None  # whether another consumer alive serves q (asked when needed)
            room = want
            if q.limit is not None:  # exact across consumers: god hands out every task
                room = min(want, q.limit.refill(self._now()))
                if room <= 0:
                    continue
            for level in reversed(q.levels):
                i = 0
                while room > 0 and i < len(level):
                    s = level[i]
                    if s.avoid is c.top:  # it killed one of this consumer's workers: another's, if any
                        if others is None:
                            others = any(o is not c.top for o in self.peers.serving(name))
                        if others:
                            i += 1
                            continue
                    b = s.batch
                    if s.hi - s.lo > room:  # lease the front of it; the rest waits on
                        lo, hi = s.lo, s.lo + room
                        s.lo = hi
                    else:
                        if i:
                            del level[i]
                        else:
                            level.popleft()
                        lo, hi = s.lo, s.hi
                    for rlo, rhi in b.undone(lo, hi):  # late results may have settled some
                        out.append(self._grant(c, b, rlo, rhi, s))
                        n = rhi - rlo
                        want -= n
                        room -= n
                        if q.limit is not None:
                            q.limit.tokens -= n
                        q.pending -= n
                        q.in_flight += n
                        self._pending -= n
                if want <= 0:
                    return out
        return out

    # -- what clients call (god/api.py) -------------------------------------------------

    def hello_consumer(self, name: str, host: str, processes: int, queues: tuple[str, ...] | None = None,
                       parent: str | None = None, concurrency: int = 1) -> None:
        """A consumer says who it is; or a worker process of consumer ``parent`` does."""
        with self._lock:
            if parent is not None:
                self.peers.worker(name, parent, self._now())
                return
            c = self.peers.consumer(name, self._now())
            c.host, c.processes, c.concurrency = host, processes, concurrency
            if queues is not None:
                c.queues = queues

    def hello_producer(self, name: str, host: str, results: bool) -> None:
        """A producer says who it is, and whether god should keep its results for it."""
        with self._lock:
            self.peers.producer(name, self._now()).host = host
        if results:
            self.mailboxes.open(name)

    def offer(self, producer: str, put: Put, after: int | None = None) -> tuple[bool, int]:
        """Take a batch whole if there is room (a re-sent one is taken care of already).

        ``after``: the batch was sent behind others not confirmed yet, and follows the one
        that ends at that seq: it is taken only if that one was (a producer's batches are
        taken in order, so "all up to N" is all god must remember of them).

        Returns:
            (taken, the journal ticket its confirmation waits for; 0: none; -1: not taken,
            for the batch before it was not).
        """
        with self._lock:
            now = self._now()
            p = self.peers.producer(producer, now)
            self._heard.pop(producer, None)
            self._heard[producer] = now
            upto = self._upto.get(producer, 0)
            if upto == 0 and put[PUT_FIRST] > 1 and not producer.startswith(TUTORIAL):
                self._unknown_put(producer, put[PUT_FIRST])
            if put[PUT_FIRST] <= upto:
                p.duplicates += put[PUT_N]
                return True, self.journal.ticket if self.journal is not None else 0
            if after is not None and after != upto:
                return False, -1
            ticket = self._take(producer, put, producer in self.mailboxes, put[PUT_PAYLOADS], None)
            if ticket < 0:
                return False, 0
            p.put += put[PUT_N]
        self._on_change()
        return True, ticket

    def _run_schedules(self, now: float) -> int:
        """Put the task of each schedule due at Unix time now; a schedule missed for several
        periods (god was down) runs once. Returns how many were put (lock held)."""
        n = 0
        for s in self.schedules.values():
            if s.next > now:
                continue
            first = s.runs + 1
            if first > self._upto.get(s.producer, 0):  # (else put already, before a crash: not again)
                put: Put = (first, 1, s.payload, s.queue, s.task, 0, None, None)
                if self._take(s.producer, put, False, s.payload, None) < 0:
                    continue  # god is full: tried again at the next look
                n += 1
            s.runs, s.next = first, s.after(now)
            if self.journal is not None:
                self.journal.set_schedule(s)
        return n

    def schedule_add(self, name: str, every: float | None, cron: str | None, queue: str, task: str | None,
                     payload: Any) -> dict[str, Any]:
        """Put a task every so many seconds, or at the times of a crontab line; journaled.

        Raises:
            ValueError: a name taken, a bad name, period or crontab line.
        """
        check_name(name)
        if (every is None) == (cron is None):
            raise ValueError("a schedule runs every N seconds or at the times of a crontab line: one of them")
        if every is not None and not (isinstance(every, (int, float)) and math.isfinite(every) and every >= 1):
            raise ValueError(f"every {every!r}: expected seconds, 1 or more")
        blob = pickle.dumps([payload], pickle.HIGHEST_PROTOCOL)
        with self._lock:
            if name in self.schedules:
                raise ValueError(f"schedule {name} exists already: remove it first")
            now = self._wall()
            first = parse_cron(cron).next_after(now) if cron is not None else now + float(every or 0)
            s = self.schedules[name] = Schedule(name, float(every) if every is not None else None, cron, queue, task,
                                                blob, first)
            if self.journal is not None:
                self.journal.set_schedule(s)
            return s.figures(payload)

    def schedule_list(self) -> list[dict[str, Any]]:
        """Every schedule, by name."""
        with self._lock:
            return [s.figures(pickle.loads(s.payload)[0]) for _, s in sorted(self.schedules.items())]

    def schedule_remove(self, name: str) -> dict[str, Any]:
        """Stop a schedule (tasks it put already stay); returns what it was.

        Raises:
            ValueError: no schedule of that name.
        """
        with self._lock:
            s = self.schedules.pop(name, None)
            if s is None:
                raise ValueError(f"god knows no schedule {name} (schedules: {', '.join(sorted(self.schedules)) or 'none'})")
            if self.journal is not None:
                self.journal.drop_schedule(name)
            return s.figures(pickle.loads(s.payload)[0])

    def _warn_stuck(self, now: float) -> None:
        """Say once of each task a consumer has held for longer than warn_after_s (lock held)."""
        if self.warn_after_s is None:
            return
        horizon = now - self.warn_after_s
        for c in self.peers.consumers.values():
            for s in c.leased:
                if s.since < horizon and not s.warned and s.batch.done.find(0, s.lo, s.hi) != -1:
                    s.warned = True
                    first = s.batch.first + s.batch.done.find(0, s.lo, s.hi)
                    logger.warning("task {} has been held by consumer {} for {:.0f}s (over --warn-after {:g}): "
                                   "running that long, or stuck; 'python -m god cancel {}' stops it",
                                   task_id(s.batch.producer, first), c.top.name, now - s.since, self.warn_after_s,
                                   task_id(s.batch.producer, first))

    def _unknown_put(self, producer: str, first: int) -> None:
        """A producer god does not remember puts a batch from seq ``first`` on: god forgot it
        (silent for longer than the dedupe window) or lost its journal. Taken as new: a batch
        it sent before cannot be told from one it did not."""
        self._counts["unknown_puts"] += 1
        logger.warning("producer {} puts tasks from {} on but god does not remember it (not heard from for "
                       "over {:.0f}s, or god lost its journal): a put it sent before would run again",
                       producer, first, self.dedupe_window_s)

    def _forget(self, now: float) -> None:
        """Forget producers not heard from for the dedupe window (lock held)."""
        heard, horizon = self._heard, now - self.dedupe_window_s
        while heard:
            name, at = next(iter(heard.items()))
            if at > horizon:
                break
            del heard[name]
            self._upto.pop(name, None)
            self._counts["forgotten"] += 1
        if self.journal is not None and now - self._forgot_at >= FORGET_JOURNAL_EVERY_S:
            self._forgot_at = now
            self.journal.forget_producers(time.time() - self.dedupe_window_s)

    def try_lease(self, consumer: str, queues: tuple[str, ...], max_n: int, seq: int | None) -> list[Grant] | None:
        """Lease up to max_n tasks from the queues, in their order; None (nothing recorded, so
        the same seq may try again) while none waits there.

        A retried call (the same seq as the consumer's last lease, whose reply was lost) gets
        the same grants again, so no task is left leased to a consumer that never saw it.
        """
        with self._lock:
            c = self.peers.consumer(consumer, self._now())
            c.queues = queues
            if seq is not None and seq == c.lease_seq:
                return [g for s, g in c.last_grants if s in c.leased]
            if not any(q.pending > 0 and not q.paused for q in map(self._queues.get, queues) if q is not None):
                return None
            leased = self._lease_now(c, queues, max_n)
            if not leased:
                return None  # what waits is for other consumers (it killed this one's workers)
            c.lease_seq, c.last_grants = seq, leased
        self._on_change()  # room for puts
        return [g for _, g in leased]

    def lease_nothing(self, consumer: str, seq: int | None) -> list[Grant]:
        """Answer a lease that found nothing in time: recorded under seq, so a retry gets the same."""
        with self._lock:
            c = self.peers.consumer(consumer, self._now())
            if seq is not None and seq == c.lease_seq:
                return [g for s, g in c.last_grants if s in c.leased]
            c.lease_seq, c.last_grants = seq, []
            return []

    def has_waiting(self, queues: tuple[str, ...]) -> bool:
        """Whether tasks wait on any of these queues: a hint, read without the lock."""
        qs = self._queues
        return any(name in qs and qs[name].pending > 0 and not qs[name].paused for name in queues)

    def has_room(self) -> bool:
        """Whether a put would find room: a hint, read without the lock."""
        return self._pending < self.capacity

    def ack_many(self, consumer: str, acks: list[Ack]) -> int:
        """Record results; the first result for a task wins, later ones are counted duplicates.

        Returns:
            How many results were new.
        """
        with self._lock:
            c = self.peers.consumer(consumer, self._now())
            new = sum(self._ack(c, a) for a in acks)
        if new:
            self.results_ready.set()
            self._on_change()
        return new

    def _ack(self, c: ConsumerState, a: Ack) -> int:
        """Record the results of one ack from c (lock held); returns how many were new."""
        b = self._batches.get((a[A_PRODUCER], a[A_FIRST]))
        lo, hi = a[A_LO] - a[A_FIRST], a[A_HI] - a[A_FIRST]
        if b is None or not 0 <= lo < hi <= b.n:
            return self._ack_unknown(c, a)
        lines, failed, values = a[A_LINES], a[A_FAILED], a[A_VALUES]
        runs = b.undone(lo, hi)
        keep: set[int] | None = None  # the offsets to record, when not all of [lo, hi)
        if len(runs) != 1 or runs[0] != (lo, hi):  # some had a result already: keep the rest
            keep = {i for rlo, rhi in runs for i in range(rlo, rhi)}
            self._counts["duplicates"] += hi - lo - len(keep)
        if failed and (b.retry is not None or any(f[F_AFTER] is not None for f in failed)):
            again = self._retry_failures(c, b, failed, keep, lo, hi)
            if again:  # tried again later: no result for them now
                keep = (set(range(lo, hi)) if keep is None else keep) - again
        if keep is not None:
            if not keep:
                return 0
            lines = "".join(line + "\n" for i, line in zip(range(lo, hi), lines.split("\n")) if i in keep)
            failed = tuple(f for f in failed if f[F_SEQ] - b.first in keep)
            if values is not None:
                values = pickle.dumps([v for i, v in zip(range(lo, hi), pickle.loads(values)) if i in keep])
            runs = runs_of(sorted(keep))
        if failed:
            self._keep_failures(a[A_LO], a[A_LINES], failed)
        n = sum(rhi - rlo for rlo, rhi in runs)
        attempt = max((s.tries for s in b.out if s.lo <= runs[0][0] < s.hi), default=1)
        if len(runs) == 1:
            self._record(b, runs[0][0], runs[0][1], lines, values, c.top.name, attempt)
        else:
            self._record_runs(b, runs, lines, values, c.top.name, attempt)
        for rlo, rhi in runs:
            self._settle(b, rlo, rhi)
        self._count(c, self._queues[b.queue], n, len(failed))
        return n

    def _keep_failures(self, lo: int, lines: str, failed: tuple[Failed, ...]) -> None:
        """Keep the last failed results (their lines, from seq lo on, read back) for ``failed``."""
        parts = lines.split("\n")
        for f in failed:
            try:
                d = json.loads(parts[f[F_SEQ] - lo])
            except (IndexError, ValueError):
                continue
            tb = d.get("traceback")
            self._failed.append({
                "id": d.get("id"), "queue": d.get("queue"), "task": d.get("task"), "payload": shown(d.get("payload")),
                "error": d.get("error"), "traceback": tb[-TRACEBACK_CHARS:] if isinstance(tb, str) else None,
                "attempts": d.get("attempts"), "consumer": d.get("consumer"), "time": d.get("time"),
            })

    def _record_runs(self, b: Batch, runs: list[tuple[int, int]], lines: str, values: bytes | None,
                     consumer: str, attempt: int) -> None:
        """Record results that are several runs of b (some in between had results already)."""
        parts = lines.split("\n")
        vals = pickle.loads(values) if values is not None else None
        i = 0
        for lo, hi in runs:
            k = hi - lo
            self._record(b, lo, hi, "".join(p + "\n" for p in parts[i : i + k]),
                         vals[i : i + k] if vals is not None else None, consumer, attempt)
            i += k

    def _ack_unknown(self, c: ConsumerState, a: Ack) -> int:
        """Results for a batch god does not hold: done before (duplicates), or put to a god that
        restarted without a journal (kept: nobody else will run them)."""
        producer, n = a[A_PRODUCER], a[A_HI] - a[A_LO]
        if a[A_HI] - 1 <= self._upto.get(producer, 0) or producer.startswith(TUTORIAL):
            self._counts["duplicates"] += n
            return 0
        self._outbox.append((a[A_LINES], [(producer, a[A_FIRST], a[A_LO], a[A_HI])]))
        self._upto[producer] = max(self._upto.get(producer, 0), a[A_HI] - 1)
        self._heard.setdefault(producer, self._now())
        self._count(c, self._queue(DEFAULT_QUEUE), n, len(a[A_FAILED]))
        return n

    def _count(self, c: ConsumerState, q: Queue, n: int, failed: int) -> None:
        """n new results from c for tasks of q, failed of them failures."""
        c = c.top
        c.done += n - failed
        c.failed += failed
        q.done += n - failed
        q.failed += failed
        self._counts["done"] += n - failed
        self._counts["failed"] += failed

    def set_limit(self, queue: str, rate: float | None, *, journal: bool = True) -> float | None:
        """Start at most rate tasks a second from the queue, across all consumers (None: no limit).

        Returns:
            The limit it had.
        """
        with self._lock:
            q = self._queue(queue)
            before = q.limit.rate if q.limit is not None else None
            q.limit = Bucket(rate, max(1.0, rate), self._now()) if rate is not None else None
            if journal and self.journal is not None:
                self.journal.set_limit(queue, rate)
        self._on_change()
        return before

    def pause(self, queue: str, paused: bool = True, *, journal: bool = True) -> bool:
        """Start nothing more from a queue (running tasks finish), or start again; journaled, so
        it holds across a restart. Returns whether it was paused.

        Raises:
            ValueError: a queue god does not know (no task came to it, no consumer serves it).
        """
        with self._lock:
            q = self._queues.get(queue)
            if q is None:
                served = any(queue in c.queues for c in self.peers.consumers.values())
                if not served and journal:
                    known = ", ".join(sorted(self._queues)) or "none yet"
                    raise ValueError(f"god knows no queue {queue} (queues: {known})")
                q = self._queue(queue)
            before, q.paused = q.paused, paused
            if journal and self.journal is not None and before != paused:
                self.journal.set_paused(queue, paused)
        self._on_change()
        return before

    def heartbeat(self, consumer: str) -> tuple[bool, dict[str, Any]]:
        """Keep a consumer's leases alive.

        Returns:
            (False if it had been given up (its tasks requeued), what operators asked of it:
            "drain" (bool), "stop" (the (producer, seq) of cancelled tasks it runs)).
        """
        with self._lock:
            c = self.peers.consumers.get(consumer)
            was_alive = c is not None and c.alive
            now = self._now()
            c = self.peers.consumer(consumer, now)
            if c.stop:  # told for a while (a lost reply is no matter), then forgotten
                c.stop = {key: until for key, until in c.stop.items() if until > now}
            return was_alive, {"drain": c.drain, "stop": list(c.stop)}

    def cancel(self, ids: list[str] | None = None, queue: str | None = None,
               producer: str | None = None) -> dict[str, int]:
        """Cancel tasks (these ids, or all of a queue's or a producer's not done): each gets a
        failed result that says so at once, and is never run; a running one's consumer is told
        to stop it (its heartbeats say so), and what it sends for it later is a duplicate.

        Returns:
            How many were waiting, scheduled and running.

        Raises:
            ValueError: an id that is not waiting, scheduled or running; a queue or producer
                god does not know.
        """
        with self._lock:
            targets: list[tuple[Batch, list[tuple[int, int]]]] = []
            if ids:
                by_batch: dict[Batch, list[int]] = {}
                missing = []
                for tid in ids:
                    name, seq = split_id(tid)
                    b = self._batch_of(name, seq)
                    if b is None or b.done[seq - b.first]:
                        missing.append(tid)
                    else:
                        by_batch.setdefault(b, []).append(seq - b.first)
                if missing:
                    raise ValueError(f"{count(len(missing), 'task')} not waiting, scheduled or running (done, dead or "
                                     f"unknown: python -m god task ID says which): {', '.join(missing[:5])}"
                                     f"{' ...' if len(missing) > 5 else ''}")
                targets = [(b, runs_of(sorted(set(offsets)))) for b, offsets in by_batch.items()]
            else:
                if queue is not None and queue not in self._queues:
                    raise ValueError(f"god knows no queue {queue} (queues: {', '.join(sorted(self._queues)) or 'none yet'})")
                if producer is not None and producer not in self._upto:
                    raise ValueError(f"god knows no producer {producer}")
                targets = [(b, b.undone(0, b.n)) for b in self._batches.values()
                           if (queue is None or b.queue == queue) and (producer is None or b.producer == producer)]
            counts = dict.fromkeys(("waiting", "scheduled", "running"), 0)
            until = self._now() + 2 * self.lease_s
            for b, runs in targets:
                for lo, hi in runs:
                    self._cancel(b, lo, hi, counts, until)
        if any(counts.values()):
            self.results_ready.set()
            self._on_change()
        return counts

    def _cancel(self, b: Batch, lo: int, hi: int, counts: dict[str, int], until: float) -> None:
        """Settle offsets [lo, hi) of b (none done) as cancelled, telling the consumers running any (lock held)."""
        for s in b.out:
            for i in range(max(lo, s.lo), min(hi, s.hi)):
                if s.owner is not None:
                    s.owner.top.stop[b.producer, b.first + i] = until
                counts["running"] += 1
        counts["scheduled"] += sum(max(0, min(hi, s.hi) - max(lo, s.lo)) for s in b.later)
        n = hi - lo
        counts["waiting"] += n - sum(max(0, min(hi, s.hi) - max(lo, s.lo)) for s in (*b.out, *b.later))
        payloads, at = b.payload_list(), time.time()
        lines = "".join(json_line(task_id(b.producer, b.first + i), payloads[i], False, None, CANCELLED, None, "god",
                                  0, at, b.queue, b.task) + "\n" for i in range(lo, hi))
        self._record(b, lo, hi, lines, [(False, None, CANCELLED, None)] * n if b.keep else None, "god", 0)
        self._settle(b, lo, hi)
        q = self._queues[b.queue]
        q.failed += n
        self._counts["failed"] += n
        self._counts["cancelled"] += n

    def drain_consumer(self, name: str) -> int:
        """Ask a consumer to drain (finish what it runs, hand back the rest, exit 0): its next
        heartbeat says so. Returns how many tasks it holds.

        Raises:
            ValueError: a consumer god does not know, or one it gave up.
        """
        with self._lock:
            c = self.peers.consumers.get(name)
            if c is not None and c.parent is not None:
                raise ValueError(f"{name} is a worker process of consumer {c.parent.name}: drain {c.parent.name}")
            if c is None or not c.alive:
                alive = sorted(c.name for c in self.peers.consumers.values() if c.parent is None and c.alive)
                raise ValueError(f"god knows no {'live ' if c is not None else ''}consumer {name} "
                                 f"(consumers: {', '.join(alive) or 'none'})")
            c.drain = True
            return c.in_flight()

    def _take_back(self, c: ConsumerState, r: Run, *, counted: bool, reason: str, alone: bool = False) -> int:
        b = self._batches.get((r[R_PRODUCER], r[R_FIRST]))
        if b is None:
            return 0
        lo, hi = r[R_LO] - b.first, r[R_HI] - b.first
        n = 0
        for s in [s for s in b.out if s.owner is c and s.lo < hi and lo < s.hi]:
            taken = self._carve(s, max(lo, s.lo), min(hi, s.hi))
            n += self._requeue(taken, counted=counted, reason=reason, avoid=c.top if counted else None, alone=alone)
        return n

    def _carve(self, s: Slice, lo: int, hi: int) -> Slice:
        """Cut [lo, hi) out of a leased slice: the parts before and after stay leased to its
        owner, and so does the part returned."""
        self._unlease(s)
        b, c = s.batch, s.owner
        parts = [Slice(b, a, z, s.tries, c, s.retried, alone=s.alone, since=s.since, warned=s.warned)
                 for a, z in ((s.lo, lo), (lo, hi), (hi, s.hi))
                 if z > a]
        for part in parts:
            b.out.append(part)
            if c is not None:
                c.leased[part] = None
        return next(part for part in parts if part.lo == lo)

    def _retry_delay(self, b: Batch, retried: int, name: str, after: float | None) -> float | None:
        """Seconds until a failed task of b is tried again, or None: its failure is final."""
        policy = b.retry
        if policy is None or retried >= policy[RP_RETRIES]:
            return None
        if after is not None:  # it raised consumer.Retry(after=...)
            return max(0.0, after)
        if policy[RP_ON] is not None and name not in policy[RP_ON]:
            return None
        return float(min(policy[RP_MAX_BACKOFF], policy[RP_BACKOFF] * 2**retried) * random.uniform(0.8, 1.2))

    def _retry_failures(self, c: ConsumerState, b: Batch, failed: tuple[Failed, ...], eligible: set[int] | None,
                        lo: int, hi: int) -> set[int]:
        """Failures of b's tasks that are tried again: each waits for its time, off its queue.
        Returns their offsets (no result is recorded for them)."""
        again: set[int] = set()
        for f in failed:
            i = f[F_SEQ] - b.first
            if not lo <= i < hi or (eligible is not None and i not in eligible):
                continue
            held = next((s for s in b.out if s.lo <= i < s.hi), None)
            delay = self._retry_delay(b, held.retried if held is not None else 0, f[F_NAME], f[F_AFTER])
            if delay is None:
                continue
            again.add(i)
            if held is None or held.owner is not c:
                continue  # waiting, or leased to another since: it runs there, this failure is not final
            t = self._carve(held, i, i + 1)
            self._unlease(t)
            self._queues[b.queue].in_flight -= 1
            due = time.time() + delay
            self._place(Slice(b, i, i + 1, t.tries, retried=t.retried + 1), due, first=True)
            self._counts["retried"] += 1
            if self.journal is not None:
                self.journal.set_attempts([(b.producer, b.first, b.first + i, b.first + i + 1, t.tries,
                                            t.retried + 1, due)])
        return again

    def _tick(self, now: float) -> int:
        """Serve the tasks whose retry's time has come, first within their level; how many."""
        n = 0
        while self._scheduled and self._scheduled[0][0] <= now:
            _, _, s = heapq.heappop(self._scheduled)
            b = s.batch
            if s in b.later:
                b.later.remove(s)
            runs = b.undone(s.lo, s.hi)
            total = sum(z - a for a, z in runs)
            if not total:
                continue  # a late result settled it meanwhile
            self._queues[b.queue].scheduled -= total
            for a, z in reversed(runs):
                self._place(Slice(b, a, z, s.tries, retried=s.retried), None, first=True)
            n += total
        return n

    def bye(self, consumer: str) -> None:
        """A consumer (with its workers) or a worker leaves: anything still leased to it goes back,
        unstarted. Or a producer leaves: it is no longer shown, and its results are no longer kept."""
        with self._lock:
            if self.peers.producers.pop(consumer, None) is not None:
                self.mailboxes.close(consumer)
                return
            c = self.peers.drop(consumer)
            for w in (c, *c.workers.values()) if c is not None else ():
                for s in list(w.leased):
                    self._requeue(s, counted=False, reason="consumer left")
        self._on_change()

    def worker_lost(self, worker: str, running: list[Run], timed_out: str | None = None) -> None:
        """A consumer's worker process died while running the tasks of ``running`` (each uses an
        attempt), or was stopped because they ran over their time (``timed_out`` says so: each
        fails with it, and its retries may try it again); the rest of what it held goes back."""
        with self._lock:
            c = self.peers.consumers.get(worker)
            if c is None:
                return
            for r in running:
                b = self._batches.get((r[R_PRODUCER], r[R_FIRST]))
                if b is None:
                    continue
                if timed_out is None:  # beside others, any of them may have killed it: each runs alone next
                    self._take_back(c, r, counted=True, reason=f"its worker on {c.top.name} died",
                                    alone=len(running) > 1)
                    continue
                i = r[R_LO] - b.first
                if 0 <= i < b.n and not b.done[i]:
                    held = next((s for s in b.out if s.lo <= i < s.hi), None)
                    line = json_line(task_id(b.producer, b.first + i), b.payload_list()[i], False, None, timed_out,
                                     None, c.top.name, held.tries if held is not None else 1, time.time(),
                                     b.queue, b.task)
                    failure: Value = (False, None, timed_out, None)
                    values = pickle.dumps([failure]) if b.keep else None
                    self._ack(c, (b.producer, b.first, b.first + i, b.first + i + 1, line + "\n",
                                  ((b.first + i, "TimeoutError", None),), values))
        self.results_ready.set()
        self.bye(worker)

    def results_for(self, producer: str, run: str, confirmed: int, max_n: int,
                    check: list[str] | None = None) -> tuple[list[Posted], list[str]]:
        """Results of the producer's own tasks, numbered; those up to ``confirmed`` it has already.

        ``run`` is the god run the numbers came from (a restarted god numbers anew).

        Returns:
            (the results, the ids in ``check`` that are done but whose results this god
            never had: finished before it restarted).
        """
        with self._lock:
            self.peers.producer(producer, self._now())
            gone = [tid for tid in check or () if self._done_before(tid)]
        if run != self.run:
            confirmed = 0
        if gone:  # done, but not if their results wait in the mailbox
            held = self.mailboxes.holds(producer)
            gone = [tid for tid in gone if split_id(tid)[1] not in held]
        return self.mailboxes.take(producer, confirmed, max_n), gone

    def _done_before(self, tid: str) -> bool:
        producer, seq = split_id(tid)
        if seq > self._upto.get(producer, 0):
            return False
        b = self._batch_of(producer, seq)
        return b is None or bool(b.done[seq - b.first])

    def _batch_of(self, producer: str, seq: int) -> Batch | None:
        """The batch god holds with that task of the producer's (lock held; a scan: for rare calls)."""
        for b in self._batches.values():
            if b.producer == producer and b.first <= seq < b.first + b.n:
                return b
        return None

    def task_state(self, tid: str) -> dict[str, Any]:
        """Where a task is: waiting, scheduled, running (on which consumer), dead, or done (its
        results line tells done from failed); its queue, task and attempts where god holds them.

        Raises:
            ValueError: not a task id, or a task god does not know.
        """
        producer, seq = split_id(tid)
        with self._lock:
            d = self.dead.get(tid)
            if d is not None:
                return {"id": tid, "state": "dead", "queue": d.queue, "task": d.task, "attempts": d.attempts,
                        "reason": d.reason}
            b = self._batch_of(producer, seq)
            if b is None:
                if seq <= self._upto.get(producer, 0):
                    return {"id": tid, "state": "done"}
                raise ValueError(f"god knows no task {tid}: none of {producer}'s tasks up to {seq} came here, "
                                 f"or they finished more than --dedupe-window ago")
            i = seq - b.first
            out: dict[str, Any] = {"id": tid, "queue": b.queue, "task": b.task, "priority": b.priority}
            if b.origin is not None:
                out["requeued_from"] = b.origin[i]
            if b.done[i]:
                return {**out, "state": "done"}
            s = next((s for s in b.out if s.lo <= i < s.hi), None)
            if s is not None:
                return {**out, "state": "running", "attempts": s.tries,
                        "consumer": s.owner.top.name if s.owner is not None else None}
            s = next((s for s in b.later if s.lo <= i < s.hi), None)
            if s is not None:
                due = next((at for at, _, t in self._scheduled if t is s), self._now())
                return {**out, "state": "scheduled", "attempts": s.tries, "due_in_s": max(0.0, due - self._now())}
            s = next((s for level in self._queues[b.queue].levels for s in level if s.batch is b and s.lo <= i < s.hi),
                     None)
            return {**out, "state": "waiting", "attempts": s.tries if s is not None else 0}

    def stats(self) -> Stats:
        """A snapshot of every count, for the monitor and ``status``."""
        with self._lock:
            now = self._now()
            queues: dict[str, QueueFigures] = {}
            for name, q in self._queues.items():
                oldest = q.oldest()
                queues[name] = {
                    "pending": q.pending, "in_flight": q.in_flight, "done": q.done, "failed": q.failed,
                    "dead": q.dead, "scheduled": q.scheduled, "oldest_waiting_s": 0.0 if oldest is None else now - oldest,
                    "rate_limit": q.limit.rate if q.limit is not None else None, "paused": q.paused,
                    "consumers": sum(1 for _ in self.peers.serving(name)),
                }
            oldest_all = max((f["oldest_waiting_s"] for f in queues.values()), default=0.0)
            consumers: list[ConsumerFigures] = [
                {"name": c.name, "host": c.host, "processes": c.processes, "concurrency": c.concurrency,
                 "alive": c.alive,
                 "in_flight": c.in_flight(), "done": c.done, "failed": c.failed, "lost": c.lost,
                 "oldest_held_s": max((now - s.since for w in (c, *c.workers.values()) for s in w.leased
                                       if s.since), default=0.0),
                 "last_seen_s": now - c.last_seen, "queues": list(c.queues)}
                for c in self.peers.consumers.values() if c.parent is None
            ]
            producers: list[ProducerFigures] = [
                {"name": p.name, "host": p.host, "put": p.put, "duplicates": p.duplicates,
                 "last_seen_s": now - p.last_seen}
                for p in self.peers.producers.values()
            ]
            counts = self._counts
            stats: Stats = {
                "accepted": counts["accepted"], "done": counts["done"], "failed": counts["failed"],
                "dead": counts["dead"], "duplicates": counts["duplicates"], "redelivered": counts["redelivered"],
                "handed_out": counts["handed_out"], "retried": counts["retried"], "pending": self._pending,
                "producers_forgotten": counts["forgotten"], "unknown_puts": counts["unknown_puts"],
                "dead_kept": len(self.dead), "cancelled": counts["cancelled"],
                "scheduled": sum(q.scheduled for q in self._queues.values()),
                "in_flight": sum(q.in_flight for q in self._queues.values()), "capacity": self.capacity,
                "oldest_waiting_s": oldest_all, "uptime_s": now - self._started,
                "consumers_alive": self.peers.alive(), "connections": 0, "refused": 0,
                "consumers": consumers, "producers": producers, "queues": queues,
            }
        more = self._figures()
        stats["connections"] = more.get("connections", 0)
        stats["refused"] = more.get("refused", 0)
        return stats

    # -- god's own side (not reachable by clients) -----------------------------------------

    def restore(self, batches: list[tuple[str, Put, bytearray, list[Tries], list[str] | None]],
                upto: dict[str, int], dead: list[DeadLetter] | None = None,
                schedules: list[Schedule] | None = None) -> None:
        """Take over what a journal held: (producer, put, done bytes, tries of runs as offsets,
        dead letters it serves again) of each batch with tasks not done, in order; each
        producer's last seq; the dead letters kept. A retry that was due while god was down is
        served at once."""
        with self._lock:
            self.dead.restore(dead or [])
            self.schedules.update((s.name, s) for s in schedules or [])
            self._upto.update(upto)
            now = self._now()
            self._heard.update(dict.fromkeys(upto, now))
            for producer, put, done, tries, origin in batches:
                b = Batch(producer, put[PUT_FIRST], put[PUT_N], put[PUT_QUEUE], put[PUT_TASK], put[PUT_PRIORITY],
                          put[PUT_PAYLOADS], producer in self.mailboxes, now, put[PUT_RETRY], origin=origin)
                b.done[:] = done
                b.left = done.count(0)
                if not b.left:
                    continue
                self._batches[b.key] = b
                self._upto[producer] = max(self._upto.get(producer, 0), b.first + b.n - 1)
                self._heard.setdefault(producer, now)
                marks: list[tuple[int, int, float | None]] = [(0, 0, None)] * b.n
                for lo, hi, n, retried, due in tries:
                    marks[lo:hi] = [(n, retried, due)] * (hi - lo)
                for lo, hi in b.undone(0, b.n):
                    start = lo
                    for i in range(lo + 1, hi + 1):  # runs of equal attempts
                        if i == hi or marks[i] != marks[start]:
                            n, retried, due = marks[start]
                            # a retry's time, else the batch's own (--delay), if still to come
                            self._place(Slice(b, start, i, n, retried=retried),
                                        due if due is not None else put[PUT_DUE], first=False)
                            start = i

    def reap(self) -> list[tuple[str, int]]:
        """Give up consumers silent for longer than lease_s, their tasks served again; and serve
        the tasks whose retry is due.

        Returns:
            (consumer, tasks requeued or dead-lettered) for each consumer given up now.
        """
        lost = []
        with self._lock:
            now = self._now()
            due = self._tick(now)
            self._forget(now)
            self._warn_stuck(now)
            due += self._run_schedules(self._wall())
            for c in self.peers.silent(now, self.lease_s):
                c.alive, c.lost = False, c.lost + 1
                c.lease_seq, c.last_grants = None, []
                slices = list(c.leased)
                n = sum(s.batch.done.count(0, s.lo, s.hi) for s in slices)
                for s in slices:
                    self._requeue(s, counted=True, reason=f"consumer {c.name} was lost")
                lost.append((c.name, n))
            for name in self.peers.forget(now):
                self.mailboxes.close(name)
        if lost:
            self.results_ready.set()
        # A rate-limited queue's budget grows with time, which changes nothing else: look again.
        if lost or due or any(q.limit is not None and q.pending > 0 for q in list(self._queues.values())):
            self._on_change()
        return lost

    def take_results(self) -> tuple[list[Outgoing], list[tuple[str, int]]]:
        """Everything recorded since the last call, oldest first, for printing and files.

        Returns:
            (the results, (producer, first) of the batches whose last task was settled since
            the last call). Both come from one moment: a finished batch's results are in this
            call's results or an earlier one's, so once those are journaled it can go.
        """
        self.results_ready.clear()
        with self._lock:
            out, self._outbox = self._outbox, []
            finished, self._finished = self._finished, []
        return out, finished

    # -- what operators call (python -m god dead, failed, requeue, purge) -----------------------

    def dead_list(self, queue: str | None = None) -> list[dict[str, Any]]:
        """The dead letters kept, oldest first, of one queue or all."""
        with self._lock:
            return [d.figures() for d in self.dead.listing(queue)]

    def failed_list(self, queue: str | None = None) -> list[dict[str, Any]]:
        """The last failed results (not dead letters), oldest first, of one queue or all."""
        with self._lock:
            return [f for f in self._failed if queue is None or f["queue"] == queue]

    def requeue_dead(self, ids: list[str] | None, queue: str | None = None) -> list[tuple[str, str]]:
        """Serve dead letters again as new tasks (ids given, or all of a queue, or all): one
        batch per queue, task, priority and retry policy, from a producer of their own, each
        result line saying which dead letter it was.

        Returns:
            (the dead letter's id, its new id) of each.

        Raises:
            ValueError: an id that is no dead letter kept, or no room for them.
        """
        with self._lock:
            if ids:
                unknown = self.dead.unknown(ids)
                if unknown:
                    raise ValueError(f"{count(len(unknown), 'id')} god keeps no dead letter of: "
                                     f"{', '.join(unknown[:5])}{' ...' if len(unknown) > 5 else ''}")
            else:
                ids = [d.id for d in self.dead.listing(queue)]
            if not ids:
                return []
            if self._pending + len(ids) > self.capacity:
                raise ValueError(f"no room for {count(len(ids), 'task')}: {self._pending} wait of --capacity "
                                 f"{self.capacity}; try again when fewer wait")
            groups: dict[tuple[str, str | None, int, Any], list[tuple[DeadLetter, bytes]]] = {}
            for d, blob in self.dead.payloads(ids):
                groups.setdefault((d.queue, d.task, d.priority, d.retry), []).append((d, blob))
            producer, seq, out = f"requeue-{secrets.token_hex(4)}", 1, []
            for (q, task, priority, retry), letters in groups.items():
                blob = pickle.dumps([pickle.loads(b) for _, b in letters], pickle.HIGHEST_PROTOCOL)
                origin = [d.id for d, _ in letters]
                self._take(producer, (seq, len(letters), blob, q, task, priority, retry, None), False, blob, None,
                           origin)
                out += [(tid, task_id(producer, seq + i)) for i, tid in enumerate(origin)]
                seq += len(letters)
            self.dead.remove(ids)  # after the batches: a crash between keeps both, never neither
        self._on_change()
        return out

    def purge_dead(self, queue: str | None = None, older_than_s: float | None = None) -> int:
        """Drop dead letters of a queue (or all), given up more than older_than_s ago (or any)."""
        with self._lock:
            return self.dead.purge(queue, time.time() - older_than_s if older_than_s is not None else None)

    # -- for the tutorial's queue views (god/views.py) -------------------------------------

    def hand_out(self, queue: str) -> tuple[Batch, int, Any] | None:
        """Take the next waiting task of a queue off it for good (at most once: it is done, with
        no result): its batch, offset and payload; None while none waits."""
        with self._lock:
            q = self._queues.get(queue)
            if q is None or q.pending <= 0 or q.paused:
                return None
            # A stand-in consumer, not among the peers: the task is settled at once.
            s, _ = self._lease_now(ConsumerState(TUTORIAL, self._now()), (queue,), 1)[0]
            b, i = s.batch, s.lo
            payload = b.payload_list()[i]
            self._settle(b, i, i + 1)
            self._counts["handed_out"] += 1
            if self.journal is not None:
                self.journal.add_done([(b.producer, b.first, b.first + i, b.first + i + 1)])
        self._on_change()
        return b, i, payload

    def record_value(self, value: Any, task: tuple[Batch, int, Any] | None, *, post: bool) -> None:
        """A value reported outside a lease (a tutorial worker's, on the result queue view): the
        result of a task handed out, or of none. ``post``: to its producer's mailbox too."""
        with self._lock:
            self._counts["done"] += 1
            at = time.time()
            if task is None:
                self._outbox.append((json_line(None, None, True, value, None, None, TUTORIAL, 1, at) + "\n", []))
            else:
                b, i, payload = task
                self._queue(b.queue).done += 1
                self._outbox.append((json_line(task_id(b.producer, b.first + i), payload, True, value, None, None,
                                               TUTORIAL, 1, at, b.queue, b.task) + "\n", []))
                if post and b.keep:
                    blob = pickle.dumps([(True, value, None, None)], pickle.HIGHEST_PROTOCOL)
                    self.mailboxes.post(b.producer, (b.first + i, b.first + i + 1, blob, TUTORIAL, 1))
        self.results_ready.set()
        self._on_change()

    def waiting(self, queue: str) -> int:
        """Tasks waiting on a queue."""
        with self._lock:
            q = self._queues.get(queue)
            return q.pending if q is not None else 0
