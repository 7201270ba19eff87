"""Journals as earlier gods wrote them."""

from __future__ import annotations

import pickle
import sqlite3
from pathlib import Path


def version_2_journal(path: Path) -> None:
    """A journal as the previous version wrote it: rows of (id, payload) lists, done ids, attempts."""
    path.parent.mkdir(parents=True, exist_ok=True)
    db = sqlite3.connect(path)
    db.executescript("""
        CREATE TABLE task_batches (seq INTEGER PRIMARY KEY, tasks BLOB NOT NULL);
        CREATE TABLE done_batches (seq INTEGER PRIMARY KEY, done BLOB NOT NULL);
        CREATE TABLE attempts (id TEXT PRIMARY KEY, n INTEGER NOT NULL);
        CREATE TABLE meta (key TEXT PRIMARY KEY, value);
        PRAGMA application_id=1198482465;
        PRAGMA user_version=2;
    """)
    rows = [[("p/1", "a"), ("p/2", "b"), ("p/3", "c")], [("tutorial:abc:1", 7), ("p/4", "d")]]
    db.executemany("INSERT INTO task_batches (tasks) VALUES (?)", [(pickle.dumps(r),) for r in rows])
    db.execute("INSERT INTO done_batches (done) VALUES (?)", (pickle.dumps([("p/2", True), ("p/0", True)]),))
    db.execute("INSERT INTO attempts (id, n) VALUES ('p/3', 2)")
    db.commit()
    db.close()
