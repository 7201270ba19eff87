"""Journals an earlier god wrote (god/journal/migrations.py): brought up to this version as god opens
them, what waited served again and what was done not; one too old is refused and left alone."""

from __future__ import annotations

import pickle
import sqlite3
from pathlib import Path

import pytest

from god.journal.schema import SCHEMA_VERSION
from god.journal.journal import Journal
from shared import items
from shared.errors import ConfigError
from shared.records import G_ATTEMPT, G_TASK
from tests.support.core import opened, payloads_of, seqs
from tests.support.journals import version_2_journal


def test_a_journal_of_the_previous_version_is_migrated(path: Path) -> None:
    # Given a version 2 journal with tasks waiting, one done, one with attempts
    version_2_journal(path)
    # When god opens it
    j, r, core = opened(path)
    try:
        # Then what waited is served, in order, with its attempts, and done tasks are not
        got = core.lease("c", 10)
        assert [(g[0], seqs([g]), payloads_of(g), g[G_ATTEMPT]) for g in got] == [
            ("p", [1], ["a"], 1), ("p", [3], ["c"], 3), ("tutorial:abc", [1], [7], 1), ("p", [4], ["d"], 1)]
        assert core.settle(core.put("p", ["again"], first=2)) == 1  # p/2 was done: a re-sent put
        assert core.broker.figures.stats()["waiting"] == 0
    finally:
        j.close()
    db = sqlite3.connect(path)
    assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    db.close()


def version_3_journal(path: Path) -> None:
    """A journal as god wrote it before rows of runs and attempts belonged to a batch: producer
    p's batch of 3 (p/2 done, p/3 served twice), and producer old, all done up to 5."""
    path.parent.mkdir(parents=True)
    db = sqlite3.connect(path)
    db.executescript("""
        CREATE TABLE batches (seq INTEGER PRIMARY KEY, producer TEXT NOT NULL, first INTEGER NOT NULL,
            n INTEGER NOT NULL, queue TEXT NOT NULL, task TEXT, priority INTEGER NOT NULL, retry TEXT, due REAL,
            payloads BLOB NOT NULL);
        CREATE TABLE done (seq INTEGER PRIMARY KEY, runs BLOB NOT NULL);
        CREATE TABLE attempts (seq INTEGER PRIMARY KEY, rows BLOB NOT NULL);
        CREATE TABLE producers (name TEXT PRIMARY KEY, upto INTEGER NOT NULL);
        CREATE TABLE limits (queue TEXT PRIMARY KEY, rate REAL NOT NULL);
        CREATE TABLE meta (key TEXT PRIMARY KEY, value);
        PRAGMA application_id=1198482465;
        PRAGMA user_version=3;
    """)
    db.execute("INSERT INTO batches VALUES (1, 'p', 1, 3, 'q', 'm:f', 2, NULL, NULL, ?)", (pickle.dumps(["a", "b", "c"]),))
    db.execute("INSERT INTO done (runs) VALUES (?)", (pickle.dumps([("p", 1, 2, 3)]),))
    db.execute("INSERT INTO attempts (rows) VALUES (?)", (pickle.dumps([("p", 1, 3, 4, 2, 0, None)]),))
    db.execute("INSERT INTO producers VALUES ('old', 5)")
    db.commit()
    db.close()


def test_a_journal_of_version_3_is_migrated(path: Path) -> None:
    # Given a version 3 journal with a batch part done, and a producer whose batches are all done
    version_3_journal(path)
    # When god opens it
    j, r, core = opened(path)
    try:
        # Then what waited is served with its queue, task and attempts, and done tasks are not
        got = core.lease("c", 10, queues=("q",))
        assert [(seqs([g]), payloads_of(g), g[G_ATTEMPT], g[G_TASK]) for g in got] == [
            ([1], ["a"], 1, "m:f"), ([3], ["c"], 3, "m:f")]
        assert core.settle(core.put("old", ["again"], first=5)) == 1  # a re-sent put, still known
        assert core.broker.figures.stats()["waiting"] == 0
    finally:
        j.close()
    db = sqlite3.connect(path)
    try:
        assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        assert db.execute("SELECT batch FROM done").fetchall() == [(1,)]  # rewritten per batch
        assert db.execute("SELECT batch FROM attempts").fetchall() == [(1,)]
    finally:
        db.close()


def test_a_journal_older_than_the_previous_version_is_refused_and_left_alone(path: Path) -> None:
    path.parent.mkdir(parents=True)
    db = sqlite3.connect(path)
    db.executescript("CREATE TABLE tasks (id TEXT); PRAGMA application_id=1198482465; PRAGMA user_version=1;")
    db.close()
    before = path.read_bytes()
    with pytest.raises(ConfigError, match=r"older format \(1\).*let its god finish the work, or move it away"):
        Journal(path)
    assert path.read_bytes() == before


def test_a_journal_of_version_5_is_migrated_and_its_batches_may_be_waited_for(path: Path) -> None:
    # Given a version 5 journal (before tasks could wait for tasks) holding p's batch of 2
    path.parent.mkdir(parents=True)
    db = sqlite3.connect(path)
    db.executescript("""
        CREATE TABLE batches (seq INTEGER PRIMARY KEY, producer TEXT NOT NULL, first INTEGER NOT NULL,
            n INTEGER NOT NULL, queue TEXT NOT NULL, task TEXT, priority INTEGER NOT NULL, retry TEXT, due REAL,
            payloads BLOB NOT NULL, origin TEXT);
        PRAGMA application_id=1198482465;
        PRAGMA user_version=5;
    """)
    db.execute("INSERT INTO batches VALUES (1, 'p', 1, 2, 'q', NULL, 0, NULL, NULL, ?, NULL)", (pickle.dumps(["a", "b"]),))
    db.commit()
    db.close()
    # When god opens it, Then its tasks are served, and a task put after one of them waits for it
    j, r, core = opened(path)
    try:
        assert r.pending == 2
        assert core.settle(core.put("p", ["later"], first=3, after=("p/1",))) == 1
        assert core.broker.figures.stats()["blocked"] == 1
        assert seqs(core.lease("c", 10, queues=("q",))) == [1, 2]
    finally:
        j.close()
    db = sqlite3.connect(path)
    try:
        assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        assert db.execute("SELECT after FROM batches ORDER BY seq").fetchall() == [(None,), ('["p/1"]',)]
    finally:
        db.close()


def _packed(blob: bytes) -> bytes:
    """The opcodes of ``shared.calls.Packed(blob)`` as a god before version 7 pickled it
    (protocol 4): the class by name, then bytes' own constructor (NEWOBJ)."""
    assert len(blob) < 256
    return b"\x8c\x0cshared.calls\x8c\x06Packed\x93C" + bytes([len(blob)]) + blob + b"\x85\x81"


def _legacy_value(ok: bool, value: bytes) -> bytes:
    """The opcodes of the Value (ok, value, None, None)."""
    return b"(" + (b"\x88" if ok else b"\x89") + value + b"NNt"


def test_a_journal_of_version_6_has_its_packed_values_migrated_and_objects_kept_unread(path: Path) -> None:
    # Given a version 6 journal: a producer's mail and an outcome holding calls' packed values,
    # a dead letter whose payload is an object of the program's classes
    j, _, core = opened(path)
    j.close()
    core.close()
    value = pickle.dumps({"packed": True})
    with sqlite3.connect(path) as db:
        db.execute("INSERT INTO mailboxes (producer) VALUES ('p')")
        db.execute("INSERT INTO mail (producer, lo, hi, consumer, attempt, vals) VALUES ('p', 1, 3, 'c', 1, ?)",
                   (b"\x80\x04](" + _legacy_value(True, _packed(value)) + _legacy_value(True, b"K\x07") + b"e.",))
        db.execute("INSERT INTO outcomes (id, value) VALUES ('p/1', ?)",
                   (b"\x80\x04" + _legacy_value(True, _packed(value)) + b".",))
        db.execute("INSERT INTO dead (id, queue, task, priority, retry, shown, reason, attempts, at, payload) "
                   "VALUES ('p/9', 'default', NULL, 0, NULL, '{}', 'r', 1, 0, ?)",
                   (pickle.dumps(Path("/x")),))
        db.execute("PRAGMA user_version=6")
    # When god opens it
    j = Journal(path)
    try:
        db = sqlite3.connect(path)
        # Then each blob loads as data: packed values say so in a field, the object is its own pickle
        (vals,) = db.execute("SELECT vals FROM mail").fetchone()
        assert items.load(vals) == [(True, value, None, None, True), (True, 7, None, None)]
        (outcome,) = db.execute("SELECT value FROM outcomes").fetchone()
        assert items.load(outcome) == [(True, value, None, None, True)]
        (payload,) = db.execute("SELECT payload FROM dead").fetchone()
        assert items.load(payload) == (items.OPAQUE, [pickle.dumps(Path("/x"))])
        assert items.unpack(payload) == [Path("/x")]
        db.close()
    finally:
        j.close()


def test_a_journal_of_version_6_with_objects_waiting_to_run_is_refused_and_left_alone(path: Path) -> None:
    j, _, core = opened(path)
    assert core.settle(core.put("p", [1])) == 1
    j.close()
    core.close()
    with sqlite3.connect(path) as db:
        db.execute("UPDATE batches SET payloads = ?", (pickle.dumps([Path("/x")]),))
        db.execute("PRAGMA user_version=6")
    with pytest.raises(ConfigError, match="holds tasks whose payloads or values are objects of the program's classes"):
        Journal(path)
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA user_version").fetchone()[0] == 6  # not touched
