"""Clients written the tutorial's way: a bare BaseManager subclass, registered names, queue calls.

Run as ``python -m tests.support.tutorial_clients master|worker|seed-worker TASK_NAME RESULT_NAME``; god's address
and key come from GOD_ADDRESS and GOD_AUTHKEY (the tutorial hard-codes them).
"""

import os
import queue
import random
import sys
from multiprocessing.managers import BaseManager


class QueueManager(BaseManager):
    pass


def connect(task_name, result_name):
    QueueManager.register(task_name)
    QueueManager.register(result_name)
    host, port = os.environ["GOD_ADDRESS"].rsplit(":", 1)
    m = QueueManager(address=(host, int(port)), authkey=os.environ["GOD_AUTHKEY"].encode())
    m.connect()
    return getattr(m, task_name)(), getattr(m, result_name)()


def master(task, result, n=10):
    for _ in range(n):
        x = random.randint(0, 10000)
        print("Put task %d..." % x, flush=True)
        task.put(x)
    print("Try get results...", flush=True)
    for _ in range(n):
        r = result.get(timeout=20)
        print("Result: %s" % r, flush=True)


def worker(task, result, positional=False):
    while True:
        try:
            n = task.get(True, 3) if positional else task.get(timeout=3)
        except queue.Empty:
            print("task queue is empty.", flush=True)
            break
        r = "%d * %d = %d" % (n, n, n * n)
        print("run task %d * %d..." % (n, n), flush=True)
        result.put(r)
    print("worker exit. empty=%s" % task.empty(), flush=True)


if __name__ == "__main__":
    role, task_name, result_name = sys.argv[1:4]
    t, r = connect(task_name, result_name)
    if role == "master":
        master(t, r)
    else:  # "worker", or "seed-worker": another tutorial's style, get(True, timeout)
        worker(t, r, positional=role == "seed-worker")
