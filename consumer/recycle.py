"""Recycling: a worker process is replaced by a fresh one after so many tasks, or once its
memory grew past a bound, for task code that leaks (consumer --max-tasks-per-worker,
--max-worker-memory)."""

from __future__ import annotations

import os
import resource
from dataclasses import dataclass

from shared.log import count


@dataclass(frozen=True)
class Recycle:
    """When a worker process is replaced by a fresh one, for task code that leaks."""

    tasks: int | None = None  # after this many tasks
    memory_mb: float | None = None  # once its RSS passed this many MB

    def due(self, tasks: int) -> str | None:
        """Why a worker that started this many tasks is to be replaced now; None: it is not."""
        if self.tasks is not None and tasks >= self.tasks:
            return f"ran {count(tasks, 'task')} (--max-tasks-per-worker {self.tasks})"
        if self.memory_mb is not None and (mb := rss_mb()) > self.memory_mb:
            return f"uses {mb:.0f} MB (--max-worker-memory {self.memory_mb:g})"
        return None


NO_RECYCLE = Recycle()


def rss_mb() -> float:
    """This process's resident memory now, in MB (its peak where /proc is missing)."""
    try:
        with open("/proc/self/statm", "rb") as f:
            return int(f.read().split()[1]) * _PAGE / 2**20
    except (OSError, IndexError, ValueError):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kB on Linux


_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096
