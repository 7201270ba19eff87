"""Schedules' record and times: the ``Schedule`` god journals, and a crontab line's next time.

Times are every N seconds, or the five fields of a crontab line (minute, hour, day of
month, month, day of week: numbers, ``*``, lists, ranges and steps, month and day names;
day of month and day of week both restricted: either matches, as cron has it), in god's
local time. No library: the parser is fifty lines; croniter, the usual choice, was declared
abandoned by its author at the end of 2024 (pallets-eco has taken it up since, while its
PyPI page still says not to use it), and cronsim would be a dependency for those fifty lines.
The rules that put a schedule's tasks are in god/rules/schedules.py.
"""

from __future__ import annotations

import datetime as dt
import math
import re
from dataclasses import dataclass
from typing import Any

from shared import items

PRODUCER_PREFIX = "schedule-"  # a schedule's tasks come from producer schedule-NAME
_NAME_RX = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
_FIELDS = (("minute", 0, 59), ("hour", 0, 23), ("day of month", 1, 31), ("month", 1, 12), ("day of week", 0, 7))
_NAMES = {3: ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"],
          4: ["sun", "mon", "tue", "wed", "thu", "fri", "sat"]}


def check_name(name: str) -> str:
    """A schedule's name, checked.

    Raises:
        ValueError: not 1 to 64 of [A-Za-z0-9_.-].
    """
    if not isinstance(name, str) or not _NAME_RX.match(name):
        raise ValueError(f"schedule name {name!r} is not allowed: use [A-Za-z0-9_.-], 1 to 64 characters")
    return name


@dataclass(frozen=True)
class Cron:
    """The five fields of a crontab line, as the sets of values each allows."""

    text: str
    minutes: frozenset[int]
    hours: frozenset[int]
    days: frozenset[int]
    months: frozenset[int]
    weekdays: frozenset[int]  # 0 Sunday .. 6 Saturday
    any_day: bool  # day of month is *
    any_weekday: bool  # day of week is *

    def _day_matches(self, d: dt.date) -> bool:
        weekday = (d.weekday() + 1) % 7
        if self.any_day or self.any_weekday:
            return d.day in self.days and weekday in self.weekdays
        return d.day in self.days or weekday in self.weekdays  # both restricted: either, as in cron

    def next_after(self, t: float) -> float:
        """The first minute after Unix time t that the fields allow (local time)."""
        start = dt.datetime.fromtimestamp(t).replace(second=0, microsecond=0) + dt.timedelta(minutes=1)
        day = start.date()
        for _ in range(366 * 5):  # a Feb 29 that is a Monday can be years away
            if day.month in self.months and self._day_matches(day):
                first = start.time() if day == start.date() else dt.time(0, 0)
                for hour in sorted(h for h in self.hours if h >= first.hour):
                    low = first.minute if hour == first.hour else 0
                    minute = next((m for m in sorted(self.minutes) if m >= low), None)
                    if minute is not None:
                        return dt.datetime.combine(day, dt.time(hour, minute)).timestamp()
            day += dt.timedelta(days=1)
        raise ValueError(f"cron {self.text!r} never comes")


def parse_cron(text: str) -> Cron:
    """A crontab line's five time fields.

    Raises:
        ValueError: naming the field that is wrong.
    """
    parts = text.split()
    if len(parts) != 5:
        raise ValueError(f"cron {text!r}: expected five fields (minute hour day-of-month month day-of-week), "
                         f"e.g. '*/15 * * * *'")
    sets = [_field(part, i, text) for i, part in enumerate(parts)]
    weekdays = frozenset(d % 7 for d in sets[4])  # 7 is Sunday too
    cron = Cron(text, sets[0], sets[1], sets[2], sets[3], weekdays, parts[2] == "*", parts[4] == "*")
    cron.next_after(dt.datetime(2000, 1, 1).timestamp())  # one that never comes (Feb 30) is an error here
    return cron


def _field(part: str, i: int, text: str) -> frozenset[int]:
    what, low, high = _FIELDS[i]
    out: set[int] = set()
    for item in part.lower().split(","):
        m = re.fullmatch(r"(\*|[a-z0-9]+)(?:-([a-z0-9]+))?(?:/(\d+))?", item)
        if m is None:
            raise ValueError(f"cron {text!r}: {what} {item!r} is not N, A-B, *, or one of them /STEP")
        start, end, step = m.group(1), m.group(2), int(m.group(3) or 1)
        if step < 1:
            raise ValueError(f"cron {text!r}: {what} step {step} is not 1 or more")
        if start == "*":
            a, z = low, high
        else:
            a = _value(start, i, what, low, high, text)
            z = _value(end, i, what, low, high, text) if end is not None else (high if m.group(3) else a)
        if z < a:
            raise ValueError(f"cron {text!r}: {what} range {item!r} runs backwards")
        out.update(range(a, z + 1, step))
    return frozenset(out)


def _value(token: str, i: int, what: str, low: int, high: int, text: str) -> int:
    names = _NAMES.get(i)
    if names is not None and token in names:
        return names.index(token) + (1 if i == 3 else 0)
    if not token.isdigit() or not low <= int(token) <= high:
        raise ValueError(f"cron {text!r}: {what} {token!r} is not from {low} to {high}")
    return int(token)


@dataclass(slots=True)
class Schedule:
    """A task god puts every so often."""

    name: str
    every: float | None  # seconds, or
    cron: str | None  # a crontab line's five fields
    queue: str
    task: str | None
    payload: bytes  # a blob of one (shared/items.py)
    next: float  # Unix time it is next due
    runs: int = 0  # runs so far: the next one's task is schedule-NAME/runs+1

    @property
    def producer(self) -> str:
        return PRODUCER_PREFIX + self.name

    def after(self, now: float) -> float:
        """When it is due next, after a run at (or a missed run found at) now: once, not once
        per period missed."""
        if self.cron is not None:
            return parse_cron(self.cron).next_after(now)
        assert self.every is not None
        return self.next + self.every * max(1, math.floor((now - self.next) / self.every) + 1)

    def shown(self) -> Any:
        """Its payload as listings show it (it came as data: as it is)."""
        data, payload = items.item(items.load(self.payload), 0)
        return payload if data else items.opaque_view(payload)

    def figures(self, payload: Any) -> dict[str, Any]:
        """What ``schedule list`` shows of it."""
        return {"name": self.name, "every": self.every, "cron": self.cron, "queue": self.queue, "task": self.task,
                "payload": payload, "next": self.next, "runs": self.runs}
