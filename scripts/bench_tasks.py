"""Task functions for scripts/bench.py (``--task scripts.bench_tasks:NAME``)."""

from __future__ import annotations

import asyncio
import time
from typing import Any


def nbytes(payload: Any) -> int:
    """The payload's length: a task whose work is nothing, so latency is all transport."""
    return len(payload)


def wait_5ms(payload: Any) -> Any:
    """Wait 5 ms (a task that waits on something else, as a crawler's do) and return the payload."""
    time.sleep(0.005)
    return payload


def wait_50ms(payload: Any) -> Any:
    """Wait 50 ms and return the payload."""
    time.sleep(0.05)
    return payload


async def await_50ms(payload: Any) -> Any:
    """Wait 50 ms as a coroutine (asyncio.sleep) and return the payload."""
    await asyncio.sleep(0.05)
    return payload
