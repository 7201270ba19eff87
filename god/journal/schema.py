"""The journal's tables in SQLite: its version, its schema, the statements its writes use, and
how rows of runs are pickled; god/journal/journal.py writes and reads them,
god/journal/migrations.py brings an older journal up to this version."""

from __future__ import annotations

import pickle
from typing import Any

APPLICATION_ID = 0x476F6421  # "God!": marks a SQLite file as a god journal
SCHEMA_VERSION = 9  # 1: a row per task (never released); 2: rows of (id, payload) lists;
# 3: rows of done runs and attempts not tied to a batch (kept until a restart); 4: no mailboxes;
# 5: no tasks that wait for tasks (batches without after, no outcomes); 6: blobs that god
# loaded whole (a call's values as shared.calls.Packed, a dead letter's payload on its own);
# 7: batches and dead letters without the large values their calls name; 8: batches without
# the resources their tasks need, and dead letters without theirs

SCHEMA = """
CREATE TABLE IF NOT EXISTS batches (seq INTEGER PRIMARY KEY, producer TEXT NOT NULL, first INTEGER NOT NULL,
    n INTEGER NOT NULL, queue TEXT NOT NULL, task TEXT, priority INTEGER NOT NULL, retry TEXT, due REAL,
    payloads BLOB NOT NULL, origin TEXT, after TEXT, vals TEXT, res TEXT);
CREATE TABLE IF NOT EXISTS dead (id TEXT PRIMARY KEY, queue TEXT NOT NULL, task TEXT, priority INTEGER NOT NULL,
    retry TEXT, shown TEXT NOT NULL, reason TEXT NOT NULL, attempts INTEGER NOT NULL, at REAL NOT NULL,
    payload BLOB NOT NULL, vals TEXT, res TEXT);
CREATE TABLE IF NOT EXISTS done (seq INTEGER PRIMARY KEY, batch INTEGER NOT NULL, runs BLOB NOT NULL);
CREATE INDEX IF NOT EXISTS done_batch ON done (batch);
CREATE TABLE IF NOT EXISTS attempts (seq INTEGER PRIMARY KEY, batch INTEGER NOT NULL, rows BLOB NOT NULL);
CREATE INDEX IF NOT EXISTS attempts_batch ON attempts (batch);
CREATE TABLE IF NOT EXISTS producers (name TEXT PRIMARY KEY, upto INTEGER NOT NULL, at REAL NOT NULL DEFAULT 0);
CREATE TABLE IF NOT EXISTS limits (queue TEXT PRIMARY KEY, rate REAL NOT NULL);
CREATE TABLE IF NOT EXISTS paused (queue TEXT PRIMARY KEY);
CREATE TABLE IF NOT EXISTS schedules (name TEXT PRIMARY KEY, every REAL, cron TEXT, queue TEXT NOT NULL, task TEXT,
    payload BLOB NOT NULL, next REAL NOT NULL, runs INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS mailboxes (producer TEXT PRIMARY KEY);
CREATE TABLE IF NOT EXISTS mail (producer TEXT NOT NULL, lo INTEGER NOT NULL, hi INTEGER NOT NULL,
    consumer TEXT NOT NULL, attempt INTEGER NOT NULL, vals BLOB NOT NULL, PRIMARY KEY (producer, lo));
CREATE TABLE IF NOT EXISTS outcomes (id TEXT PRIMARY KEY, value BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value);
"""

#: What the writer thread applies, in order: a statement and its rows.
Op = tuple[str, list[tuple[Any, ...]]]
PUT = ("INSERT INTO batches (seq, producer, first, n, queue, task, priority, retry, due, payloads, origin, after, "
       "vals, res) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)")
DEAD = ("INSERT OR REPLACE INTO dead (id, queue, task, priority, retry, shown, reason, attempts, at, payload, vals, "
        "res) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)")
UNDEAD = "DELETE FROM dead WHERE id = ?"
RELEASE = "DELETE FROM batches WHERE seq = ?"
RELEASE_DONE = "DELETE FROM done WHERE batch = ?"
RELEASE_ATTEMPTS = "DELETE FROM attempts WHERE batch = ?"
UPTO = ("INSERT INTO producers (name, upto, at) VALUES (?, ?, ?) "
         "ON CONFLICT(name) DO UPDATE SET upto = max(upto, excluded.upto), at = max(at, excluded.at)")
FORGET = "DELETE FROM producers WHERE at < ?"
ATTEMPTS = "INSERT INTO attempts (batch, rows) VALUES (?, ?)"
DONE = "INSERT INTO done (batch, runs) VALUES (?, ?)"
META = "INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)"
LIMIT = "INSERT OR REPLACE INTO limits (queue, rate) VALUES (?, ?)"
NO_LIMIT = "DELETE FROM limits WHERE queue = ?"
PAUSE = "INSERT OR IGNORE INTO paused (queue) VALUES (?)"
SCHEDULE = "INSERT OR REPLACE INTO schedules VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
UNSCHEDULE = "DELETE FROM schedules WHERE name = ?"
RESUME = "DELETE FROM paused WHERE queue = ?"
MAILBOX = "INSERT OR IGNORE INTO mailboxes (producer) VALUES (?)"
NO_MAILBOX = "DELETE FROM mailboxes WHERE producer = ?"
MAIL = "INSERT OR REPLACE INTO mail (producer, lo, hi, consumer, attempt, vals) VALUES (?, ?, ?, ?, ?, ?)"
UNMAIL = "DELETE FROM mail WHERE producer = ? AND lo = ?"
NO_MAIL = "DELETE FROM mail WHERE producer = ?"
OUTCOME = "INSERT OR REPLACE INTO outcomes (id, value) VALUES (?, ?)"
NO_OUTCOME = "DELETE FROM outcomes WHERE id = ?"


def dumps(obj: Any) -> bytes:
    """Rows of runs as the journal stores them."""
    return pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
