"""A worker process: leases tasks from god over its own connection, runs them, acks them.

Its rooms: the lease/ack loop (consumer/loop.py), running the tasks one at a time
(consumer/serial.py) or up to --concurrency at once (consumer/concurrent.py, over
consumer/calls.py), the task functions by name (consumer/functions.py), results cut into
acks (consumer/acks.py), recycling (consumer/recycle.py).

What the worker cannot do for itself its consumer (the parent process) does: heartbeats
that go on while a task holds every thread of the worker (god counts a worker alive while
its consumer beats), and, when a worker dies, telling god which task it was running. For
that the worker keeps the task it runs in shared memory (consumer/places.py); the parent
reads it.
"""

from __future__ import annotations

import os
import signal
import sys
from multiprocessing.connection import Connection
from typing import Any

from consumer.concurrent import run_concurrently
from consumer.loop import Worker, WorkerSpec
from consumer.places import Shared
from consumer.serial import run_one_at_a_time
from shared import hops
from shared.errors import GodError, Interrupted
from shared.log import setup_logging


def worker_main(spec: WorkerSpec, control: Connection, shared: Shared, running: Any) -> None:
    """A worker process's life: see ``Worker``; says how it ended on the pipe, last."""
    # Ctrl-C reaches the whole process group, and Slurm's scancel (or a service manager's stop
    # without KillMode=mixed) sends SIGTERM to every process: the consumer decides how to stop,
    # not us (it drains: our running tasks finish).
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    hops.start_from_environment("worker")
    setup_logging("consumer", level=spec.log_level, json=spec.log_json)
    worker = Worker(spec, control, shared, running)
    try:
        (run_concurrently if spec.concurrency > 1 else run_one_at_a_time)(worker)
        end: tuple[Any, ...] = ("ended", worker.why)
    except Interrupted:  # told to drain while god was away: it serves our tasks again
        end = ("ended", "drained")
    except GodError as e:
        end = ("ended", "error", str(e), e.exit_code)
    finally:
        worker.close()
    if not worker.gone:
        try:
            control.send(end)
        except OSError:
            pass
    if worker.why == "replace":  # a task thread runs on and cannot be stopped: do not wait for it
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)
