"""God's journal: accepted batches and settled runs in SQLite, so a restarted god loses nothing.

One writer thread owns the connection and commits whatever piled up since its last commit
in one transaction (group commit): a producer's put is confirmed only once its batch is
committed, so a god killed with SIGKILL has every confirmed task in the journal. Of
results the journal keeps which runs of which batches are done, after the results file has
their lines, with how far the file got; a restarted god reads the file past that point for
results written just before the crash (``recover``), so nothing is run or written twice.

A put is one row, its payloads the blob the producer sent (never unpickled here); a round
of results is a row of runs per batch it touched, and so are counted attempts. A batch is
deleted with its rows of runs and attempts once none of its tasks is waiting or running
(``compact``, driven by the monitor, which knows), in whatever order batches finish, and its
producer's last seq goes to ``producers``, which is what tells a re-sent put from a new one
after a restart. So the journal holds the work in hand and one row per producer heard from
within the dedupe window (``forget_producers``), not the history.

WAL with ``synchronous=NORMAL``: a commit survives the god process dying (SIGKILL, OOM),
not the machine losing power before the next checkpoint. ``sync_full`` (god --sync full):
``synchronous=FULL``, the WAL synced to disk at every commit, so a confirmed put or a
recorded result survives the power going too.
"""

from __future__ import annotations

import bisect
import fcntl
import json
import os
import pickle
import sqlite3
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from loguru import logger

from god.batches import Attempts, Tries
from god.dead import DeadLetter
from god import schema as sql
from god.cron import Schedule
from god.migrations import open_journal
from god.results import ResultsFile
from shared.config import hostname
from shared.errors import ConfigError
from shared.records import (
    PUT_DUE, PUT_FIRST, PUT_N, PUT_PAYLOADS, PUT_PRIORITY, PUT_QUEUE, PUT_RETRY, PUT_TASK, R_FIRST, R_HI, R_LO,
    R_PRODUCER, Put, RetryPolicy, Run, split_id,
)

RETRY_S = 1.0  # seconds between attempts to commit while the disk refuses
ERROR_EVERY_S = 10.0  # seconds between repeats of the same commit error in the log

#: A batch as recovered: (producer, put, done byte per task, tries of runs as offsets, the
#: ids of the dead letters its tasks were or None).
Held = tuple[str, Put, bytearray, list[Tries], "list[str] | None"]


@dataclass(slots=True)
class Recovered:
    """What a journal held when god started."""

    batches: list[Held] = field(default_factory=list)  # with tasks not done, in order
    upto: dict[str, int] = field(default_factory=dict)  # each producer's last seq taken
    pending: int = 0  # tasks to serve again
    done: int = 0  # tasks of those batches already done
    found_in_file: int = 0  # results the last god wrote to the results file but did not journal
    limits: dict[str, float] = field(default_factory=dict)  # queues' rate limits set while god ran
    paused: list[str] = field(default_factory=list)  # queues paused while god ran
    schedules: list[Schedule] = field(default_factory=list)
    dead: list[DeadLetter] = field(default_factory=list)  # dead letters kept, oldest first (payloads on disk)


class Journal:
    """A SQLite journal with one writer thread; every method but ``recover`` is thread-safe."""

    def __init__(self, path: Path, *, on_commit: Callable[[], None] = lambda: None, sync_full: bool = False) -> None:
        """Args:
            on_commit: called after each commit, from the writer thread (god: the waits' wake-up).
            sync_full: sync every commit to disk (survives a power loss; slower).
        """
        self.path = path
        self.on_commit = on_commit
        if path.is_dir():
            raise ConfigError(f"journal {path} is a directory: give a file in it, e.g. --journal "
                              f"{path / 'journal.sqlite3'}")
        self._lockfile = _lock(path)
        try:
            self._db = open_journal(path, sync_full)
        except BaseException:  # we hold the lock: nobody else uses the file, and it must not stay behind
            Path(f"{path}.lock").unlink(missing_ok=True)
            self._lockfile.close()
            raise
        self._cond = threading.Condition()
        self._ops: list[sql.Op] = []
        self._ticket = 0  # ops appended so far
        self._committed = 0  # ops committed so far
        self._closing = False
        self._next_seq = 1 + self._db.execute("SELECT COALESCE(MAX(seq), 0) FROM batches").fetchone()[0]
        self._open: dict[tuple[str, int], tuple[int, int]] = {}  # (producer, first) -> (seq, last) of held batches
        self._log = logger.bind(role="god")
        self._error_at = 0.0
        self._reader: sqlite3.Connection | None = None  # reads payloads of dead letters back (any thread)
        self._read_lock = threading.Lock()
        self._thread = threading.Thread(target=self._write_loop, name="god-journal", daemon=True)

    def recover(self, results: ResultsFile | None = None, *, forget_before: float | None = None) -> Recovered:
        """Read what the last god left, and rewrite it compactly; call once, before ``start``.

        With the results file the last god wrote to, the results it wrote after its last
        journal entry count as done too, so those tasks are not served again. Producers last
        heard from before ``forget_before`` (a Unix time) are forgotten.
        """
        db = self._db
        r = Recovered()
        meta = dict(db.execute("SELECT key, value FROM meta"))
        rows = db.execute("SELECT seq, producer, first, n, queue, task, priority, retry, due, payloads, origin "
                          "FROM batches ORDER BY seq")
        held: dict[tuple[str, int], tuple[int, Put, bytearray]] = {}
        origins: dict[tuple[str, int], list[str]] = {}
        firsts: dict[str, list[int]] = defaultdict(list)
        for seq, producer, first, n, queue, task, priority, retry, due, payloads, origin in rows:
            put: Put = (first, n, payloads, queue, task, priority, _policy(retry), due)
            held[producer, first] = (seq, put, bytearray(n))
            if origin is not None:
                origins[producer, first] = json.loads(origin)
            firsts[producer].append(first)
        for p in firsts.values():
            p.sort()

        def mark(producer: str, lo: int, hi: int, first: int | None = None) -> None:
            if first is None:  # find the batch holding lo
                fs = firsts.get(producer, [])
                i = bisect.bisect_right(fs, lo) - 1
                if i < 0:
                    return
                first = fs[i]
            h = held.get((producer, first))
            if h is not None:
                n = h[1][PUT_N]
                a, z = max(lo - first, 0), min(hi - first, n)
                if z > a:
                    h[2][a:z] = b"\x01" * (z - a)

        for (blob,) in db.execute("SELECT runs FROM done"):
            for run in pickle.loads(blob):
                mark(run[R_PRODUCER], run[R_LO], run[R_HI], run[R_FIRST])
        if results is not None and meta.get("results_path") == str(results.path):
            found = results.ids_after(int(meta.get("results_offset", 0)))
            r.found_in_file = len(found)
            for tid in found:
                try:
                    producer, seq = split_id(tid)
                except ValueError:
                    continue
                mark(producer, seq, seq + 1)
        tries: dict[tuple[str, int], list[Tries]] = defaultdict(list)
        for (blob,) in db.execute("SELECT rows FROM attempts ORDER BY seq"):
            for producer, first, lo, hi, n, retried, due in pickle.loads(blob):
                tries[producer, first].append((lo - first, hi - first, n, retried, due))
        if forget_before is not None:
            db.execute(sql.FORGET, (forget_before,))
        r.upto = dict(db.execute("SELECT name, upto FROM producers"))
        r.limits = dict(db.execute("SELECT queue, rate FROM limits"))
        r.paused = [queue for (queue,) in db.execute("SELECT queue FROM paused ORDER BY queue")]
        r.schedules = [Schedule(*row) for row in db.execute(
            "SELECT name, every, cron, queue, task, payload, next, runs FROM schedules ORDER BY name")]
        r.dead = [DeadLetter(tid, queue, task, priority, _policy(retry), shown, reason, attempts, at)
                  for tid, queue, task, priority, retry, shown, reason, attempts, at in db.execute(
                      "SELECT id, queue, task, priority, retry, shown, reason, attempts, at FROM dead ORDER BY at")]
        for (producer, first), (_, put, done) in held.items():
            r.upto[producer] = max(r.upto.get(producer, 0), first + put[PUT_N] - 1)
            left = done.count(0)
            if left:
                r.batches.append((producer, put, done, tries.get((producer, first), []), origins.get((producer, first))))
                r.pending += left
                r.done += put[PUT_N] - left
        # Rewrite: the open batches, one row of their done runs, their attempts; the rest goes.
        with db:
            db.execute("DELETE FROM done")
            db.execute("DELETE FROM attempts")
            now = time.time()
            db.executemany(sql.UPTO, [(name, upto, now) for name, upto in r.upto.items()])
            open_keys = {(producer, put[PUT_FIRST]) for producer, put, _, _, _ in r.batches}
            db.executemany(sql.RELEASE, [(seq,) for key, (seq, _, _) in held.items() if key not in open_keys])
            for producer, put, done, t, _ in r.batches:
                first = put[PUT_FIRST]
                seq = held[producer, first][0]
                runs: list[Run] = []
                i = 0
                while (i := done.find(1, i)) != -1:
                    end = done.find(0, i)
                    end = len(done) if end == -1 else end
                    runs.append((producer, first, first + i, first + end))
                    i = end
                if runs:
                    db.execute(sql.DONE, (seq, sql.dumps(runs)))
                if t:
                    db.execute(sql.ATTEMPTS, (seq, sql.dumps([(producer, first, first + lo, first + hi, n, retried, due)
                                                       for lo, hi, n, retried, due in t])))
                self._open[producer, first] = (seq, first + put[PUT_N] - 1)
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

    def add_batch(self, producer: str, put: Put, origin: list[str] | None = None) -> int:
        """Journal an accepted batch, its payloads as the producer pickled them; ``origin``: the
        dead letters its tasks were, when it serves them again.

        Returns:
            The ticket to wait for.
        """
        with self._cond:
            seq = self._next_seq
            self._next_seq += 1
            first, n = put[PUT_FIRST], put[PUT_N]
            self._open[producer, first] = (seq, first + n - 1)
            retry = put[PUT_RETRY]
            return self._append(sql.PUT, [(seq, producer, first, n, put[PUT_QUEUE], put[PUT_TASK], put[PUT_PRIORITY],
                                        json.dumps(retry) if retry is not None else None, put[PUT_DUE],
                                        put[PUT_PAYLOADS], json.dumps(origin) if origin is not None else None)])

    def add_done(self, runs: list[Run]) -> int:
        """Runs done with no result line (handed out at most once, to tutorial clients)."""
        with self._cond:
            return self._add_runs(runs)

    def _add_runs(self, runs: list[Run]) -> int:
        """A row of runs per batch held; runs of a batch the journal does not hold (results for
        a god that restarted without its journal) only move their producer's last seq on."""
        by_batch: dict[int, list[Run]] = {}
        upto: list[tuple[str, int, float]] = []
        for run in runs:
            held = self._open.get((run[R_PRODUCER], run[R_FIRST]))
            if held is None:
                upto.append((run[R_PRODUCER], run[R_HI] - 1, time.time()))
            else:
                by_batch.setdefault(held[0], []).append(run)
        ticket = self._ticket
        if by_batch:
            ticket = self._append(sql.DONE, [(seq, sql.dumps(rs)) for seq, rs in by_batch.items()])
        if upto:
            ticket = self._append(sql.UPTO, upto)
        return ticket

    def set_attempts(self, rows: list[Attempts]) -> int:
        """Remember how many times runs were served (to consumers that died, or as retries, and
        when a retry is due)."""
        with self._cond:
            by_batch: dict[int, list[Attempts]] = {}
            for row in rows:
                held = self._open.get((row[0], row[1]))
                if held is not None:
                    by_batch.setdefault(held[0], []).append(row)
            if not by_batch:
                return self._ticket
            return self._append(sql.ATTEMPTS, [(seq, sql.dumps(rs)) for seq, rs in by_batch.items()])

    def set_limit(self, queue: str, rate: float | None) -> int:
        """Remember a queue's rate limit (None: it has none)."""
        return self._append(sql.LIMIT, [(queue, rate)]) if rate is not None else self._append(sql.NO_LIMIT, [(queue,)])

    def set_schedule(self, s: Schedule) -> int:
        """Remember a schedule, with when it is next due and how many times it ran."""
        return self._append(sql.SCHEDULE, [(s.name, s.every, s.cron, s.queue, s.task, s.payload, s.next, s.runs)])

    def drop_schedule(self, name: str) -> int:
        """Forget a schedule."""
        return self._append(sql.UNSCHEDULE, [(name,)])

    def set_paused(self, queue: str, paused: bool) -> int:
        """Remember that a queue is paused, or no longer."""
        return self._append(sql.PAUSE if paused else sql.RESUME, [(queue,)])

    def add_results(self, runs: list[Run], path: str | None = None, offset: int = 0) -> int:
        """Journal runs with results; with the results file they are in, and its new size."""
        with self._cond:
            ticket = self._add_runs(runs) if runs else self._ticket
            if path is not None:
                ticket = self._append(sql.META, [("results_path", path), ("results_offset", offset)])
            return ticket

    def held(self) -> list[tuple[str, int]]:
        """(producer, first) of the batches the journal holds, in the order they came."""
        with self._cond:
            return list(self._open)

    def compact(self, batches: list[tuple[str, int]]) -> None:
        """Release batches, given as (producer, first), with their rows of runs and attempts:
        the caller saw none of their tasks waiting or running, and has journaled every result
        it took (this op comes after those)."""
        with self._cond:
            gone = [(key[0], *held) for key in batches if (held := self._open.pop(key, None)) is not None]
            if not gone:
                return
            now = time.time()
            self._append(sql.UPTO, [(producer, last, now) for producer, _, last in gone])
            seqs = [(seq,) for _, seq, _ in gone]
            self._append(sql.RELEASE, seqs)
            self._append(sql.RELEASE_DONE, seqs)
            self._append(sql.RELEASE_ATTEMPTS, seqs)

    def add_dead(self, letters: list[DeadLetter]) -> int:
        """Keep dead letters, their payloads with them."""
        return self._append(sql.DEAD, [(d.id, d.queue, d.task, d.priority, json.dumps(d.retry) if d.retry else None,
                                     d.shown, d.reason, d.attempts, d.at, d.payload) for d in letters])

    def drop_dead(self, ids: list[str]) -> int:
        """Let dead letters go (served again, purged, or over --dead-keep)."""
        return self._append(sql.UNDEAD, [(tid,) for tid in ids])

    def dead_payloads(self, ids: list[str]) -> dict[str, bytes]:
        """The pickled payloads of dead letters, read back from the file (once what was appended
        before is committed)."""
        self.wait(self.ticket)
        with self._read_lock:
            if self._reader is None:
                self._reader = sqlite3.connect(self.path, check_same_thread=False)
            out: dict[str, bytes] = {}
            for i in range(0, len(ids), 500):
                part = ids[i : i + 500]
                out.update(self._reader.execute(f"SELECT id, payload FROM dead WHERE id IN ({','.join('?' * len(part))})",
                                                part))
            self._reader.rollback()  # end the read: the next one sees what was committed since
            return out

    def forget_producers(self, before: float) -> int:
        """Forget the producers last heard from before a Unix time (their re-sent puts are no
        longer told from new ones)."""
        return self._append(sql.FORGET, [(before,)])

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
        """Block until the op with this ticket is committed (for tests and tools).

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

    def _apply(self, ops: list[sql.Op]) -> None:
        with self._db:  # one transaction; rolled back if any statement fails
            for statement, rows in ops:
                self._db.executemany(statement, rows)

    def _commit(self, ops: list[sql.Op]) -> bool:
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
        if self._reader is not None:
            self._reader.close()
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


def _policy(text: str | None) -> RetryPolicy | None:
    """A retry policy as the journal keeps it (JSON), back as a tuple."""
    if text is None:
        return None
    retries, backoff, longest, on = json.loads(text)
    return retries, backoff, longest, tuple(on) if on is not None else None


