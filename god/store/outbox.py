"""The outbox: results the rules recorded that the recorder (god/journal/recorder.py) has not
taken yet, each as its results lines and the runs of tasks they settle."""

from __future__ import annotations

from shared.records import Run

#: Result lines (each ending in a newline) and the runs they settle.
Outgoing = tuple[str, list[Run]]
