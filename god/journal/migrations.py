"""Opening a journal: check that the file is one, and bring a journal an earlier god wrote up
to this version (each migration in the caller's transaction: all of it, or none)."""

from __future__ import annotations

import pickle
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from god.journal import schema as sql
from god.store.batches import Attempts
from shared.errors import ConfigError
from shared.records import DEFAULT_QUEUE, split_id


def open_journal(path: Path, sync_full: bool = False) -> sqlite3.Connection:
    """Open (or create) the journal, check that it is one, bring an older one up to date;
    the caller holds the lock."""
    where = f"journal {path}"
    try:
        db = sqlite3.connect(path, check_same_thread=False, isolation_level="DEFERRED")
    except sqlite3.Error as e:
        raise ConfigError(f"cannot open {where}: {e}") from None
    try:
        app_id = db.execute("PRAGMA application_id").fetchone()[0]
        version = db.execute("PRAGMA user_version").fetchone()[0]
        tables = db.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]
        if app_id != sql.APPLICATION_ID and (app_id or tables):
            raise ConfigError(f"{where} is a SQLite file but not a god journal; "
                              "give god another --journal PATH")
        if 0 < version < 2:
            raise ConfigError(f"{where} is in an older format ({version}) than this god reads (2 to {sql.SCHEMA_VERSION}); "
                              "let its god finish the work, or move it away")
        if version > sql.SCHEMA_VERSION:
            raise ConfigError(f"{where} was written by a newer god (version {version}); use that god")
        db.execute("PRAGMA journal_mode=WAL")
        db.execute(f"PRAGMA synchronous={'FULL' if sync_full else 'NORMAL'}")
        db.execute("BEGIN IMMEDIATE")  # explicit: DDL would commit on its own, and a migration is all or nothing
        try:
            if version in MIGRATIONS:
                MIGRATIONS[version](db)
            for statement in sql.SCHEMA.split(";"):
                if statement.strip():
                    db.execute(statement)
            db.execute(f"PRAGMA application_id={sql.APPLICATION_ID}")
            db.execute(f"PRAGMA user_version={sql.SCHEMA_VERSION}")
            db.commit()
        except BaseException:
            db.rollback()
            raise
    except sqlite3.DatabaseError as e:
        db.close()
        if "not a database" in str(e) or "malformed" in str(e):
            raise ConfigError(f"{where} is damaged or not a journal ({e}); move it away, "
                              "or give god another --journal PATH") from None
        raise ConfigError(f"cannot use {where}: {e}; give god a writable --journal PATH, "
                          "or --no-journal") from None
    except ConfigError:
        db.close()
        raise
    return db


def _old_id(tid: str) -> tuple[str, int]:
    """(producer, seq) of a version 2 id: PRODUCER/SEQ, or a tutorial task's tutorial:RUN:N."""
    try:
        return split_id(tid)
    except ValueError:
        producer, _, seq = tid.rpartition(":")
        return producer, int(seq)


def _migrate_2(db: sqlite3.Connection) -> None:
    """Version 2 (rows of (id, payload) lists, done ids, attempts by id) to 3, in the caller's
    transaction: each run of consecutive seqs not done becomes a batch on the default queue."""
    done = {tid for (blob,) in db.execute("SELECT done FROM done_batches") for tid, _ in pickle.loads(blob)}
    attempts = dict(db.execute("SELECT id, n FROM attempts"))
    upto: dict[str, int] = {}
    for tid in done:
        producer, seq = _old_id(tid)
        upto[producer] = max(upto.get(producer, 0), seq)
    batches: list[tuple[str, int, list[Any]]] = []
    tries: list[Attempts] = []
    for (blob,) in db.execute("SELECT tasks FROM task_batches ORDER BY seq"):
        for tid, payload in pickle.loads(blob):
            producer, seq = _old_id(tid)
            upto[producer] = max(upto.get(producer, 0), seq)
            if tid in done:
                continue
            last = batches[-1] if batches else None
            if last is not None and last[0] == producer and last[1] + len(last[2]) == seq:
                last[2].append(payload)
            else:
                batches.append((producer, seq, [payload]))
            if attempts.get(tid):
                tries.append((producer, batches[-1][1], seq, seq + 1, attempts[tid], 0, None))
    db.execute("DROP TABLE task_batches")
    db.execute("DROP TABLE done_batches")
    db.execute("DROP TABLE attempts")
    for statement in sql.SCHEMA.split(";"):
        if statement.strip():
            db.execute(statement)
    db.executemany(sql.PUT, [(i, producer, first, len(payloads), DEFAULT_QUEUE, None, 0, None, None, sql.dumps(payloads), None,
                              None)
                          for i, (producer, first, payloads) in enumerate(batches, 1)])
    db.executemany(sql.UPTO, [(name, seq, time.time()) for name, seq in upto.items()])
    if tries:  # the batch each row belongs to: where its producer and first are
        seq_of = {(producer, first): i for i, (producer, first, _) in enumerate(batches, 1)}
        db.executemany(sql.ATTEMPTS, [(seq_of[row[0], row[1]], sql.dumps([row])) for row in tries])


def _migrate_3(db: sqlite3.Connection) -> None:
    """Version 3 to 4, in the caller's transaction: rows of runs and attempts belong to a batch
    (``recover`` rewrites them so), producers have when they were last heard from (now)."""
    db.execute("ALTER TABLE batches ADD COLUMN origin TEXT")
    db.execute("ALTER TABLE done ADD COLUMN batch INTEGER NOT NULL DEFAULT 0")
    db.execute("ALTER TABLE attempts ADD COLUMN batch INTEGER NOT NULL DEFAULT 0")
    db.execute("ALTER TABLE producers ADD COLUMN at REAL NOT NULL DEFAULT 0")
    db.execute("UPDATE producers SET at = ?", (time.time(),))
    _migrate_5(db)


def _migrate_5(db: sqlite3.Connection) -> None:
    """Versions 4 and 5 to 6, in the caller's transaction: batches may wait for other tasks."""
    db.execute("ALTER TABLE batches ADD COLUMN after TEXT")


#: The migration from each earlier version this god reads (each goes straight to this one).
MIGRATIONS: dict[int, Callable[[sqlite3.Connection], None]] = {2: _migrate_2, 3: _migrate_3, 4: _migrate_5,
                                                               5: _migrate_5}
