"""Calls that wait: for tasks to lease, room to put, results to fetch, a journal commit.

One implementation for every caller. A call that cannot be answered at once is a ``Wait``
parked here; whatever may let it go on (a put, an ack, a commit, a reaped consumer) calls
``changed``, and ``retry`` tries every parked call again, oldest first, answering those
that can go on and those past their deadline. The hub parks our clients' calls and sends
the replies; a tutorial view's server thread parks its call and blocks until it is
answered. God's hub thread runs ``retry``; tests run it themselves, with a fake clock.
"""

from __future__ import annotations

import math
import socket
import threading
import time
from collections.abc import Callable
from typing import Any

#: How a parked call is answered: (the reply, or None with the exception it raised).
Answer = Callable[[Any, "BaseException | None"], None]
BLOCK_SLACK_S = 5.0  # a thread blocked on a wait gives up this long after its deadline: a safety net


class Wait:
    """A call that waits; subclasses say when it can go on."""

    deadline: float = math.inf  # on the Waits' clock; the call is answered by then

    #: Whether, among the calls that ask for it, the newest parked is tried first: leases, so
    #: that a task goes to the worker that waited least (its process and caches warm: a lone
    #: task that two workers took in turn took 10% longer than with one worker).
    newest_first = False

    #: Whether the next call on its connection ends the wait (a lease: a worker that waits
    #: for tasks with places free sends its results behind it; they must not wait for it).
    yields = False

    @property
    def holds_line(self) -> bool:
        """Whether later calls on the same connection wait until this one is answered (they
        may depend on it); a put that god holds already waits only for its journal commit."""
        return True

    def attempt(self, late: bool) -> tuple[bool, Any]:
        """Try to answer: (True, reply) when it can go on, or must (late: past the deadline)."""
        raise NotImplementedError


class Waits:
    """Parked calls and what wakes them; park, changed and fileno are for any thread."""

    def __init__(self, now: Callable[[], float] = time.monotonic) -> None:
        self.now = now
        self._lock = threading.Lock()
        self._parked: list[tuple[Wait, Answer]] = []
        self._dirty = False  # something changed since the last retry
        self._woken = False  # a wake-up byte is on its way
        self._owner: int | None = None  # the thread that runs retry: it needs no wake-up byte
        self._wake: tuple[socket.socket, socket.socket] | None = None  # made for a selector

    def fileno(self) -> int:
        """Readable when something changed: for the serving thread's selector."""
        with self._lock:
            if self._wake is None:
                self._wake = socket.socketpair()
                for end in self._wake:
                    end.setblocking(False)
            return self._wake[0].fileno()

    def serve_from_this_thread(self) -> None:
        """The calling thread runs ``retry`` from now on."""
        self._owner = threading.get_ident()

    def changed(self) -> None:
        """Something changed that may let a parked call go on; from any thread."""
        self._dirty = True
        if threading.get_ident() == self._owner:
            return  # the serving thread retries before it sleeps
        with self._lock:
            if self._woken or self._wake is None:
                return
            self._woken = True
            wake = self._wake[1]
        try:
            wake.send(b"\0")
        except OSError:
            pass  # the buffer is full of wake-ups already

    def woken(self) -> None:
        """The serving thread read its wake-up: take the bytes."""
        assert self._wake is not None
        try:
            while self._wake[0].recv(4096):
                pass
        except BlockingIOError:
            pass
        with self._lock:
            self._woken = False

    def park(self, wait: Wait, answer: Answer) -> None:
        """Hold a call until ``retry`` answers it."""
        with self._lock:
            self._parked.append((wait, answer))
        self.changed()

    def call(self, wait: Wait) -> Any:
        """Answer a call in the calling thread: at once if it can go on, else park it and block
        until the serving thread answers it."""
        answered, reply = wait.attempt(wait.deadline <= self.now())
        if answered:
            return reply
        done = threading.Event()
        box: list[Any] = []

        def answer(reply: Any, error: BaseException | None) -> None:
            box.extend((reply, error))
            done.set()

        self.park(wait, answer)
        left = wait.deadline - self.now()
        if not done.wait(None if left == math.inf else max(0.0, left) + BLOCK_SLACK_S):
            raise TimeoutError("god did not answer a waiting call in time")
        if box[1] is not None:
            raise box[1]
        return box[0]

    def hurry(self, wait: Wait) -> None:
        """Answer a parked call at the next retry, as if its deadline had passed."""
        wait.deadline = -math.inf
        self.changed()

    @property
    def dirty(self) -> bool:
        """Whether something changed since the last retry, with calls parked to try again."""
        return self._dirty and bool(self._parked)

    def __len__(self) -> int:
        return len(self._parked)

    def timeout(self, longest: float) -> float:
        """Seconds the serving thread may sleep: until the next deadline, at most longest; 0
        when a change has not been looked at yet."""
        if self._dirty and self._parked:
            return 0.0
        with self._lock:
            soonest = min((w.deadline for w, _ in self._parked), default=math.inf)
        return max(0.0, min(longest, soonest - self.now()))

    def retry(self) -> int:
        """Try the parked calls again, oldest first (those that ask for it newest first, after
        the others); returns how many were answered."""
        if not self._parked:
            self._dirty = False
            return 0
        now = self.now()
        if not self._dirty and all(w.deadline > now for w, _ in self._parked):
            return 0
        self._dirty = False
        with self._lock:
            parked, self._parked = self._parked, []
        done: set[int] = set()
        # Oldest first; those that ask for it (leases) newest first, after the others
        for i in [i for i, (w, _) in enumerate(parked) if not w.newest_first] + \
                [i for i in range(len(parked) - 1, -1, -1) if parked[i][0].newest_first]:
            wait, answer = parked[i]
            try:
                answered, reply = wait.attempt(wait.deadline <= now)
            except Exception as e:
                answer(None, e)
                done.add(i)
                continue
            if answered:
                answer(reply, None)
                done.add(i)
        kept = [p for i, p in enumerate(parked) if i not in done] if done else parked
        with self._lock:
            self._parked[:0] = kept  # before any parked meanwhile: they are younger
        return len(parked) - len(kept)

    def close(self) -> None:
        """Close the wake-up sockets."""
        for end in self._wake or ():
            end.close()
