"""A task's states, named once: every figure, status line, metric, the live view, the dashboard
and ``god task`` use these words.

A task put is ``blocked`` while it waits for other tasks' results and ``scheduled`` while it
waits for its time; then ``waiting`` on its queue, ``running`` once a consumer holds it (back
to ``waiting`` if that consumer is lost, to ``scheduled`` when it fails with retries left), and
at last ``done``, ``failed`` or ``dead``.
"""

from __future__ import annotations

from enum import Enum


class TaskState(str, Enum):
    """Where a task is. The value is the word shown and the key in god's figures."""

    BLOCKED = "blocked"  # waits for other tasks' results (an Executor future among its arguments, --after)
    SCHEDULED = "scheduled"  # waits off its queue for its time: a delay, ``at``, a retry's backoff
    WAITING = "waiting"  # on its queue, to be handed to a consumer
    RUNNING = "running"  # leased to a consumer, until its result comes or its consumer is lost
    DONE = "done"  # has its result, a success
    FAILED = "failed"  # has its result, a failure (cancelled tasks among them)
    DEAD = "dead"  # given up on and kept as a dead letter, to be looked at, served again or purged

    def __str__(self) -> str:
        return self.value


#: The figures' keys before each state had one name (god 0.1): god still sends them beside the
#: new ones, for scripts that read ``god status --json`` or /api/status. Gone in the next release.
OLD_KEYS = {"pending": TaskState.WAITING, "in_flight": TaskState.RUNNING}
