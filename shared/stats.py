"""God's figures, as ``stats()`` returns them: the one schema that status, the live view and
metrics read (and ``god status --json`` prints). Tasks are counted by their states' names
(shared/states.py); ``pending`` and ``in_flight`` are the old names of ``waiting`` and
``running``, sent beside them for one release."""

from __future__ import annotations

from typing import TypedDict


class ConsumerFigures(TypedDict):
    """One consumer."""

    name: str
    host: str
    python: str  # the Python it runs on ("3.12.1")
    processes: int
    concurrency: int  # tasks each process runs at once
    alive: bool
    running: int  # tasks it holds, not done
    in_flight: int  # old name of running, for one release
    done: int
    failed: int
    lost: int  # times god gave it up
    oldest_held_s: float  # how long it has held its oldest task not done (running, or next in a worker)
    last_seen_s: float
    queues: list[str]  # the queues it serves, in its order
    cache: str  # its host's cache of large values ("host:folder"): calls that name what it fetched go there first


class ProducerFigures(TypedDict):
    """One producer."""

    name: str
    host: str
    python: str
    put: int
    duplicates: int  # tasks it sent again that god had already
    last_seen_s: float


class QueueFigures(TypedDict):
    """One named queue."""

    waiting: int  # on the queue, to be handed out
    running: int  # held by consumers
    done: int
    failed: int
    dead: int
    scheduled: int  # waiting off the queue for their time (a delay, a retry's backoff)
    blocked: int  # waiting for other tasks' results
    oldest_waiting_s: float
    rate_limit: float | None  # tasks it may start a second, across consumers
    paused: bool  # nothing starts from it (python -m god pause)
    consumers: int  # alive consumers that serve it
    pending: int  # old name of waiting, for one release
    in_flight: int  # old name of running, for one release
    unfit: int  # waiting tasks that need more resources than any consumer serving it has
    unfit_why: str | None  # what one of those needs, and what the largest has ("fits nowhere: ...")
    task_s: float | None  # seconds a task takes here, as finished ones measured it (None: none yet)
    wanted_workers: int  # workers its backlog wants now (god/rules/wanted.py): for autoscalers
    wanted_consumers: int  # consumers that give them, at the workers those serving it have


class Stats(TypedDict):
    """Everything god counts."""

    accepted: int
    done: int
    failed: int
    dead: int
    duplicates: int
    redelivered: int
    handed_out: int  # tasks taken through the tutorial's task queue view (at most once)
    retried: int  # failures tried again
    producers_forgotten: int  # producers not heard from for the dedupe window, no longer remembered
    cancelled: int  # tasks cancelled by an operator (counted among the failed too)
    unleased: int  # results dropped: their tasks were not leased to the consumer that sent them (god --keys)
    values: int  # large values god holds (shared/values.py) ...
    values_bytes: int  # ... their bytes
    values_in_bytes: int  # bytes of values programs sent, since god started
    values_out_bytes: int  # bytes of values consumers fetched, since god started
    dead_kept: int  # dead letters kept to be looked at, served again or purged (--dead-keep)
    unknown_puts: int  # puts from seq > 1 of producers god did not remember (past the window)
    waiting: int  # tasks on their queues, to be handed out
    scheduled: int  # tasks waiting off their queues for their time
    blocked: int  # tasks waiting for other tasks' results
    running: int  # tasks held by consumers
    pending: int  # old name of waiting, for one release
    in_flight: int  # old name of running, for one release
    capacity: int
    oldest_waiting_s: float
    uptime_s: float
    consumers_alive: int
    connections: int
    refused: int
    consumers: list[ConsumerFigures]
    producers: list[ProducerFigures]
    queues: dict[str, QueueFigures]
