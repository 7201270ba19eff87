"""How many workers (and consumers) a queue's backlog wants now: one rule for god's status,
/metrics and the dashboard, which any autoscaler can follow (scripts/slurm-consumers.sh
--adapt does: consumer/adapt.py).

A backlog wants as many workers as keep each busy for DRAIN_S: its tasks (waiting and
running) times the time one takes, as the queue's finished tasks measured it, over DRAIN_S,
and never more than one a task. 10,000 tasks of 1 ms are 10 s of work: one worker. 200 tasks
of 10 s are 2,000 s: 67 workers (a job started for them has a minute's work, at least). A
queue no task finished on yet counts DEFAULT_TASK_S a task.
"""

from __future__ import annotations

import math

DRAIN_S = 30.0  # seconds of work that make another worker worth starting
DEFAULT_TASK_S = 1.0  # a task's time on a queue where none finished yet
WEIGHT = 0.2  # of a newly finished slice in a queue's measured task time (the rest: what it was)


def measured(task_s: float | None, elapsed: float, n: int, concurrency: int) -> float:
    """A queue's task time, with a slice of n tasks that took elapsed seconds on a worker that
    runs concurrency tasks at once taken in."""
    one = elapsed * max(1, concurrency) / max(1, n)
    return one if task_s is None else (1 - WEIGHT) * task_s + WEIGHT * one


def workers_wanted(waiting: int, running: int, task_s: float | None) -> int:
    """Workers the backlog wants (the module's docstring)."""
    tasks = waiting + running
    if tasks <= 0:
        return 0
    work = tasks * (task_s if task_s is not None else DEFAULT_TASK_S)
    return max(1, min(tasks, math.ceil(work / DRAIN_S)))


def consumers_wanted(workers: int, per_consumer: float) -> int:
    """Consumers that give that many workers, each with per_consumer (those serving the queue's
    average; 1 if none serves it)."""
    return math.ceil(workers / max(1.0, per_consumer)) if workers else 0
