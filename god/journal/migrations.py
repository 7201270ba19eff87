"""Opening a journal: check that the file is one, and bring a journal an earlier god wrote up
to this version (each migration in the caller's transaction: all of it, or none)."""

from __future__ import annotations

import io
import pickle
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from god.journal import schema as sql
from god.store.batches import Attempts
from shared import items
from shared.calls import is_call
from shared.data import NotData
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
                try:
                    MIGRATIONS[version](db)
                except ConfigError as e:
                    raise ConfigError(f"{where} {e}") from None
            for statement in sql.SCHEMA.split(";"):
                if statement.strip():
                    db.execute(statement)
            for table, column in (("batches", "vals"), ("dead", "vals"), ("batches", "res"), ("dead", "res")):  # (before 8, 9)
                if column not in {row[1] for row in db.execute(f"PRAGMA table_info({table})")}:
                    db.execute(f"ALTER TABLE {table} ADD COLUMN {column} TEXT")
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
    done = {tid for (blob,) in db.execute("SELECT done FROM done_batches") for tid, _ in _legacy(blob)}
    attempts = dict(db.execute("SELECT id, n FROM attempts"))
    upto: dict[str, int] = {}
    for tid in done:
        producer, seq = _old_id(tid)
        upto[producer] = max(upto.get(producer, 0), seq)
    batches: list[tuple[str, int, list[Any]]] = []
    tries: list[Attempts] = []
    for (blob,) in db.execute("SELECT tasks FROM task_batches ORDER BY seq"):
        try:
            rows = _legacy(blob)
        except NotData:
            raise ConfigError(_OBJECTS) from None
        for tid, payload in rows:
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
                              None, None, None)
                          for i, (producer, first, payloads) in enumerate(batches, 1)])  # (data: checked)
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
    """Versions 4 and 5 to 7, in the caller's transaction: batches may wait for other tasks."""
    db.execute("ALTER TABLE batches ADD COLUMN after TEXT")
    _migrate_6(db)


_OBJECTS = ("holds tasks whose payloads or values are objects of the program's classes, which the god "
            "that wrote it loaded; this god loads data only (builtin types): let a god of that version "
            "finish them, or move the journal away")


class _Packed(bytes):
    """A call's value or exception as gods before version 7 kept it (``shared.calls.Packed``)."""

    __slots__ = ()


class _Legacy(pickle.Unpickler):
    """Data, and the one class earlier gods put in what they kept (a call's packed value): no
    other class, and nothing called but bytes' own constructor."""

    def find_class(self, module: str, name: str) -> type:  # noqa: D102
        if (module, name) == ("shared.calls", "Packed"):
            return _Packed
        raise NotData(f"it names {module}.{name}")


def _legacy(blob: bytes) -> Any:
    return _Legacy(io.BytesIO(blob)).load()


def _value(v: Any) -> Any:
    """A Value as this version has it: a packed one says so in its own field."""
    if type(v) is tuple and len(v) == 4 and type(v[1]) is _Packed:
        return v[0], bytes(v[1]), v[2], v[3], True
    return v


def _migrate_6(db: sqlite3.Connection) -> None:
    """Version 6 to 7, in the caller's transaction: every blob god keeps loads as data
    (shared/items.py). A call's packed values say so in a field of their own; a dead letter's
    payload is a blob of one; what a task gave kept for others is a blob of one. A payload or
    value that is an object of the program's classes cannot be cut out of its run without
    loading it: such a journal is refused (the old god finishes it)."""
    for statement in sql.SCHEMA.split(";"):  # (tables an earlier version did not have)
        if statement.strip():
            db.execute(statement)
    try:
        for _, blob in db.execute("SELECT seq, payloads FROM batches").fetchall():
            _legacy(blob)  # (data already: a list, as new blobs are)
        for producer, lo, blob in db.execute("SELECT producer, lo, vals FROM mail").fetchall():
            db.execute("UPDATE mail SET vals = ? WHERE producer = ? AND lo = ?",
                       (items.dump([_value(v) for v in _legacy(blob)]), producer, lo))
        for tid, blob in db.execute("SELECT id, value FROM outcomes").fetchall():
            db.execute("UPDATE outcomes SET value = ? WHERE id = ?", (items.dump([_value(_legacy(blob))]), tid))
    except NotData:
        raise ConfigError(_OBJECTS) from None
    for tid, task, blob in db.execute("SELECT id, task, payload FROM dead").fetchall():
        try:
            payload = _legacy(blob)
        except NotData:
            one = items.dump((items.OPAQUE, [blob]))  # its pickle is the item's: kept as it is, not loaded
        else:
            if is_call(task) and type(payload) is tuple and len(payload) == 3 and type(payload[2]) is tuple:
                payload = (payload[0], payload[1], tuple(_value((True, v, None, None)) for v in payload[2]))
            one = items.dump([payload])
        db.execute("UPDATE dead SET payload = ? WHERE id = ?", (one, tid))


#: The migration from each earlier version this god reads (each goes straight to this one).
MIGRATIONS: dict[int, Callable[[sqlite3.Connection], None]] = {2: _migrate_2, 3: _migrate_3, 4: _migrate_5,
                                                               5: _migrate_5, 6: _migrate_6}
