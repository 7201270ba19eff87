"""God's journal: accepted tasks and recorded results in SQLite, so a restarted god loses nothing.

One writer thread owns the connection and commits whatever piled up since its last commit
in one transaction (group commit): a producer's put is confirmed only once its tasks are
committed, so a god killed with SIGKILL has every confirmed task in the journal. Of a
result the journal keeps the task id and whether it succeeded, after the results file has
the line, with how far the file got; a restarted god reads the file past that point for
results written just before the crash (``recover``), so nothing is run or written twice.

Rows hold batches, not tasks: a put's tasks are one pickled row, a round of results another.
A row per task cost 4 us of god's time per task in B-tree work (measured with py-spy and a
micro-benchmark); a row per batch about 0.4 us. A task batch is deleted once none of its
tasks is waiting or running (``compact``, driven by the monitor, which knows).

WAL with ``synchronous=NORMAL``: a commit survives the god process dying (SIGKILL, OOM),
not the machine losing power before the next checkpoint.
"""

from __future__ import annotations

import fcntl
import itertools
import os
import pickle
import sqlite3
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from loguru import logger

from god.results import ResultsFile
from shared.config import hostname
from shared.errors import ConfigError

APPLICATION_ID = 0x476F6421  # "God!": marks a SQLite file as a god journal
SCHEMA_VERSION = 2  # 1: a row per task (never released)
RECOVERED_BATCH = 1000  # tasks per row when recovery rewrites what is still pending
RETRY_S = 1.0  # seconds between attempts to commit while the disk refuses
ERROR_EVERY_S = 10.0  # seconds between repeats of the same commit error in the log

SCHEMA = """
CREATE TABLE IF NOT EXISTS task_batches (seq INTEGER PRIMARY KEY, tasks BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS done_batches (seq INTEGER PRIMARY KEY, done BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS attempts (id TEXT PRIMARY KEY, n INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value);
"""

#: What the writer thread applies, in order: a statement and its rows.
Op = tuple[str, list[tuple[Any, ...]]]
_PUT = "INSERT INTO task_batches (seq, tasks) VALUES (?, ?)"
_RELEASE = "DELETE FROM task_batches WHERE seq = ?"
_ATTEMPTS = "INSERT OR REPLACE INTO attempts (id, n) VALUES (?, ?)"
_DONE = "INSERT INTO done_batches (done) VALUES (?)"
_META = "INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)"


@dataclass(slots=True)
class Recovered:
    """What a journal held when god started."""

    pending: list[tuple[str, Any, int]] = field(default_factory=list)  # (id, payload, attempts), in order
    done_ids: list[str] = field(default_factory=list)
    found_in_file: int = 0  # results the last god wrote to the results file but did not journal


def dumps(obj: Any) -> bytes:
    """Tasks (a list of (id, payload)) or results as the journal stores them."""
    return pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)


class Journal:
    """A SQLite journal with one writer thread; every method but ``recover`` is thread-safe."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lockfile = _lock(path)
        try:
            self._db = _open(path)
        except BaseException:
            self._lockfile.close()
            raise
        self._cond = threading.Condition()
        self._ops: list[Op] = []
        self._ticket = 0  # ops appended so far
        self._committed = 0  # ops committed so far
        self._closing = False
        self.on_commit: Callable[[], None] = lambda: None  # after each commit (the hub's wake-up)
        self._next_seq = 1 + self._db.execute("SELECT COALESCE(MAX(seq), 0) FROM task_batches").fetchone()[0]
        self._open: deque[tuple[int, list[str]]] = deque()  # task batches with tasks not done, oldest first
        self._log = logger.bind(role="god")
        self._error_at = 0.0
        self._thread = threading.Thread(target=self._write_loop, name="god-journal", daemon=True)

    def recover(self, results: ResultsFile | None = None) -> Recovered:
        """Read what the last god left, and rewrite it compactly; call once, before ``start``.

        With the results file the last god wrote to, the results it wrote after its last
        journal entry are journaled now, so those tasks are done, not served again.
        """
        db = self._db
        r = Recovered()
        meta = dict(db.execute("SELECT key, value FROM meta"))
        done: set[str] = set()
        for (blob,) in db.execute("SELECT done FROM done_batches"):
            done.update(tid for tid, _ in pickle.loads(blob))
        if results is not None and meta.get("results_path") == str(results.path):
            found = results.ids_after(int(meta.get("results_offset", 0)))
            r.found_in_file = len(found)
            self._apply(self._result_ops(found, str(results.path), results.offset))
            done.update(tid for tid, _ in found)
        attempts = dict(db.execute("SELECT id, n FROM attempts"))
        pending: dict[str, tuple[str, Any, int]] = {}
        for (blob,) in db.execute("SELECT tasks FROM task_batches ORDER BY seq"):
            for tid, payload in pickle.loads(blob):
                if tid not in done and tid not in pending:
                    pending[tid] = (tid, payload, attempts.get(tid, 0))
        r.pending = list(pending.values())
        r.done_ids = list(done)
        # Rewrite: what is pending in full batches, the done ids in one row, attempts of pending tasks only.
        with db:
            db.execute("DELETE FROM task_batches")
            db.execute("DELETE FROM done_batches")
            db.execute("DELETE FROM attempts")
            if done:
                db.execute(_DONE, (dumps([(tid, None) for tid in done]),))
            for i in range(0, len(r.pending), RECOVERED_BATCH):
                chunk = r.pending[i : i + RECOVERED_BATCH]
                db.execute(_PUT, (self._next_seq, dumps([(tid, payload) for tid, payload, _ in chunk])))
                self._open.append((self._next_seq, [tid for tid, _, _ in chunk]))
                self._next_seq += 1
            db.executemany(_ATTEMPTS, [(tid, n) for tid, _, n in r.pending if n])
        return r

    def start(self) -> None:
        """Start committing."""
        self._thread.start()

    # -- appending (any thread) ------------------------------------------------------------

    def _append(self, sql: str, rows: list[tuple[Any, ...]]) -> int:
        with self._cond:
            self._ops.append((sql, rows))
            self._ticket += 1
            self._cond.notify_all()
            return self._ticket

    def add_tasks(self, ids: list[str], blob: bytes) -> int:
        """Journal accepted tasks: their ids, and ``dumps`` of their (id, payload) list.

        Returns:
            The ticket to ``wait`` for.
        """
        with self._cond:
            seq = self._next_seq
            self._next_seq += 1
            self._open.append((seq, ids))
            return self._append(_PUT, [(seq, blob)])

    def drop_tasks(self, ids: list[str]) -> int:
        """Tasks handed out at most once (to tutorial clients): done, with no result."""
        return self._append(_DONE, [(dumps([(tid, None) for tid in ids]),)])

    def set_attempts(self, rows: list[tuple[str, int]]) -> int:
        """Remember how many times tasks were served to consumers that died."""
        return self._append(_ATTEMPTS, rows)

    def add_results(self, done: list[tuple[str, bool]], path: str | None = None, offset: int = 0) -> int:
        """Journal results as (task id, ok); with the results file they are in, and its new size."""
        with self._cond:
            for op in self._result_ops(done, path, offset):
                ticket = self._append(*op)
            return ticket

    @staticmethod
    def _result_ops(done: list[tuple[str, bool]], path: str | None, offset: int) -> list[Op]:
        ops: list[Op] = [(_DONE, [(dumps(done),)])] if done else []
        if path is not None:
            ops.append((_META, [("results_path", path), ("results_offset", offset)]))
        return ops

    def oldest_open(self, n: int) -> list[list[str]]:
        """The ids of the n oldest task batches still held, oldest first (for ``compact``)."""
        with self._cond:
            return [ids for _, ids in itertools.islice(self._open, n)]

    def compact(self, n: int) -> None:
        """Release the n oldest task batches: the caller saw none of their tasks waiting or
        running, and has journaled every result it took (this op comes after those)."""
        if n <= 0:
            return
        with self._cond:
            seqs = [(self._open.popleft()[0],) for _ in range(min(n, len(self._open)))]
            self._append(_RELEASE, seqs)

    @property
    def ticket(self) -> int:
        """The ticket of the last op appended."""
        with self._cond:
            return self._ticket

    def committed(self, ticket: int) -> bool:
        """True once the op with this ticket is committed."""
        with self._cond:
            return self._committed >= ticket

    def wait(self, ticket: int) -> None:
        """Block until the op with this ticket is committed.

        After ``close`` an op that missed the last commit never will be: the caller waits
        until the process ends, so what it was confirming stays unconfirmed.
        """
        with self._cond:
            while self._committed < ticket:
                self._cond.wait()

    # -- the writer thread ---------------------------------------------------------------

    def _write_loop(self) -> None:
        while True:
            with self._cond:
                while not self._ops and not self._closing:
                    self._cond.wait()
                if not self._ops:
                    return
                ops, upto = self._ops, self._ticket
                self._ops = []
            if not self._commit(ops):
                with self._cond:
                    self._ops[:0] = ops  # try again, in the same order, with what came since
                    if self._closing:
                        return
                    self._cond.wait(RETRY_S)
                continue
            with self._cond:
                self._committed = upto
                self._cond.notify_all()
            self.on_commit()

    def _apply(self, ops: list[Op]) -> None:
        with self._db:  # one transaction; rolled back if any statement fails
            for sql, rows in ops:
                self._db.executemany(sql, rows)

    def _commit(self, ops: list[Op]) -> bool:
        try:
            self._apply(ops)
            return True
        except sqlite3.Error as e:
            now = time.monotonic()
            if now - self._error_at > ERROR_EVERY_S:
                self._error_at = now
                self._log.error("cannot write journal {}: {}; confirmations wait, retrying every {:.0f}s",
                                self.path, e, RETRY_S)
            return False

    def close(self) -> None:
        """Commit what is pending, stop the writer and close the file."""
        with self._cond:
            self._closing = True
            self._cond.notify_all()
        if self._thread.is_alive():
            self._thread.join()
        try:
            self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            self._db.close()
        except sqlite3.Error:
            pass
        self._lockfile.close()


def _lock(path: Path) -> TextIO:
    """Hold PATH.lock for as long as god runs, so a second god on the same journal refuses."""
    where = f"journal {path}"
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        f = open(f"{path}.lock", "a+", encoding="utf-8")
    except OSError as e:
        raise ConfigError(f"cannot use {where}: {e.strerror} ({e.filename}); "
                          "give god a writable --journal PATH, or --no-journal") from None
    try:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        f.seek(0)
        holder = f.read().strip() or "another process"
        f.close()
        raise ConfigError(f"{where} is in use by another god ({holder}); stop it first, "
                          "or give this god its own --journal PATH") from None
    f.seek(0)
    f.truncate()
    f.write(f"pid {os.getpid()} on {hostname()}\n")
    f.flush()
    return f


def _open(path: Path) -> sqlite3.Connection:
    """Open (or create) the journal and check that it is one; the caller holds the lock."""
    where = f"journal {path}"
    try:
        db = sqlite3.connect(path, check_same_thread=False, isolation_level="DEFERRED")
    except sqlite3.Error as e:
        raise ConfigError(f"cannot open {where}: {e}") from None
    try:
        app_id = db.execute("PRAGMA application_id").fetchone()[0]
        version = db.execute("PRAGMA user_version").fetchone()[0]
        tables = db.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]
        if app_id != APPLICATION_ID and (app_id or tables):
            raise ConfigError(f"{where} is a SQLite file but not a god journal; "
                              "give god another --journal PATH")
        if 0 < version < SCHEMA_VERSION:
            raise ConfigError(f"{where} is in an older format ({version}) than this god reads ({SCHEMA_VERSION}); "
                              "let its god finish the work, or move it away")
        if version > SCHEMA_VERSION:
            raise ConfigError(f"{where} was written by a newer god (version {version}); use that god")
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")
        db.executescript(SCHEMA)
        db.execute(f"PRAGMA application_id={APPLICATION_ID}")
        db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
        db.commit()
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
