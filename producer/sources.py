"""Where tasks come from: rounds of random integers (the tutorial), or JSON lines."""

from __future__ import annotations

import json
import random
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from shared.errors import ConfigError

LOW, HIGH = 0, 999  # the tutorial's random integers, inclusive
_JSON_SPACE = " \t\n\r"  # what json allows around a value (str.strip would take more)
_scan = json.JSONDecoder().raw_decode


def parse_line(line: str) -> Any:
    """The JSON value on a line, exactly as ``json.loads(line)`` reads it, in a third of the
    time: ``loads`` matches a regular expression on each side of the value, which at small
    payloads cost more than the value itself (0.88 us a line against 0.29 us).

    Raises:
        json.JSONDecodeError: the line is not one JSON value.
    """
    start = len(line) - len(line.lstrip(_JSON_SPACE))
    value, end = _scan(line, start)
    if end != len(line.rstrip(_JSON_SPACE)):
        rest = line[end:]
        raise json.JSONDecodeError("Extra data", line, end + len(rest) - len(rest.lstrip(_JSON_SPACE)))
    return value


@dataclass(slots=True)
class Batch:
    """Payloads to put together, and where each came from (for error messages)."""

    payloads: list[Any]
    name: str  # the file ("tasks.jsonl", "stdin") or the round ("round 3")
    lines: list[int] | None = None  # line of each payload in the file
    size: int = 0  # characters of the file these payloads came from (blank lines included)

    def where(self, i: int) -> str:
        """``tasks.jsonl:12`` or ``round 3, task 4``: where payload i came from."""
        if self.lines is not None:
            return f"{self.name}:{self.lines[i]}"
        return f"{self.name}, task {i + 1}"


def random_rounds(rounds: int | None, per_round: int, rng: random.Random | None = None) -> Iterator[Batch]:
    """Yield ``rounds`` batches (forever with None) of ``per_round`` random integers 0..999."""
    rng = rng or random.Random()
    n = 0
    while rounds is None or n < rounds:
        n += 1
        yield Batch([rng.randint(LOW, HIGH) for _ in range(per_round)], f"round {n}")


def json_lines(lines: Iterable[str], *, name: str, batch_size: int) -> Iterator[Batch]:
    """Yield batches of payloads, one per non-blank JSON line.

    A bad line ends the stream with an error naming it, after the lines before it have
    been yielded (so they are put, and nothing before the mistake is lost).

    Raises:
        ConfigError: ``NAME:LINE: not valid JSON (...)``.
    """
    batch = Batch([], name, [])
    payloads, size = batch.payloads, 0
    numbers: list[int] = []
    for lineno, line in enumerate(lines, 1):
        size += len(line)
        try:
            payloads.append(parse_line(line))
        except (json.JSONDecodeError, RecursionError) as e:
            if not line.strip():
                continue  # a blank line (rarer than a good one: looked at only here)
            if payloads:
                batch.lines, batch.size = numbers, size
                yield batch
            why = f"{e.msg} at column {e.colno}" if isinstance(e, json.JSONDecodeError) else "nested too deeply"
            raise ConfigError(f"{name}:{lineno}: not valid JSON ({why})") from None
        numbers.append(lineno)
        if len(numbers) >= batch_size:
            batch.lines, batch.size = numbers, size
            yield batch
            batch = Batch([], name, [])
            payloads, numbers, size = batch.payloads, [], 0
    if payloads:
        batch.lines, batch.size = numbers, size
        yield batch
