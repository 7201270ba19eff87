"""A task's output, captured in its worker process and sent to god (``consumer --capture``, on
by default).

The worker's ``sys.stdout`` and ``sys.stderr`` become ``Stream``s: a write made for a running
task goes to that task's lines; any other goes to the worker's own stream (the consumer's
log), as before. Logging records (``logging``'s handlers write to ``sys.stderr``) and warnings
come the same way. Which task writes: in a worker that runs one task at a time, the one
running, whatever thread writes; with --concurrency, the call whose thread or coroutine
writes (a context variable consumer/calls.py sets). What cannot be told apart (a C
extension writing to file descriptor 1, a thread a task started under --concurrency) goes
to the consumer's log.

Lines go to god with the worker's next call (the results of a task follow its lines), and
a running task's lines older than STREAM_S go on their own, over a connection of their own
(``Streamer``), so that a long task's lines come while it runs. A task past BURST lines
at once or RATE a second has the rest counted and dropped, with one note saying how many.
Nothing here runs for a task that writes nothing.
"""

from __future__ import annotations

import contextvars
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

from shared import output
from shared.output import CALL_MAX, LINE_MAX, Item

STREAM_S = 0.5  # seconds a running task's lines wait for the worker's next call before they go on their own
BURST = 1000  # lines a task may write at once ...
RATE = 100.0  # ... and a second after that; the rest are dropped, and counted
NOTE_EVERY_S = 10.0  # a long task dropping lines says so this often (and when it ends)

#: A running task: (producer, seq).
Key = tuple[str, int]

#: The call (its key in consumer/calls.py) a thread or coroutine runs, with --concurrency.
current_call: contextvars.ContextVar[Any] = contextvars.ContextVar("current_call", default=None)


class _Lines:
    """One task's output not sent yet."""

    __slots__ = ("partial", "chunks", "tokens", "at", "dropped", "noted", "progress", "first", "size")

    def __init__(self, now: float) -> None:
        self.partial: dict[str, str] = {}  # a line not ended yet, per stream
        self.chunks: list[tuple[str, str]] = []
        self.tokens, self.at = float(BURST), now
        self.dropped = 0  # lines dropped since the last note
        self.noted = now
        self.progress: tuple[float, float | None] | None = None
        self.first: float | None = None  # when the oldest line not sent was written
        self.size = 0

    def write(self, stream: str, text: str, now: float) -> None:
        """Text written: its whole lines added, the rest kept until its line ends."""
        text = self.partial.pop(stream, "") + text
        *whole, rest = text.split("\n")
        for line in whole:
            self.add(stream, line, now)
        if rest:
            if len(rest) > LINE_MAX:  # a line that never ends is cut here
                self.add(stream, rest, now)
            else:
                self.partial[stream] = rest

    def report(self, done: float, total: float | None, now: float) -> None:
        self.progress = (done, total)
        if self.first is None:
            self.first = now

    def add(self, stream: str, line: str, now: float) -> None:
        """A whole line (without its newline), if the task's rate allows."""
        self.tokens = min(float(BURST), self.tokens + (now - self.at) * RATE)
        self.at = now
        if self.tokens < 1.0:
            self.dropped += 1
            return
        self.tokens -= 1.0
        if "\r" in line:  # a terminal shows what follows the last carriage return (a progress bar's last state)
            line = line.rpartition("\r")[2]
        if len(line) > LINE_MAX:
            line = f"{line[:LINE_MAX]}... ({len(line) - LINE_MAX:,} characters cut)"
        if self.chunks and self.chunks[-1][0] == stream:
            self.chunks[-1] = (stream, self.chunks[-1][1] + line + "\n")
        else:
            self.chunks.append((stream, line + "\n"))
        self.size += len(line) + 1
        if self.first is None:
            self.first = now

    def note(self, now: float, ended: bool) -> None:
        """Say how many lines were dropped, when due."""
        if self.dropped and (ended or now - self.noted >= NOTE_EVERY_S):
            self.chunks.append(("note", f"{self.dropped:,} lines dropped: the task wrote more than {BURST:,} at once "
                                        f"or {RATE:g} a second\n"))
            self.dropped, self.noted = 0, now
            if self.first is None:
                self.first = now


class Capture:
    """The output of a worker's tasks, per task, until sent."""

    def __init__(self, current: Callable[[], Key | None], clock: Callable[[], float] = time.monotonic) -> None:
        self._current = current  # the task the caller writes for, or None
        self._clock = clock
        self._lock = threading.Lock()
        self._tasks: dict[Key, _Lines] = {}
        self.sending = threading.Lock()  # held from taking lines to god's answer: a task's lines reach god in order
        self.pending = False  # something waits to be sent (read without the lock)
        self.written = threading.Event()  # set at the first line: the streamer starts

    def write(self, stream: str, text: str) -> bool:
        """Text a task wrote; False if no task writes it (it goes to the worker's own stream)."""
        return self._for_task(_Lines.write, stream, text)

    def report(self, done: float, total: float | None) -> bool:
        """A task's progress (``shared.output.report``); False outside a task."""
        return self._for_task(_Lines.report, done, total)

    def _for_task(self, change: Callable[[_Lines, Any, Any, float], None], a: Any, b: Any) -> bool:
        """Change the lines of the task the caller runs for, if it runs for one."""
        key = self._current()
        if key is None:
            return False
        now = self._clock()
        with self._lock:
            lines = self._tasks.get(key)
            if lines is None:
                lines = self._tasks[key] = _Lines(now)
            change(lines, a, b, now)
            self.pending = True
        if not self.written.is_set():
            self.written.set()
        return True

    def take(self, running: Callable[[Key], bool] | None = None, older_than: float | None = None) -> list[Item]:
        """What waits to be sent, at most about CALL_MAX bytes (call again for the rest), and
        each ended task's last line; ``running(key)``: whether a task still runs (None: all
        have ended, their lines are whole). ``older_than``: only tasks whose lines waited
        that long (the streamer's), and no task's end."""
        out: list[Item] = []
        now, size = self._clock(), 0
        with self._lock:
            for key, lines in list(self._tasks.items()):
                ended = older_than is None and (running is None or not running(key))
                if not ended and (lines.first is None or (older_than is not None and now - lines.first < older_than)):
                    continue
                if ended:
                    for stream, rest in lines.partial.items():
                        lines.add(stream, rest, now)
                    lines.partial.clear()
                lines.note(now, ended)
                if lines.chunks or lines.progress is not None:
                    out.append((key[0], key[1], lines.chunks, lines.progress))
                    size += lines.size + 64
                    lines.chunks, lines.progress, lines.first, lines.size = [], None, None, 0
                if ended:
                    del self._tasks[key]
                if size >= CALL_MAX:
                    break
            else:
                self.pending = any(lines.first is not None or lines.partial for lines in self._tasks.values())
        return out


class Stream:
    """``sys.stdout`` or ``sys.stderr`` of a worker: a task's writes to its lines, others on."""

    def __init__(self, real: Any, stream: str, capture: Capture) -> None:
        self._real, self._stream, self._capture = real, stream, capture

    def write(self, text: str) -> int:
        if not self._capture.write(self._stream, str(text)):
            return int(self._real.write(text))
        return len(text)

    def writelines(self, lines: Any) -> None:
        for line in lines:
            self.write(line)

    def flush(self) -> None:
        self._real.flush()

    def isatty(self) -> bool:
        return False

    def __getattr__(self, name: str) -> Any:  # encoding, fileno, buffer, ...: the real stream's
        return getattr(self._real, name)


def install(capture: Capture) -> None:
    """Capture this process's tasks' output (and their reports)."""
    sys.stdout = Stream(sys.stdout, "out", capture)
    sys.stderr = Stream(sys.stderr, "err", capture)
    output.set_reporter(capture.report)


class Streamer:
    """Sends a running task's lines that waited STREAM_S, over a connection of its own, from a
    thread started at the first line (a worker whose tasks write nothing has neither)."""

    def __init__(self, capture: Capture, send: Callable[[list[Item]], None]) -> None:
        self.capture, self._send = capture, send
        self._stop = threading.Event()
        threading.Thread(target=self._run, name="output-streamer", daemon=True).start()

    def _run(self) -> None:
        capture = self.capture
        capture.written.wait()
        while not self._stop.wait(STREAM_S / 2):
            if not capture.pending:
                continue
            with capture.sending:
                items = capture.take(older_than=STREAM_S)
                if items:
                    try:
                        self._send(items)
                    except Exception:  # god away: the worker's own calls say so; these lines are lost
                        pass

    def stop(self) -> None:
        self._stop.set()
        self.capture.written.set()
