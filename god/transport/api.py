"""What our clients may call on god (``shared.manager.BROKER_METHODS``), over the broker.

Each method answers at once, or returns a ``Wait`` that the caller parks (god/transport/waits.py):
a lease waiting for tasks, a put waiting for room or for its journal commit, a producer
waiting for its results. Arguments from the wire are checked here, so a bad one is an
error for that call alone.
"""

from __future__ import annotations

import json
import math
import threading
from pathlib import Path
from collections.abc import Callable
from typing import Any

from god.rules.broker import Broker
from god.rules.leases import BEATS_PER_LEASE
from god.rules.state import JournalLike
from god.store.values import ValueStore, check_digest
from god.transport.waits import Wait, Waits
from shared import items, resources
from shared.records import (
    A_HI, A_LO, A_VALUES, CANCELLED, MAX_AFTER, PUT_AFTER, PUT_VALUES, PUT_RESOURCES, PUT_DUE, PUT_FIRST, PUT_N, PUT_PAYLOADS, PUT_PRIORITY, PUT_QUEUE, PUT_RETRY, PUT_TASK, Ack, Grant, Put,
    Run, check_after, check_priority, check_queue, check_rate, check_retry,
)
from shared.errors import ConfigError
from shared.output import Item as OutputItem, check_items
from shared.values import CHUNK
from shared.log import logger
from shared.version import PYTHON, VERSION, other_version


class _Lease(Wait):
    yields = True  # the worker's next call (its results) ends the wait
    newest_first = True  # the worker that waited least takes a lone task (god/transport/waits.py)

    def __init__(self, broker: Broker, consumer: str, queues: tuple[str, ...], max_n: int, seq: int | None,
                 deadline: float) -> None:
        self.broker, self.consumer, self.queues, self.max_n, self.seq = broker, consumer, queues, max_n, seq
        self.deadline = deadline
        self.tried = False

    def attempt(self, late: bool) -> tuple[bool, Any]:
        b = self.broker
        # The first try looks at the consumer's last lease too (a retry gets its answer again);
        # later ones only when tasks wait, which is read without the lock.
        if not self.tried or b.leases.has_waiting(self.queues):
            self.tried = True
            grants = b.leases.try_lease(self.consumer, self.queues, self.max_n, self.seq)
            if grants is not None:
                return True, grants
        if late:  # recorded under its seq, so the consumer's retry gets the same answer
            return True, b.leases.lease_nothing(self.consumer, self.seq)
        return False, None


class _Put(Wait):
    """A put waits for room, then (without a deadline) for its journal commit."""

    def __init__(self, broker: Broker, journal: JournalLike | None, producer: str, put: Put,
                 deadline: float, after: int | None, loaded: Any = None) -> None:
        self.broker, self.journal, self.producer, self.put, self.after = broker, journal, producer, put, after
        self.loaded = loaded  # its payloads as the door's check loaded them (shared.items.check)
        self.taken, self.ticket = False, 0
        self.deadline = deadline

    @property
    def holds_line(self) -> bool:
        return not self.taken  # taken: the next put of its producer may follow it in

    def attempt(self, late: bool) -> tuple[bool, Any]:
        intake = self.broker.intake
        if not self.taken and self.after is not None and intake.out_of_turn(self.producer, self.put, self.after):
            return True, 0  # the batch before it was not taken: no use waiting for room, it is sent again
        if not self.taken and intake.has_room():
            self.taken, self.ticket = intake.offer(self.producer, self.put, self.after, self.loaded)
            self.loaded = None
            if self.ticket < 0:
                return True, 0  # out of order: the producer sends it again
        if not self.taken:
            return (True, 0) if late else (False, None)
        self.deadline = math.inf  # a confirmation never goes out before its commit
        if self.ticket and self.journal is not None and not self.journal.committed(self.ticket):
            return False, None
        return True, self.put[PUT_N]


class _Results(Wait):
    yields = True  # a call behind it (a producer that fetched ahead puts again) ends the wait

    def __init__(self, broker: Broker, producer: str, run: str, confirmed: int, max_n: int, deadline: float,
                 output: int | None) -> None:
        self.broker, self.producer, self.run, self.confirmed, self.max_n = broker, producer, run, confirmed, max_n
        self.deadline, self.output = deadline, output

    def attempt(self, late: bool) -> tuple[bool, Any]:
        answer = self.broker.intake.results_for(self.producer, self.run, self.confirmed, self.max_n, None,
                                                self.output)
        if any(answer) or late:
            return True, answer
        return False, None


class _Lookup(Wait):
    """A task's state, with its results line once the file, read from its end in a thread of its
    own (it may be gigabytes), gave it up."""

    def __init__(self, state: dict[str, Any], results: Path, waits: Waits) -> None:
        self.state = state
        self.found: list[str | None] = []
        threading.Thread(target=self._find, args=(results, waits), name="god-task-lookup", daemon=True).start()

    def _find(self, results: Path, waits: Waits) -> None:
        try:
            self.found.append(last_line_with(results, f'{{"id": {json.dumps(self.state["id"])}, '))
        except OSError:
            self.found.append(None)
        waits.changed()

    def attempt(self, late: bool) -> tuple[bool, Any]:
        if not self.found:
            return False, None
        line = self.found[0]
        return True, {**self.state, "result": json.loads(line) if line is not None else None}


def last_line_with(path: Path, start: str, chunk: int = 1 << 20) -> str | None:
    """The last line of a file that starts with ``start``, read backwards a chunk at a time."""
    key = ("\n" + start).encode()
    carry = b""  # the start of the line cut by the end of the chunk read: the chunk after it had it
    with open(path, "rb") as f:
        pos = f.seek(0, 2)
        while pos > 0:
            begin = max(0, pos - chunk)
            f.seek(begin)
            data = f.read(pos - begin) + carry
            if begin == 0:
                data = b"\n" + data
            at = data.rfind(key)
            if at != -1:
                stop = data.find(b"\n", at + 1)
                return data[at + 1 : stop if stop != -1 else len(data)].decode()
            nl = data.find(b"\n")
            carry = data if nl == -1 else data[:nl]
            pos = begin
    return None


class Api:
    """The broker methods our clients call; some return a Wait to park."""

    def __init__(self, broker: Broker, waits: Waits, *, journal: JournalLike | None = None,
                 results: Path | None = None) -> None:
        self.broker = broker
        self.waits = waits
        self.journal = journal
        self.results = results  # the results file, where ``task`` finds a task's line
        self.dashboard: str | None = None  # the dashboard's address (god --http), once it listens
        self.reload_keys_here: Callable[[], dict[str, Any]] | None = None  # with god --keys (god/service.py)

    def _deadline(self, timeout: float) -> float:
        return self.waits.now() + max(0.0, float(timeout))

    def ping(self) -> None:
        """Do nothing: a round trip that proves the connection works."""

    def hello(self, name: str, role: str, info: dict[str, Any]) -> dict[str, Any]:
        """Register a producer or consumer; returns the parameters it must follow."""
        b = self.broker
        host, python = str(info.get("host", "")), str(info.get("python", ""))
        if role == "consumer":
            queues, parent = info.get("queues"), info.get("parent")
            b.peers.hello_consumer(name, host, int(info.get("processes", 0)),
                             tuple(check_queue(q) for q in queues) if queues is not None else None,
                             str(parent) if parent is not None else None, int(info.get("concurrency", 1)), python,
                             _cache(info.get("cache", "")), resources.check(info.get("resources")),
                             _gpu_ids(info.get("gpus")))
        elif role == "producer":
            b.peers.hello_producer(name, host, bool(info.get("results")), python, output=bool(info.get("output")))
        note = other_version(f"{role} {name} on {host}", info.get("version"))
        if note is not None and info.get("parent") is None:  # (its workers say the same)
            logger.bind(role="god").warning(note)
        return {
            "version": VERSION,
            "python": PYTHON,
            "lease_s": b.state.lease_s,
            "heartbeat_s": b.state.lease_s / BEATS_PER_LEASE,
            "capacity": b.state.capacity,
            "max_attempts": b.redelivery.max_attempts,
            "max_payload": b.intake.max_payload,
            "results_payload_max": b.state.results_payload_max,
            "run": b.state.run,
        }

    def put_many(self, producer: str, put: Put, timeout: float = 0.0, after: int | None = None) -> int | Wait:
        """Queue a batch whole; waits up to timeout for room, and for its journal commit.
        ``after``: it was sent behind the producer's batch that ends at that seq, before
        that one was confirmed; it is taken only if that one was.

        Returns:
            The batch's size once god holds it (now or from before), or 0 if god stayed full
            (or the batch before it was not taken).
        """
        put, loaded = _check_put(producer, put, self.broker.intake.max_payload, self.broker.state.values)
        if after is not None and type(after) is not int:
            raise ValueError(f"after {after!r} is not a seq")
        wait = _Put(self.broker, self.journal, producer, put, self._deadline(timeout), after, loaded)
        answered, reply = wait.attempt(timeout <= 0)
        return reply if answered else wait

    def lease(self, consumer: str, queues: tuple[str, ...], max_n: int, timeout: float = 0.0,
              seq: int | None = None) -> list[Grant] | Wait:
        """Lease up to max_n tasks from the queues, in order, waiting up to timeout for the first."""
        queues = tuple(check_queue(q) for q in queues)
        wait = _Lease(self.broker, consumer, queues, int(max_n), seq, self._deadline(timeout))
        answered, reply = wait.attempt(timeout <= 0)
        return reply if answered else wait

    def ack_many(self, consumer: str, acks: list[Ack]) -> int:
        """Record results; returns how many were new."""
        return self.broker.acks.ack_many(consumer, _check_acks(acks))

    def heartbeat(self, consumer: str) -> tuple[bool, dict[str, Any]]:
        """Keep a consumer's leases alive: (False if god had given it up, what operators asked of it)."""
        return self.broker.peers.heartbeat(consumer)

    def bye(self, consumer: str) -> None:
        """A consumer leaves (what it still holds goes back), or a producer."""
        self.broker.peers.bye(consumer)

    def worker_lost(self, worker: str, running: list[Run], timed_out: str | None = None) -> None:
        """A consumer's worker process died or was stopped, with the tasks it was running."""
        self.broker.peers.worker_lost(worker, list(running), timed_out)

    def ack_lease(self, consumer: str, acks: list[Ack], queues: tuple[str, ...], max_n: int, timeout: float = 0.0,
                  seq: int | None = None) -> list[Grant] | Wait:
        """Record results, then lease up to max_n tasks (none: max_n 0) like ``lease``: a worker's
        one round trip for both."""
        if acks:
            self.broker.acks.ack_many(consumer, _check_acks(acks))
        if max_n <= 0:
            return []
        return self.lease(consumer, queues, max_n, timeout, seq)

    def results_for(self, producer: str, run: str, confirmed: int, max_n: int, timeout: float = 0.0,
                    check: list[str] | None = None, output: int | None = None) -> tuple[Any, ...] | Wait:
        """Results of the producer's own tasks, waiting up to timeout for the first; with
        ``output`` (the last number of lines it has), its tasks' lines too."""
        if output is not None and type(output) is not int:
            raise ValueError(f"output {output!r} is not a number")
        answer = self.broker.intake.results_for(producer, run, confirmed, max_n, check, output)
        if any(answer) or timeout <= 0:
            return answer
        return _Results(self.broker, producer, run, confirmed, max_n, self._deadline(timeout), output)

    def value_missing(self, client: str, digests: list[str]) -> list[str]:
        """Those of the large values (by digest) god does not hold (shared/values.py); those it
        holds it keeps for the client from now, as it keeps those the client sends."""
        if type(digests) is not list or len(digests) > MAX_AFTER:
            raise ValueError("digests are a list")
        return self._values().missing([check_digest(d) for d in digests], ("program", client))

    def value_put(self, client: str, digest: str, size: int, offset: int, chunk: bytes) -> int:
        """A chunk of a large value, in order; how many bytes of it god holds. A value sent whole
        is kept while the client is connected (a worker's: until the ack that names it), and
        while a batch or a result names it."""
        if type(offset) is not int or type(chunk) is not bytes:
            raise ValueError("a value's chunk is bytes at an offset")
        values = self._values()
        got = values.put(check_digest(digest), size, offset, chunk)
        if got == size and offset + len(chunk) == size:  # (its last chunk: pinned once)
            values.pin(("program", client), [digest])
        return got

    def value_get(self, client: str, digest: str, offset: int, n: int) -> bytes:
        """Up to n bytes (at most a chunk) of a large value from offset."""
        if type(offset) is not int or type(n) is not int or offset < 0 or not 0 < n <= CHUNK:
            raise ValueError(f"a value's chunk is up to {CHUNK:,} bytes from an offset")
        values = self._values()
        data = values.read(check_digest(digest), offset, n)
        if offset + len(data) == values.size(digest):  # read to its end: its cache holds it now
            values.fetched(digest, self.broker.peers.cache_of(client))
        return data

    def _values(self) -> ValueStore:
        values = self.broker.state.values
        if values is None:
            raise ValueError("this god keeps no large values")
        return values

    def output(self, consumer: str, items: list[OutputItem]) -> int:
        """What tasks wrote (shared/output.py); how many items were taken."""
        return self.broker.output.output(consumer, check_items(items))

    def set_limit(self, queue: str, rate: float | None) -> float | None:
        """Start at most rate tasks a second from the queue, across all consumers (None: no
        limit); returns the limit it had."""
        return self.broker.controls.set_limit(check_queue(queue), check_rate(rate))

    def reload_keys(self) -> dict[str, Any]:
        """Read the table of principals again (god --keys); the connections of principals
        removed or changed end. Returns how many principals, which changed, how many closed."""
        if self.reload_keys_here is None:
            raise ValueError("god was started without --keys: it has no table of principals to read again")
        try:
            return self.reload_keys_here()
        except ConfigError as e:
            raise ValueError(f"{e}; the table in force stays") from None

    def dashboard_address(self) -> str | None:
        """The dashboard's address (god --http), or None; ``python -m god url`` adds the token."""
        return self.dashboard

    def stats(self) -> Any:
        """God's counts (shared.stats.Stats)."""
        return self.broker.figures.stats()

    def cancel(self, ids: list[str] | None = None, queue: str | None = None,
               producer: str | None = None, started: bool = True, why: str | None = None) -> dict[str, int]:
        """Cancel tasks: these ids, or all of a queue's or a producer's; how many were waiting,
        scheduled and running. ``started`` False: not those that run; ``why``: the error
        their results give."""
        if ids is not None and (not isinstance(ids, list) or not all(isinstance(i, str) for i in ids)):
            raise ValueError("ids are a list of task ids")
        if sum(x is not None and x != [] for x in (ids, queue, producer)) != 1:
            raise ValueError("cancel takes ids, a queue or a producer: one of them")
        if why is not None and (not isinstance(why, str) or not 0 < len(why) <= 200):
            raise ValueError(f"why {why!r} is not a line of at most 200 characters")
        return self.broker.controls.cancel(ids or None, _queue_or_all(queue), producer, started=bool(started),
                                           why=why or CANCELLED)

    def schedule_add(self, name: str, every: float | None, cron: str | None, queue: str, task: str | None,
                     payload: Any) -> dict[str, Any]:
        """Put a task every N seconds, or at a crontab line's times; returns the schedule."""
        if task is not None and (not isinstance(task, str) or ":" not in task):
            raise ValueError(f"task {task!r} is not module:function")
        if cron is not None and not isinstance(cron, str):
            raise ValueError(f"cron {cron!r} is not a crontab line's five fields")
        return self.broker.schedules.add(name, every, cron, check_queue(queue), task, payload)

    def schedule_list(self) -> list[dict[str, Any]]:
        """Every schedule."""
        return self.broker.schedules.listing()

    def schedule_remove(self, name: str) -> dict[str, Any]:
        """Stop a schedule; returns what it was."""
        return self.broker.schedules.remove(str(name))

    def drain(self, consumer: str) -> int:
        """Ask a consumer to drain and exit; returns how many tasks it holds."""
        if not isinstance(consumer, str):
            raise ValueError(f"consumer {consumer!r} is not a name")
        return self.broker.controls.drain(consumer)

    def pause(self, queue: str, paused: bool = True) -> bool:
        """Pause a queue (nothing more starts from it) or resume it; returns whether it was paused."""
        return self.broker.controls.pause(check_queue(queue), bool(paused))

    def task(self, tid: str) -> dict[str, Any] | Wait:
        """Where a task is, and its results line once it has one (read back from the results file)."""
        if not isinstance(tid, str):
            raise ValueError(f"task id {tid!r} is not PRODUCER/SEQ")
        state = self.broker.figures.task_state(tid)
        if state["state"] not in ("done", "dead") or self.results is None or not self.results.exists():
            return {**state, "result": None}
        return _Lookup(state, self.results, self.waits)

    def dead(self, queue: str | None = None) -> list[dict[str, Any]]:
        """The dead letters god keeps, oldest first (of one queue, or all)."""
        return self.broker.dead.listing(_queue_or_all(queue))

    def failed(self, queue: str | None = None) -> list[dict[str, Any]]:
        """The last failed results, oldest first (of one queue, or all)."""
        return self.broker.acks.failures(_queue_or_all(queue))

    def requeue(self, ids: list[str] | None, queue: str | None = None) -> list[tuple[str, str]]:
        """Serve dead letters again (these ids, or all of a queue, or all); (old id, new id) each."""
        if ids is not None and (not isinstance(ids, list) or not all(isinstance(i, str) for i in ids)):
            raise ValueError("ids are a list of task ids")
        return self.broker.dead.requeue(ids, _queue_or_all(queue))

    def purge(self, queue: str | None = None, older_than_s: float | None = None) -> int:
        """Drop dead letters (of one queue, or all; given up more than older_than_s ago, or any)."""
        if older_than_s is not None and (not isinstance(older_than_s, (int, float)) or not older_than_s >= 0):
            raise ValueError(f"older than {older_than_s!r}: expected seconds from 0")
        return self.broker.dead.purge(_queue_or_all(queue), older_than_s)


def _queue_or_all(queue: str | None) -> str | None:
    return None if queue is None else check_queue(queue)


def _check_acks(acks: list[Ack]) -> list[Ack]:
    """The acks, if the values they carry are blobs god can load, one value per task (nothing
    of a malformed one is recorded)."""
    for a in acks:
        values = a[A_VALUES] if len(a) > A_VALUES else None
        if values is not None:
            items.check(values, a[A_HI] - a[A_LO], "an ack's values")
    return acks


def _check_put(producer: str, put: Put, max_payload: int, values: ValueStore | None) -> tuple[Put, Any]:
    """The put, if god can take it (one of 8 fields, from before tasks could wait for tasks,
    gets the 9th, None), and its payloads loaded as data."""
    if not isinstance(put, tuple) or len(put) not in (8, 9, 10, 11):
        raise ValueError("a put is (first, n, payloads, queue, task, priority, retry, due, after, values, resources)")
    put = (*put, *(None,) * (11 - len(put)))  # type: ignore[assignment]  # (older clients: fewer fields)
    if "/" in producer:
        raise ValueError(f"producer name {producer!r} has a '/'")
    if type(put[PUT_FIRST]) is not int or type(put[PUT_N]) is not int or put[PUT_FIRST] < 1 or put[PUT_N] < 1:
        raise ValueError("a put's first seq and count are whole numbers from 1")
    blob = put[PUT_PAYLOADS]
    if isinstance(blob, bytes) and len(blob) > max_payload:
        raise ValueError(f"a put's payloads are {len(blob):,} bytes, over god's --max-payload of {max_payload:,}: "
                         "put fewer at a time")
    loaded = items.check(blob, put[PUT_N], "a put's payloads")
    check_queue(put[PUT_QUEUE])
    check_priority(put[PUT_PRIORITY])
    check_retry(put[PUT_RETRY])
    due = put[PUT_DUE]
    if due is not None and (not isinstance(due, (int, float)) or not math.isfinite(due)):
        raise ValueError(f"due time {due!r} is not a Unix time")
    task = put[PUT_TASK]
    if task is not None and (not isinstance(task, str) or ":" not in task):
        raise ValueError(f"task {task!r} is not module:function")
    check_after(put[PUT_AFTER])
    names = put[PUT_VALUES]
    if names is not None:
        if type(names) is not tuple or not 0 < len(names) <= MAX_AFTER:
            raise ValueError("a put's values are a tuple of digests")
        for d in names:
            check_digest(d)
        if values is None:
            raise ValueError("this god keeps no large values: send them with the calls")
        missing = values.missing(list(names))
        if missing:
            raise ValueError(f"the put names {len(missing)} values god does not hold ({missing[0][:12]}...): "
                             "send them first")
    if put[PUT_RESOURCES] is not None:
        put = (*put[:PUT_RESOURCES], resources.check(put[PUT_RESOURCES]) or None)
    return put, loaded


def _gpu_ids(ids: Any) -> tuple[str, ...]:
    """A consumer's GPU ids, as its hello says them."""
    if ids is None:
        return ()
    if type(ids) not in (list, tuple) or len(ids) > 1024 or not all(type(i) is str and 0 < len(i) <= 64 for i in ids):
        raise ValueError("a consumer's GPUs are a list of ids (strings)")
    return tuple(ids)


def _cache(cache: Any) -> str:
    """A consumer's cache of large values, as its hello names it (``host:folder``)."""
    if type(cache) is not str or len(cache) > 4096:
        raise ValueError("a consumer's cache is host:folder, a string of up to 4,096 characters")
    return cache
