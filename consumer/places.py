"""What a worker process and its consumer share in memory: the worker's counts, the round trip
to god, and which task runs in each of its places (the consumer reads them when the worker dies
or runs over its time)."""

from __future__ import annotations

import ctypes

from shared.records import Run

KILL_GRACE_S = 3.0  # seconds past --task-timeout before the consumer kills a worker that could stop the task itself


class Shared(ctypes.Structure):
    """What a worker and its consumer share: its counts, and the round trip to god."""

    _fields_ = [
        ("done", ctypes.c_int64),  # results acked, successes and failures
        ("failed", ctypes.c_int64),
        ("tasks", ctypes.c_int64),  # tasks started, ever: a death before the first is a broken worker
        ("rtt_s", ctypes.c_double),  # a round trip to god, as the consumer's heartbeats measure it
    ]


class Running(ctypes.Structure):
    """One of a worker's --concurrency places to run a task: which task runs there, since when."""

    _fields_ = [
        ("producer", ctypes.c_char * 1024),  # the task's grant (its producer, first seq) ...
        ("first", ctypes.c_int64),
        ("seq", ctypes.c_int64),  # ... and its seq; -1: none runs here
        ("since", ctypes.c_double),  # monotonic time it started (one worker: with --task-timeout only)
        ("grace", ctypes.c_double),  # seconds past --task-timeout the worker has to stop it itself
    ]


def running_task(r: Running) -> Run | None:
    """The run of the task that runs in place r (or ran there when its worker died)."""
    seq = r.seq
    if seq < 0:
        return None
    return (r.producer.decode(), r.first, seq, seq + 1)
