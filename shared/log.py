"""Logging setup, called once by each role's entry point (never at import)."""

from __future__ import annotations

import sys
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


def setup_logging(role: str, *, level: str = "INFO", json: bool = False,
                  sink: Callable[[str], None] | None = None) -> None:
    """Send logs to stderr (or to sink), each line naming role, host and process.

    ``diagnose=False`` keeps variable values (an authkey among them) out of tracebacks.
    """
    _options.update(role=role, level=level, json=json)
    logger.remove()
    logger.configure(extra={"role": role, "host": hostname()})
    logger.add(
        sink or sys.stderr,
        level=level.upper(),
        format=FORMAT,
        serialize=json,
        backtrace=False,
        diagnose=False,
        colorize=None if not json else False,
    )


def redirect_logging(sink: Callable[[str], None] | None) -> None:
    """Send logs to sink (None: stderr again), set up as before; god's live view prints them above itself."""
    setup_logging(_options.get("role", "god"), level=_options["level"], json=_options["json"], sink=sink)
