"""Task functions for scripts/bench.py (``--task scripts.bench_tasks:NAME``)."""

from __future__ import annotations

from typing import Any


def nbytes(payload: Any) -> int:
    """The payload's length: a task whose work is nothing, so latency is all transport."""
    return len(payload)
