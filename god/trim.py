"""Memory god no longer uses goes back to the system.

glibc's malloc keeps what is freed for reuse, in an arena per thread that allocates: god's
threads (the hub reading calls, the journal's writer, the monitor writing results) allocate
and free in turns, and the freed pages stayed with the process. God's RSS crept up by about
2.3 MB a million tasks while what Python held stayed at 18 MB (scripts/bench.py --sections
growth: 47 to 65 MB over 8 million tiny tasks; 45 to 53 MB with this). Asking glibc each
second to return its free pages (``malloc_trim``) keeps RSS near what is in use; the call
releases the GIL and takes well under a millisecond. Elsewhere (musl, macOS) it does nothing.
"""

from __future__ import annotations

import ctypes
import time
from collections.abc import Callable

TRIM_EVERY_S = 1.0  # seconds between trims


def _malloc_trim() -> Callable[[int], int] | None:
    try:
        f = ctypes.CDLL(None).malloc_trim  # the C library this process runs on
    except (OSError, AttributeError):
        return None
    f.argtypes = [ctypes.c_size_t]
    f.restype = ctypes.c_int
    return f


class Trimmer:
    """Returns free memory to the system at most every ``every`` seconds."""

    def __init__(self, every: float = TRIM_EVERY_S, now: Callable[[], float] = time.monotonic) -> None:
        self.every = every
        self._now = now
        self._trim = _malloc_trim()
        self._at = now()

    def step(self) -> None:
        now = self._now()
        if self._trim is not None and now - self._at >= self.every:
            self._at = now
            self._trim(0)
