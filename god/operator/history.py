"""The last hour of god's figures, a sample a second, for the dashboard's charts.

Bounded: 3,600 samples of a few numbers each (about 1 MB with their queues), kept in memory
only; a restarted god starts a new hour.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from typing import Any

from shared.stats import Stats

KEEP_S = 3600  # seconds of samples kept


class History:
    """Samples of god's figures, oldest first; ``add`` from the monitor, ``since`` from any thread."""

    def __init__(self, keep: int = KEEP_S) -> None:
        self._samples: deque[dict[str, Any]] = deque(maxlen=keep)
        self._lock = threading.Lock()

    def add(self, stats: Stats, rate: float, at: float | None = None) -> None:
        """One sample: totals, the rate, and each queue's depth."""
        sample = {
            "time": time.time() if at is None else at, "rate": rate, "done": stats["done"],
            "failed": stats["failed"], "dead": stats["dead"], "waiting": stats["waiting"],
            "running": stats["running"], "scheduled": stats["scheduled"], "blocked": stats["blocked"],
            "queues": {name: q["waiting"] for name, q in stats["queues"].items()},
            "queues_done": {name: q["done"] + q["failed"] + q["dead"] for name, q in stats["queues"].items()},
        }
        with self._lock:
            self._samples.append(sample)

    def since(self, t: float = 0.0) -> list[dict[str, Any]]:
        """The samples after Unix time t, oldest first."""
        with self._lock:
            return [s for s in self._samples if s["time"] > t]
