"""GodManager and every name god registers, in one place."""

from __future__ import annotations

from multiprocessing.managers import BaseManager

from shared import transport

BROKER = "broker"  #: our API; also the fixed object id GodClient calls without a 'create'
PQ = "pq"  #: tutorial-style task queue view
CQ = "cq"  #: tutorial-style result queue view
TASK_QUEUE = "get_task_queue"  #: the tutorial's name for the task queue
RESULT_QUEUE = "get_result_queue"  #: the tutorial's name for the result queue
TASK_QUEUE_CAMEL = "getTaskQueue"  #: another tutorial's names for them
RESULT_QUEUE_CAMEL = "getResultQueue"
#: Every name of a view of the default queue's tasks, and of its results.
TASK_QUEUES = (PQ, TASK_QUEUE, TASK_QUEUE_CAMEL)
RESULT_QUEUES = (CQ, RESULT_QUEUE, RESULT_QUEUE_CAMEL)
REGISTERED = (BROKER, *TASK_QUEUES, *RESULT_QUEUES)

#: The broker methods a client may call; god-internal methods stay unreachable.
BROKER_METHODS = (
    "ping", "hello", "put_many", "lease", "ack_many", "heartbeat", "bye", "stats", "results_for",
    "set_limit", "ack_lease", "output", "worker_lost",
    "value_missing", "value_put", "value_get", "dead", "failed", "requeue", "purge", "task", "pause", "drain", "cancel", "schedule_add", "schedule_list", "schedule_remove",
    "dashboard_address", "reload_keys",
)
#: A connection's first request that asks god's hub to serve its broker calls (in place
#: of the stock 'accept_connection', which gives the connection a server thread).
ACCEPT_BROKER = "accept_broker"
#: The methods of the queue views, as a tutorial client expects from queue.Queue.
QUEUE_METHODS = ("put", "put_nowait", "get", "get_nowait", "empty", "qsize", "full")


class GodManager(BaseManager):
    """Client view of god: registered names, no callables (god/transport/server.py adds them)."""

    def __init__(self, address: tuple[str, int], authkey: bytes) -> None:
        super().__init__(address=address, authkey=authkey, serializer=transport.SERIALIZER)


for _name in REGISTERED:
    GodManager.register(_name)
