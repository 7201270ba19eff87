"""Results kept for the producers that asked for them (``--wait``, the Python API, executors).

A producer that says so in its hello gets a mailbox: the results of its tasks are posted
there as they come, a run of tasks at a time, numbered, and stay until the producer
confirms it has them (the number it sends with its next call). A retried call after a lost
reply so gets the same results again, and nothing is dropped.

With a journal, a producer's mailbox and what waits in it are journaled too (``durable``),
so a god killed and restarted hands a waiting producer every result it had not confirmed:
each run is journaled as it is posted, and dropped from the journal once confirmed.
"""

from __future__ import annotations

import threading
from collections import deque
from typing import Protocol

from god.store.values import ValueStore, names_in
from shared import items
from shared.records import Value

#: A run of results: (lo, hi, pickled list of Value for seqs [lo, hi), consumer, attempt).
Item = tuple[int, int, bytes, str, int]
#: What a mailbox holds: (number, item).
Posted = tuple[int, Item]


class MailJournal(Protocol):
    """What mailboxes need of the journal (god/journal/journal.py)."""

    def open_mailbox(self, producer: str) -> int: ...

    def close_mailbox(self, producer: str) -> int: ...

    def add_mail(self, producer: str, item: Item) -> int: ...

    def drop_mail(self, producer: str, los: list[int]) -> int: ...


class Mailboxes:
    """One mailbox per producer that wants its results; thread-safe, and nothing here waits."""

    def __init__(self, journal: MailJournal | None = None, values: ValueStore | None = None) -> None:
        """``values``: god's large values, kept while a result waiting here names them."""
        self._values = values
        self._boxes: dict[str, deque[Posted]] = {}
        self._numbers: dict[str, int] = {}
        self._durable: set[str] = set()  # producers whose mailboxes the journal keeps
        self._journal = journal
        self._lock = threading.Lock()
        #: The journal ticket of the last run posted: what a results file line must not come
        #: before (a restarted god counts a task whose line it finds as done, and its value
        #: must be in the journal then).
        self.ticket = 0

    def __contains__(self, producer: object) -> bool:
        return producer in self._boxes

    def open(self, producer: str, *, durable: bool = False) -> None:
        """Keep results for this producer from now on (again after a reconnect: same box);
        ``durable``: in the journal too (a producer's; not a tutorial view's)."""
        with self._lock:
            self._boxes.setdefault(producer, deque())
            self._numbers.setdefault(producer, 0)
            if durable and self._journal is not None and producer not in self._durable:
                self._durable.add(producer)
                self._journal.open_mailbox(producer)

    def restore(self, producer: str, items: list[Item]) -> None:
        """A durable mailbox as a journal kept it, with the runs that waited in it."""
        with self._lock:
            box = self._boxes.setdefault(producer, deque())
            self._durable.add(producer)
            for item in items:
                self._numbers[producer] = self._numbers.get(producer, 0) + 1
                box.append((self._numbers[producer], item))
                self._keep(producer, item)
            self._numbers.setdefault(producer, 0)

    def post(self, producer: str, item: Item) -> None:
        """Results of the producer's tasks, if it has a mailbox."""
        with self._lock:
            box = self._boxes.get(producer)
            if box is None:
                return
            self._numbers[producer] += 1
            box.append((self._numbers[producer], item))
            self._keep(producer, item)
            if producer in self._durable and self._journal is not None:
                self.ticket = self._journal.add_mail(producer, item)

    def take(self, producer: str, confirmed: int, max_n: int) -> list[Posted]:
        """Drop what the producer confirmed (numbers up to ``confirmed``), then return up to
        max_n runs of results."""
        with self._lock:
            box = self._boxes.get(producer)
            if box is None:
                return []
            dropped = []
            while box and box[0][0] <= confirmed:
                item = box.popleft()[1]
                dropped.append(item[0])
                self._keep(producer, item, False)
            if dropped and producer in self._durable and self._journal is not None:
                self._journal.drop_mail(producer, dropped)
            return [box[i] for i in range(min(max_n, len(box)))]

    def value_of(self, producer: str, seq: int) -> Value | None:
        """What a call gave, if its result waits in its producer's mailbox (not confirmed yet)."""
        with self._lock:
            found = next((item for _, item in self._boxes.get(producer, ()) if item[0] <= seq < item[1]), None)
        if found is None:
            return None
        try:
            data, v = items.item(items.load(found[2]), seq - found[0])  # (a call's: data)
        except Exception:
            return None
        return v if data else None

    def holds(self, producer: str) -> set[int]:
        """Seqs of the tasks whose results wait in the producer's mailbox."""
        with self._lock:
            return {seq for _, item in self._boxes.get(producer, ()) for seq in range(item[0], item[1])}

    def close(self, producer: str) -> None:
        """Forget a producer's mailbox (it is gone for good)."""
        with self._lock:
            for _, item in self._boxes.pop(producer, ()):
                self._keep(producer, item, False)
            self._numbers.pop(producer, None)
            if producer in self._durable:
                self._durable.discard(producer)
                if self._journal is not None:
                    self._journal.close_mailbox(producer)

    def _keep(self, producer: str, item: Item, keep: bool = True) -> None:
        """Keep (or let go of) the large values a run's results name (god/store/values.py)."""
        if self._values is not None:
            names = names_in(item[2])
            if names:
                pin = ("mail", producer, str(item[0]))
                (self._values.pin if keep else self._values.unpin)(pin, names)
