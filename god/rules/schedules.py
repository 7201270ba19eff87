"""Periodic tasks: god puts a schedule's task when it is due, once per period however many
consumers there are, and a period missed while god was down runs once when it is back.

A schedule's runs are numbered, and a run's task id is ``schedule-NAME/RUN``: its put and the
schedule's next time are journaled one after the other, so a god that dies between them
puts the same run again on restart, which god's dedupe (all up to N of a producer) drops.
The record and the crontab parser are god/store/schedules.py's.
"""

from __future__ import annotations

import math

from typing import Any

from god.rules.state import State
from god.store.schedules import Schedule, check_name, parse_cron
from shared import items
from shared.records import Put


class Schedules:
    """Adding, listing and removing schedules, and putting their tasks when due."""

    def __init__(self, state: State) -> None:
        self.state = state

    def add(self, name: str, every: float | None, cron: str | None, queue: str, task: str | None,
            payload: Any) -> dict[str, Any]:
        """Put a task every so many seconds, or at the times of a crontab line; journaled.

        Raises:
            ValueError: a name taken, a bad name, period or crontab line.
        """
        check_name(name)
        if (every is None) == (cron is None):
            raise ValueError("a schedule runs every N seconds or at the times of a crontab line: one of them")
        if every is not None and not (isinstance(every, (int, float)) and math.isfinite(every) and every >= 1):
            raise ValueError(f"every {every!r}: expected seconds, 1 or more")
        blob = items.dump([payload])  # (it came as data)
        st = self.state
        with st.lock:
            if name in st.schedules:
                raise ValueError(f"schedule {name} exists already: remove it first")
            now = st.wall()
            first = parse_cron(cron).next_after(now) if cron is not None else now + float(every or 0)
            s = st.schedules[name] = Schedule(name, float(every) if every is not None else None, cron, queue, task,
                                              blob, first)
            if st.journal is not None:
                st.journal.set_schedule(s)
            return s.figures(payload)

    def listing(self) -> list[dict[str, Any]]:
        """Every schedule, by name."""
        st = self.state
        with st.lock:
            return [s.figures(s.shown()) for _, s in sorted(st.schedules.items())]

    def remove(self, name: str) -> dict[str, Any]:
        """Stop a schedule (tasks it put already stay); returns what it was.

        Raises:
            ValueError: no schedule of that name.
        """
        st = self.state
        with st.lock:
            s = st.schedules.pop(name, None)
            if s is None:
                raise ValueError(f"god knows no schedule {name} (schedules: {', '.join(sorted(st.schedules)) or 'none'})")
            if st.journal is not None:
                st.journal.drop_schedule(name)
            return s.figures(s.shown())

    def run_due(self, now: float) -> int:
        """Put the task of each schedule due at Unix time now; a schedule missed for several
        periods (god was down) runs once. Returns how many were put (lock held)."""
        st = self.state
        n = 0
        for s in st.schedules.values():
            if s.next > now:
                continue
            first = s.runs + 1
            if first > st.upto.get(s.producer, 0):  # (else put already, before a crash: not again)
                put: Put = (first, 1, s.payload, s.queue, s.task, 0, None, None, None, None, None)
                if st.add_batch(s.producer, put, False) < 0:
                    continue  # god is full: tried again at the next look
                n += 1
            s.runs, s.next = first, s.after(now)
            if st.journal is not None:
                st.journal.set_schedule(s)
        return n
