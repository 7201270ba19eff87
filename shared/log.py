"""The roles' logger, and its setup, called once by each role's entry point (never at import).

Every module logs through ``from shared.log import logger``: loguru's logger, imported at its
first use. Importing loguru imports asyncio, logging and multiprocessing, 70 ms of a command's
start on this machine, and a command such as ``god status`` or a producer reaches god before it
has anything to log.
"""

from __future__ import annotations

import json as jsonlib
import sys
import threading
import time
import traceback
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, cast

from shared import hops
from shared.config import hostname

if TYPE_CHECKING:
    from loguru import Logger

FORMAT = (
    "<green>{time:HH:mm:ss.SSS}</green> <level>{level: <7}</level> "
    "<cyan>{extra[role]}@{extra[host]}[{process}]</cyan> {message}"
)


_options: dict[str, Any] = {"level": "INFO", "json": False}


class _Deferred:
    """Stands for loguru's logger (or one bound to ``extra``) until its first use, which imports
    loguru, applies the setup asked for so far, and keeps each attribute it hands out on itself
    (so a call costs what a call of loguru's own logger does)."""

    _real: Logger | None = None
    _lock = threading.Lock()  # two threads' first lines: set up once

    def __init__(self, extra: dict[str, Any] | None = None) -> None:
        self._extra = extra

    def bind(self, **extra: Any) -> Any:
        """loguru's ``bind``, without importing loguru (clients bind theirs as they are made)."""
        extra = {**self._extra, **extra} if self._extra else extra
        return _Deferred(extra) if _Deferred._real is None else _Deferred._real.bind(**extra)

    def __getattr__(self, name: str) -> Any:
        real = _Deferred._real or _import()
        value = getattr(real.bind(**self._extra) if self._extra else real, name)
        setattr(self, name, value)
        return value


def _import() -> Logger:
    with _Deferred._lock:
        if _Deferred._real is None:
            from loguru import logger as real

            if "role" in _options:
                _configure(real, **_options)
            _Deferred._real = real
        return _Deferred._real


logger = cast("Logger", _Deferred())

LOG_EVERY_S = 10.0  # seconds between lines of one kind, by default (RateLimitedLog)


class RateLimitedLog:
    """Log a kind of line at most once per period, saying how many were held back."""

    def __init__(self, every_s: float = LOG_EVERY_S, now: Callable[[], float] = time.monotonic, role: str = "god") -> None:
        self.every_s = every_s
        self._now = now
        self._last: dict[str, float] = {}
        self._held: dict[str, int] = {}
        self._lock = threading.Lock()
        self._log = logger.bind(role=role)

    def warning(self, kind: str, message: str, *args: Any) -> bool:
        """Log now unless this kind was logged within the period; True if it was logged."""
        with self._lock:
            now = self._now()
            if now - self._last.get(kind, -self.every_s - 1) < self.every_s:
                self._held[kind] = self._held.get(kind, 0) + 1
                return False
            self._last[kind] = now
            held = self._held.pop(kind, 0)
        suffix = f" ({held} more like it in the last {self.every_s:.0f}s not logged)" if held else ""
        self._log.warning(message + suffix, *args)
        return True


def count(n: int, noun: str, plural: str | None = None) -> str:
    """``1 task``, ``2 tasks``: a number and its noun, for lines people read."""
    return f"{n} {noun if n == 1 else plural or noun + 's'}"


def _flat(record: Any) -> None:
    """Put the record as one flat JSON object in extra["_json"] (for --log-json): time, level,
    role, host, pid, message, the fields bound to it, and an exception's traceback if any."""
    extra = record["extra"]
    line = {"time": record["time"].isoformat(timespec="milliseconds"), "level": record["level"].name,
            "role": extra.get("role"), "host": extra.get("host"), "pid": record["process"].id,
            "message": record["message"]}
    line.update((k, v) for k, v in extra.items() if k not in ("role", "host", "_json"))
    if record["exception"] is not None:
        kind, value, tb = record["exception"]
        line["exception"] = "".join(traceback.format_exception(kind, value, tb)).rstrip()
    extra["_json"] = jsonlib.dumps(line, default=str)


def setup_logging(role: str, *, level: str = "INFO", json: bool = False,
                  sink: Callable[[str], None] | None = None) -> None:
    """Send logs to stderr (or to sink), each line naming role, host and process; with json,
    each line one flat JSON object (loguru's own serialising nests its whole record, 900 bytes).

    ``diagnose=False`` keeps variable values (an authkey among them) out of tracebacks.
    """
    hops.start_from_environment(role)  # (scripts/bench.py's per-hop timings; off otherwise)
    with _Deferred._lock:
        _options.update(role=role, level=level, json=json, sink=sink)
        if _Deferred._real is not None:  # else at the first line logged
            _configure(_Deferred._real, **_options)


def _configure(real: Logger, *, role: str, level: str, json: bool, sink: Callable[[str], None] | None) -> None:
    real.remove()
    real.configure(extra={"role": role, "host": hostname()}, patcher=_flat if json else None)
    real.add(
        sink or sys.stderr,
        level=level.upper(),
        format=(lambda _: "{extra[_json]}\n") if json else FORMAT,
        backtrace=False,
        diagnose=False,
        colorize=None if not json else False,
    )


def redirect_logging(sink: Callable[[str], None] | None) -> None:
    """Send logs to sink (None: stderr again), set up as before; god's live view prints them above itself."""
    setup_logging(_options.get("role", "god"), level=_options["level"], json=_options["json"], sink=sink)
