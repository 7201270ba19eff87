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
(``compact``, driven by the recorder, which knows), in whatever order batches finish, and its
producer's last seq goes to ``producers``, which is what tells a re-sent put from a new one
after a restart. So the journal holds the work in hand and one row per producer heard from
within the dedupe window (``forget_producers``), not the history.

WAL with ``synchronous=NORMAL``: a commit survives the god process dying (SIGKILL, OOM),
not the machine losing power before the next checkpoint. ``sync_full`` (god --sync full):
``synchronous=FULL``, the WAL synced to disk at every commit, so a confirmed put or a
recorded result survives the power going too.
"""

from __future__ import annotations

import fcntl
import json
import os
import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TextIO

from god.journal import schema as sql
from god.journal.migrations import open_journal
from god.journal.recovery import Recovered, read_back
from god.journal.results_file import ResultsFile
from god.journal.writer import Writer
from god.store.batches import Attempts
from god.store.dead_letters import DeadLetter
from god.store.mailboxes import Item
from god.store.schedules import Schedule
from shared.config import hostname
from shared.errors import ConfigError
from shared.records import (
    PUT_AFTER, PUT_RESOURCES, PUT_VALUES, PUT_DUE, PUT_FIRST, PUT_N, PUT_PAYLOADS, PUT_PRIORITY, PUT_QUEUE, PUT_RETRY, PUT_TASK, R_FIRST, R_HI,
    R_PRODUCER, Put, Run,
)


class Journal:
    """What god tells its SQLite journal, one op per change, committed by its writer
    (god/journal/writer.py); every method but ``recover`` is thread-safe."""

    def __init__(self, path: Path, *, on_commit: Callable[[], None] = lambda: None, sync_full: bool = False) -> None:
        """Args:
            on_commit: called after each commit, from the writer thread (god: the waits' wake-up).
            sync_full: sync every commit to disk (survives a power loss; slower).
        """
        self.path = path
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
        self.sync_full = sync_full
        self._writer = Writer(self._db, path, on_commit=on_commit, sync_full=sync_full)
        self._cond = self._writer.cond  # appends of several ops go in as one
        self._append = self._writer.append
        self._next_seq = 1 + self._db.execute("SELECT COALESCE(MAX(seq), 0) FROM batches").fetchone()[0]
        self._open: dict[tuple[str, int], tuple[int, int]] = {}  # (producer, first) -> (seq, last) of held batches
        self._reader: sqlite3.Connection | None = None  # reads payloads of dead letters back (any thread)
        self._read_lock = threading.Lock()

    def recover(self, results: ResultsFile | None = None, *, forget_before: float | None = None) -> Recovered:
        """Read what the last god left, and rewrite it compactly; call once, before ``start``.

        With the results file the last god wrote to, the results it wrote after its last
        journal entry count as done too, so those tasks are not served again. Producers last
        heard from before ``forget_before`` (a Unix time) are forgotten.
        """
        r, self._open = read_back(self._db, results, forget_before=forget_before)
        return r

    def start(self) -> None:
        """Start committing."""
        self._writer.start()

    # -- the writer's tickets ---------------------------------------------------------------

    def serve_from_this_thread(self) -> None:
        """The calling thread (god's hub) commits its own ops when it has nothing else to do
        (Writer.commit_here)."""
        self._writer.serve_from_this_thread()

    def commit_here(self, idle: Callable[[], bool]) -> bool:
        """(the owner) Commit its ops in this thread if idle; see Writer.commit_here."""
        return self._writer.commit_here(idle)

    @property
    def ticket(self) -> int:
        """The ticket of the last op appended."""
        return self._writer.ticket

    def committed(self, ticket: int) -> bool:
        """True once the op with this ticket is committed."""
        return self._writer.committed(ticket)

    def wait(self, ticket: int, timeout: float | None = None) -> bool:
        """Block until the op with this ticket is committed, or timeout seconds passed (Writer.wait)."""
        return self._writer.wait(ticket, timeout)

    # -- the ops (any thread) -------------------------------------------------------------

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
            after = put[PUT_AFTER]
            values = put[PUT_VALUES] if len(put) > PUT_VALUES else None
            res = put[PUT_RESOURCES] if len(put) > PUT_RESOURCES else None
            return self._append(sql.PUT, [(seq, producer, first, n, put[PUT_QUEUE], put[PUT_TASK], put[PUT_PRIORITY],
                                        json.dumps(retry) if retry is not None else None, put[PUT_DUE],
                                        put[PUT_PAYLOADS], json.dumps(origin) if origin is not None else None,
                                        json.dumps(after) if after is not None else None,
                                        json.dumps(values) if values else None,
                                        json.dumps(res) if res else None)])

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
        ticket = self._writer.ticket
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
                return self._writer.ticket
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
            ticket = self._add_runs(runs) if runs else self._writer.ticket
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
                                     d.shown, d.reason, d.attempts, d.at, d.payload,
                                     json.dumps(d.values) if d.values else None,
                                     json.dumps(d.resources) if d.resources else None) for d in letters])

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

    def open_mailbox(self, producer: str) -> int:
        """Remember that god keeps a producer's results for it (its mailbox)."""
        return self._append(sql.MAILBOX, [(producer,)])

    def close_mailbox(self, producer: str) -> int:
        """Forget a producer's mailbox and the results waiting in it."""
        with self._cond:
            self._append(sql.NO_MAIL, [(producer,)])
            return self._append(sql.NO_MAILBOX, [(producer,)])

    def add_mail(self, producer: str, item: Item) -> int:
        """Keep a run of results posted to a producer's mailbox until it confirms them."""
        lo, hi, blob, consumer, attempt = item
        return self._append(sql.MAIL, [(producer, lo, hi, consumer, attempt, blob)])

    def drop_mail(self, producer: str, los: list[int]) -> int:
        """The producer confirmed these runs (by their first seqs). Not worth a commit of its
        own (a single task's path made three): lost with a god killed before the next one,
        the runs are posted again after its restart, and the producer drops them as duplicates."""
        return self._append(sql.UNMAIL, [(producer, lo) for lo in los], wake=False)

    def keep_outcome(self, tid: str, value: bytes) -> int:
        """Keep what a task gave (a pickled Value) for the tasks that wait for it."""
        return self._append(sql.OUTCOME, [(tid, value)])

    def drop_outcomes(self, tids: list[str]) -> int:
        """No task waits for these any more."""
        return self._append(sql.NO_OUTCOME, [(tid,) for tid in tids])

    def forget_producers(self, before: float) -> int:
        """Forget the producers last heard from before a Unix time (their re-sent puts are no
        longer told from new ones)."""
        return self._append(sql.FORGET, [(before,)])

    def close(self) -> None:
        """Commit what is pending, stop the writer and close the file."""
        self._writer.close()
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


