"""Dead letters: tasks god gave up on, kept to be looked at, served again or dropped.

What a list shows (id, queue, task, the payload cut short, reason, attempts, when) stays
in memory, a few hundred bytes a letter; the payload itself goes to the journal and is read
back only to serve the task again. Without a journal (``--no-journal``) the payload stays
in memory, as everything else then does. At most ``keep`` letters are kept: the oldest
go first, counted.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Protocol

from god.defaults import DEAD_KEEP
from god.store.values import ValueStore
from shared.records import RetryPolicy
from shared.resources import Res

SHOWN_CHARS = 80  # characters of a payload a list shows


@dataclass(slots=True)
class DeadLetter:
    """A task god gave up on."""

    id: str
    queue: str
    task: str | None
    priority: int
    retry: RetryPolicy | None  # its retry policy, for when it is served again
    shown: str  # its payload as lists show it (``shown``)
    reason: str
    attempts: int
    at: float  # Unix time it was given up
    payload: bytes | None = None  # pickled; None: in the journal
    values: tuple[str, ...] | None = None  # the large values its call names (god/store/values.py), kept with it
    resources: Res | None = None  # what it needs of a consumer (shared/resources.py), when it is served again

    def figures(self) -> dict[str, Any]:
        """What ``god dead`` shows of it."""
        return {"id": self.id, "queue": self.queue, "task": self.task, **payload_figures(self.shown),
                "reason": self.reason, "attempts": self.attempts, "time": self.at}


def shown(payload: Any) -> str:
    """A payload as a list shows it: its JSON when it has one (as result lines write it), else
    its repr; cut short."""
    try:
        text = json.dumps(payload)
    except (TypeError, ValueError):
        text = repr(payload)
    return text if len(text) <= SHOWN_CHARS else text[: SHOWN_CHARS - 3] + "..."


def shown_text(text: str | None) -> str:
    """A payload's JSON, as its results line has it, as a list shows it: cut short (None: the
    consumer did not say, "null")."""
    if text is None:
        return "null"
    return text if len(text) <= SHOWN_CHARS else text[: SHOWN_CHARS - 3] + "..."


def payload_figures(text: str) -> dict[str, Any]:
    """What a JSON listing says of a payload shown as text: "payload", its JSON value when the
    text is one whole (not cut short, not a repr), else the text; and "shown", the text."""
    try:
        value = json.loads(text)
    except ValueError:
        value = text
    return {"payload": value, "shown": text}


class DeadJournal(Protocol):
    """What the dead letters need of the journal (god/journal/journal.py)."""

    def add_dead(self, letters: list[DeadLetter]) -> int: ...

    def drop_dead(self, ids: list[str]) -> int: ...

    def dead_payloads(self, ids: list[str]) -> dict[str, bytes]: ...


class DeadLetters:
    """The kept dead letters, oldest first; not thread-safe (the state's lock guards it). The
    rules that give tasks up and serve them again are god/rules/dead_letters.py's."""

    def __init__(self, keep: int = DEAD_KEEP, journal: DeadJournal | None = None,
                 values: ValueStore | None = None) -> None:
        self.keep = keep
        self.journal = journal
        self.values = values  # the large values letters name are kept while they are
        self._letters: dict[str, DeadLetter] = {}
        self.dropped = 0  # letters let go to stay within keep

    def __len__(self) -> int:
        return len(self._letters)

    def __contains__(self, tid: str) -> bool:
        return tid in self._letters

    def get(self, tid: str) -> DeadLetter | None:
        return self._letters.get(tid)

    def restore(self, letters: Iterable[DeadLetter]) -> None:
        """Take over the letters a journal held (their payloads stay there)."""
        for d in letters:
            self._letters[d.id] = d
            self.hold_values(d)
        self._trim()

    def add(self, letters: list[DeadLetter]) -> None:
        """Keep new dead letters (their values held already: ``hold_values``), letting the
        oldest go beyond ``keep``."""
        if self.journal is not None:
            self.journal.add_dead(letters)
            for d in letters:
                d.payload = None
        for d in letters:
            old = self._letters.pop(d.id, None)
            if old is not None and old.values and self.values is not None:  # (a letter of that id before)
                self.values.unpin(("dead", d.id), old.values)
            self._letters[d.id] = d
        self._trim()

    def hold_values(self, d: DeadLetter) -> None:
        """Keep the large values a letter names while it is kept (from before its batch lets
        them go: god/rules/dead_letters.py)."""
        if d.values and self.values is not None:
            self.values.pin(("dead", d.id), d.values)

    def _trim(self) -> None:
        """Let the oldest letters go beyond ``keep``."""
        over = len(self._letters) - self.keep
        if over > 0:
            gone = [tid for tid, _ in zip(self._letters, range(over))]
            self._remove(gone)
            self.dropped += over

    def listing(self, queue: str | None = None) -> list[DeadLetter]:
        """The letters, oldest first, of one queue or all."""
        return [d for d in self._letters.values() if queue is None or d.queue == queue]

    def unknown(self, ids: list[str]) -> list[str]:
        """Those of ids that are no dead letter kept here."""
        return [tid for tid in ids if tid not in self._letters]

    def payloads(self, ids: list[str]) -> list[tuple[DeadLetter, bytes]]:
        """Letters (all known) with their pickled payloads."""
        letters = [self._letters[tid] for tid in ids]
        on_disk = [d.id for d in letters if d.payload is None]
        payloads = self.journal.dead_payloads(on_disk) if self.journal is not None and on_disk else {}
        out = []
        for d in letters:
            blob = d.payload if d.payload is not None else payloads.get(d.id)
            if blob is not None:
                out.append((d, blob))
        return out

    def remove(self, ids: list[str]) -> None:
        """Let letters go (served again)."""
        self._remove(ids)

    def purge(self, queue: str | None = None, before: float | None = None) -> int:
        """Drop the letters of a queue (or all) given up before a Unix time (or any); how many."""
        gone = [d.id for d in self._letters.values()
                if (queue is None or d.queue == queue) and (before is None or d.at < before)]
        self._remove(gone)
        return len(gone)

    def _remove(self, ids: list[str]) -> None:
        for tid in ids:
            d = self._letters.pop(tid, None)
            if d is not None and d.values and self.values is not None:
                self.values.unpin(("dead", tid), d.values)
        if ids and self.journal is not None:
            self.journal.drop_dead(ids)
