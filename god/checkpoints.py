"""Keeping the journal's write-ahead log short, off the path of a commit.

SQLite checkpoints a WAL by itself inside the commit that takes it past 1,000 pages, and a
checkpoint syncs the database file to disk: a millisecond or more in the middle of a put's
confirmation, every couple of hundred lone tasks (and, with god's hub committing its own
ops, in the middle of god's one serving thread). Here that is off: a thread of its own, on
a connection of its own, checkpoints every LOOK_S seconds in which something was committed,
PASSIVE (it neither waits for a commit nor holds one up; WAL mode lets both run at once).
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable
from pathlib import Path

LOOK_S = 0.5  # seconds between checkpoints while commits come


class Checkpointer:
    """Checkpoints a journal's WAL from a thread of its own while ``progress()`` changes."""

    def __init__(self, path: Path, progress: Callable[[], int]) -> None:
        """``progress``: a number that grows with each commit (the ops committed so far)."""
        self.path = path
        self.progress = progress
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="god-checkpoint", daemon=True)

    def start(self) -> None:
        """Start checkpointing."""
        self._thread.start()

    def _run(self) -> None:
        db = sqlite3.connect(self.path, check_same_thread=False)
        done = -1  # (the first look checkpoints what came before)
        try:
            while not self._stop.wait(LOOK_S):
                now = self.progress()
                if now == done:
                    continue
                try:
                    db.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
                    done = now
                except sqlite3.Error:
                    pass  # (the disk refuses, say) the next look tries again; commits say why
        finally:
            db.close()

    def close(self) -> None:
        """Stop (the journal's close checkpoints what is left)."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()
