"""Logging setup, called once by each role's entry point (never at import)."""

from __future__ import annotations

import json as jsonlib
import sys
import traceback
from collections.abc import Callable
from typing import Any

from loguru import logger

from shared.config import hostname

FORMAT = (
    "<green>{time:HH:mm:ss.SSS}</green> <level>{level: <7}</level> "
    "<cyan>{extra[role]}@{extra[host]}[{process}]</cyan> {message}"
)


_options: dict[str, Any] = {"level": "INFO", "json": False}


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
    _options.update(role=role, level=level, json=json)
    logger.remove()
    logger.configure(extra={"role": role, "host": hostname()}, patcher=_flat if json else None)
    logger.add(
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
