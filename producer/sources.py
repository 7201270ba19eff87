"""Where tasks come from: rounds of random integers (the tutorial), or JSON lines."""

from __future__ import annotations

import json
import random
from collections.abc import Iterable, Iterator
from typing import Any

from shared.errors import ConfigError

LOW, HIGH = 0, 999  # the tutorial's random integers, inclusive


def random_rounds(rounds: int | None, per_round: int, rng: random.Random | None = None) -> Iterator[list[int]]:
    """Yield ``rounds`` lists (forever with None) of ``per_round`` random integers 0..999."""
    rng = rng or random.Random()
    n = 0
    while rounds is None or n < rounds:
        n += 1
        yield [rng.randint(LOW, HIGH) for _ in range(per_round)]


def json_lines(lines: Iterable[str], *, name: str, batch_size: int) -> Iterator[list[Any]]:
    """Yield batches of payloads, one per non-blank JSON line.

    A bad line ends the stream with an error naming it, after the lines before it have
    been yielded (so they are put, and nothing before the mistake is lost).

    Raises:
        ConfigError: ``NAME:LINE: not valid JSON (...)``.
    """
    batch: list[Any] = []
    for lineno, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            batch.append(json.loads(line))
        except json.JSONDecodeError as e:
            if batch:
                yield batch
            raise ConfigError(f"{name}:{lineno}: not valid JSON ({e.msg} at column {e.colno})") from None
        if len(batch) >= batch_size:
            yield batch
            batch = []
    if batch:
        yield batch
