"""The journal's writer: ops appended by any thread, committed in groups by one thread.

Whatever piled up since the last commit goes in one transaction (group commit), and each op
has a ticket: a caller that must not answer before its op is on disk waits for its ticket
(``wait``, ``committed``). God's hub, the owner, may commit its own ops itself when it has
nothing else to do (``commit_here``), which saves two threads waking each other.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from god.journal import schema as sql
from shared import hops
from shared.log import logger

#: Seconds the owner (god's hub) keeps its ops while busy, for a round in which it has nothing
#: else to do and commits them itself; then the writer commits them.
HOLD_S = 0.0005
RETRY_S = 1.0  # seconds between attempts to commit while the disk refuses
ERROR_EVERY_S = 10.0  # seconds between repeats of the same commit error in the log


class Writer:
    """Ops of a journal's connection, committed by one writer thread; thread-safe."""

    def __init__(self, db: sqlite3.Connection, path: Path, *, on_commit: Callable[[], None],
                 sync_full: bool) -> None:
        """Args:
            on_commit: called after each commit, from the writer thread (god: the waits' wake-up).
            sync_full: every commit is synced to disk: the owner keeps none of its ops back.
        """
        self._db = db
        self.path = path
        self.on_commit = on_commit
        self.sync_full = sync_full
        #: Guards the ops and tickets; an RLock, so a journal may append several ops as one.
        self.cond = threading.Condition()
        self._ops: list[sql.Op] = []
        self._ticket = 0  # ops appended so far
        self._committed = 0  # ops committed so far
        self._closing = False
        self._committing = False  # the writer thread, or the owner (commit_here), is committing
        self._owner: int | None = None  # a thread whose ops wait for it to commit_here or hand over
        self._held = False  # the owner appended ops it has not committed or handed over yet
        self._held_since: float | None = None  # since when the owner, busy, kept them
        self._log = logger.bind(role="god")
        self._error_at = 0.0
        self._thread = threading.Thread(target=self._write_loop, name="god-journal", daemon=True)

    def start(self) -> None:
        """Start committing."""
        self._thread.start()

    def append(self, statement: str, rows: list[tuple[Any, ...]], *, wake: bool = True) -> int:
        """Queue an op for the next commit; ``wake=False``: one nothing waits for, which rides
        with the next op's commit instead of making one of its own (asking whether it is
        committed, or waiting for it, wakes the writer)."""
        with self.cond:
            self._ops.append((statement, rows))
            self._ticket += 1
            if wake:
                self._wake()
            return self._ticket

    def _wake(self) -> None:
        """(cond held) Have the ops committed: by the writer, or by the owner at its next
        ``commit_here`` if it appends or asks."""
        if threading.get_ident() == self._owner and not self.sync_full:  # (a sync to disk holds up no one there)
            self._held = True
        else:
            self.cond.notify_all()

    def serve_from_this_thread(self) -> None:
        """The calling thread (god's hub) commits its own ops when it has nothing else to do,
        or hands them to the writer (``commit_here``, at the end of each of its rounds)."""
        self._owner = threading.get_ident()

    def commit_here(self, idle: Callable[[], bool]) -> bool:
        """(the owner) Commit the ops it appended, in this thread if ``idle()`` says nothing
        waits for it and the writer is not committing; while busy it keeps them for HOLD_S,
        to be asked again at its next round (which must come at once), then hands them to the
        writer. A lone task's put waited about 0.2 ms for its confirmation, most of it two threads
        waking each other: the writer woken for it, and the hub woken by its commit. Whether
        this thread committed (the callers of on_commit are not woken for it: look again).
        With ``sync_full`` the owner holds none: they go to the writer as they come (``_wake``)."""
        with self.cond:
            if not self._held:
                return False
            if not self._ops or self._committing or self._closing:
                self._held, self._held_since = False, None
                return False  # the writer took them, takes them after its commit, or god stops
            if not idle():
                now = time.monotonic()
                if self._held_since is None:
                    self._held_since = now
                if now - self._held_since < HOLD_S:
                    return False  # the owner's next round may be idle: it looks again then
                self._held, self._held_since = False, None
                self.cond.notify_all()
                return False
            self._held, self._held_since = False, None
            ops, upto = self._ops, self._ticket
            self._ops = []
            self._committing = True
        try:
            done = self._commit(ops)
        finally:
            with self.cond:
                self._committing = False
                if not done:
                    self._ops[:0] = ops  # the writer tries again, and says why
                else:
                    self._committed = upto
                self.cond.notify_all()
        return done

    @property
    def ticket(self) -> int:
        """The ticket of the last op appended."""
        with self.cond:
            return self._ticket

    def committed(self, ticket: int) -> bool:
        """True once the op with this ticket is committed."""
        with self.cond:
            if self._committed >= ticket:
                return True
            self._wake()  # it may be an op that did not wake the writer
            return False

    def wait(self, ticket: int, timeout: float | None = None) -> bool:
        """Block until the op with this ticket is committed, or timeout seconds passed; whether
        it is committed.

        After ``close`` an op that missed the last commit never will be: the caller waits
        until the process ends, so what it was confirming stays unconfirmed.
        """
        with self.cond:
            if self._committed < ticket:
                self.cond.notify_all()  # it may be an op that did not wake the writer
            return self.cond.wait_for(lambda: self._committed >= ticket, timeout)

    # -- the writer thread ---------------------------------------------------------------

    def _write_loop(self) -> None:
        while True:
            with self.cond:
                while (not self._ops or self._committing) and not self._closing:
                    self.cond.wait()
                while self._committing:  # closing: the owner's commit ends first
                    self.cond.wait()
                if not self._ops:
                    return
                ops, upto = self._ops, self._ticket
                self._ops = []
                self._committing = True
            if not self._commit(ops):
                with self.cond:
                    self._committing = False
                    self._ops[:0] = ops  # try again, in the same order, with what came since
                    if self._closing:
                        return
                    self.cond.wait(RETRY_S)
                continue
            with self.cond:
                self._committing = False
                self._committed = upto
                self.cond.notify_all()
            self.on_commit()

    def _apply(self, ops: list[sql.Op]) -> None:
        with self._db:  # one transaction; rolled back if any statement fails
            for statement, rows in ops:
                self._db.executemany(statement, rows)

    def _commit(self, ops: list[sql.Op]) -> bool:
        if hops.ON:
            hops.hop("journal commits")
        try:
            self._apply(ops)
            if hops.ON:
                hops.hop("journal committed")
            return True
        except sqlite3.Error as e:
            now = time.monotonic()
            if now - self._error_at > ERROR_EVERY_S:
                self._error_at = now
                self._log.error("cannot write journal {}: {}; confirmations wait, retrying every {:.0f}s",
                                self.path, e, RETRY_S)
            return False

    def close(self) -> None:
        """Commit what is pending and stop the writer thread."""
        with self.cond:
            self._closing = True
            self.cond.notify_all()
        if self._thread.is_alive():
            self._thread.join()
