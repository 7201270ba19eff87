"""Logging setup, called once by each role's entry point (never at import)."""

from __future__ import annotations

import sys

from loguru import logger

from shared.config import hostname

FORMAT = (
    "<green>{time:HH:mm:ss.SSS}</green> <level>{level: <7}</level> "
    "<cyan>{extra[role]}@{extra[host]}[{process}]</cyan> {message}"
)


def setup_logging(role: str, *, level: str = "INFO", json: bool = False) -> None:
    """Send logs to stderr, each line naming role, host and process.

    ``diagnose=False`` keeps variable values (an authkey among them) out of tracebacks.
    """
    logger.remove()
    logger.configure(extra={"role": role, "host": hostname()})
    logger.add(
        sys.stderr,
        level=level.upper(),
        format=FORMAT,
        serialize=json,
        backtrace=False,
        diagnose=False,
        colorize=None if not json else False,
    )
