"""``Executor.map``: the items put in batches as its window has room, the results in input order.

A map makes no Future per item: its window (producer/futures.py) holds the seqs of its tasks
in flight, in input order, and the results the executor's results thread gives it until they
are yielded. At most ``buffersize`` tasks are in flight, so an endless iterable runs in
bounded memory at both ends.
"""

from __future__ import annotations

import itertools
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import replace
from typing import IO, Any

from producer.futures import Targets, Window
from producer.progress_line import ProgressLine
from producer.producer import PutOptions
from producer.sender import Sender
from shared.calls import call_task, outcome
from shared.errors import GodError
from shared.log import logger
from shared.records import Value, task_id

MAP_WINDOW = 16_384  # tasks of a map in flight at most, unless its buffersize says otherwise
MAP_BATCH = 4_096  # tasks of a map put at a time, at most
MAP_BYTES = 64 * 2**20  # results of a map in flight or held at once, about, whatever its buffersize
FIRST_WINDOW = 16  # tasks in flight before the first result says how large results are (then: _room)


class Map:
    """One map of an executor: made, it checks its arguments and puts its first items."""

    def __init__(self, sender: Sender, targets: Targets, o: PutOptions, fn: Callable[..., Any],
                 iterables: tuple[Iterable[Any], ...], *, timeout: float | None, chunksize: int,
                 buffersize: int | None, progress: bool | IO[str] = False) -> None:
        """``progress``: draw a progress line (producer/progress_line.py): True where it
        shows by itself (a terminal, a notebook), or an output of your own."""
        if type(chunksize) is not int or chunksize < 1:
            raise ValueError("chunksize must be >= 1")
        if buffersize is not None and (type(buffersize) is not int or buffersize < 1):
            raise ValueError("buffersize must be None or > 0")
        self.sender, self.targets = sender, targets
        self.end = None if timeout is None else time.monotonic() + timeout
        self.name, self.ref = sender.function(fn)
        self.o = replace(o, task=call_task(self.name))
        self.items = zip(*iterables)
        self.window = Window()
        self.window.label = self.name.rpartition(":")[2]
        self.size = buffersize or MAP_WINDOW
        self.batch = max(1, min(MAP_BATCH, self.size // 4))
        self.line: ProgressLine | None = None
        if progress is not False:
            lengths = [len(i) for i in iterables if hasattr(i, "__len__")]  # type: ignore[arg-type]
            total = min(lengths) if len(lengths) == len(iterables) else None
            self.line = ProgressLine(f"map of {self.name}", total, None if progress is True else progress,
                                     reports=lambda: list(self.window.progress.values()))
            self.window.on_report = self.line.add  # (drawn again, at most ten times a second)
        self._fill(min(self.size, FIRST_WINDOW))

    def results(self) -> Iterator[Any]:
        """The calls' values in input order; a call's exception at its item."""
        window, ready = self.window, deque[tuple[Value, str]]()
        try:
            most = need = 0
            while window.order or ready:
                if not ready:
                    self.targets.take_ready(window, ready, self.end, self._late)
                    most = self._most()  # (once a take, not once an item)
                    need = min(self.batch, max(1, most // 4))
                if not window.exhausted and most - len(window.order) - len(ready) >= need:
                    self._fill(most - len(window.order) - len(ready))
                yield self._next(ready)  # (made in the yield, not kept in a local: the program owns it)
        finally:
            if self.line is not None:
                self.line.draw(last=True)
            window.closed = True
            if window.order:
                self._abandon()

    def _most(self) -> int:
        """How many tasks may be in flight or held: up to buffersize, and about MAP_BYTES of
        their results (a map of 1 MiB results keeps about 64 in hand, not 16,384)."""
        size = self.window.result_bytes
        return min(self.size, FIRST_WINDOW) if size is None else max(1, min(self.size, int(MAP_BYTES / size)))

    def _late(self, seq: int) -> str:
        return f"a result of the map was not there within its timeout (task {task_id(self.sender.name, seq)})"

    def _fill(self, room: int) -> None:
        """Put up to room more of the items, in batches."""
        window = self.window
        while room > 0 and not window.exhausted:
            chunk = list(itertools.islice(self.items, min(room, MAP_BATCH)))
            if not chunk:
                window.exhausted = True
                return
            room -= len(chunk)
            self.sender.put_items(self.o, self.name, self.ref, chunk, window)
            if self.line is not None:
                self.line.add(sent=len(chunk))

    def _abandon(self) -> None:
        """The iterator ended early (an exception, a timeout, a break): cancel at god what of
        the map has not started."""
        window = self.window
        ids = [task_id(self.sender.name, seq) for seq in window.order if seq > 0]
        window.order.clear()
        try:
            self.sender.cancel_ids(ids)
        except (GodError, ValueError) as e:  # its tasks run on: their results are dropped
            logger.bind(role="producer").warning("could not cancel the {} tasks left of a map: {}", len(ids), e)

    def _next(self, ready: deque[tuple[Value, str]]) -> Any:
        """The next result's value, taken from ready (and counted); its exception raised."""
        ok, value = outcome(*ready.popleft())
        if self.line is not None:
            self.line.add(done=1) if ok else self.line.add(failed=1)
        if not ok:
            raise value
        return value
