"""Recovery: what a journal held when god starts (the batches with tasks not done, each
producer's last seq, limits, pauses, schedules, dead letters), read back and rewritten
compactly before god takes it over.

With the results file the last god wrote to, the results it wrote after its last journal
entry count as done too, so those tasks are not served again.
"""

from __future__ import annotations

import bisect
import json
import sqlite3
import time
from collections import defaultdict
from dataclasses import dataclass, field

from god.journal import schema as sql
from god.journal.results_file import ResultsFile
from god.store.batches import Tries, runs_of
from god.store.dead_letters import DeadLetter
from god.store.mailboxes import Item
from god.store.schedules import Schedule
from shared import items
from shared.data import load_data
from shared.log import logger
from shared.records import PUT_FIRST, PUT_N, R_FIRST, R_HI, R_LO, R_PRODUCER, Put, RetryPolicy, Run, split_id
from shared.resources import Res

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
    #: Producers' mailboxes, with the runs of results they had not confirmed (of done tasks).
    mailboxes: dict[str, list[Item]] = field(default_factory=dict)
    #: What tasks others wait for gave (pickled Values), by id (god/rules/graph.py).
    outcomes: dict[str, bytes] = field(default_factory=dict)

#: Where each batch still held is in the journal: (producer, first) -> (its row, its last seq).
Kept = dict[tuple[str, int], tuple[int, int]]


def read_back(db: sqlite3.Connection, results: ResultsFile | None = None, *,
              forget_before: float | None = None) -> tuple[Recovered, Kept]:
    """Read what the last god left and rewrite it compactly (in one transaction): what it held,
    and where the batches still held are. Producers last heard from before ``forget_before``
    (a Unix time) are forgotten."""
    r = Recovered()
    kept: Kept = {}
    meta = dict(db.execute("SELECT key, value FROM meta"))
    rows = db.execute("SELECT seq, producer, first, n, queue, task, priority, retry, due, payloads, origin, after, "
                      "vals, res FROM batches ORDER BY seq")
    held: dict[tuple[str, int], tuple[int, Put, bytearray]] = {}
    origins: dict[tuple[str, int], list[str]] = {}
    firsts: dict[str, list[int]] = defaultdict(list)
    for seq, producer, first, n, queue, task, priority, retry, due, payloads, origin, after, vals, res in rows:
        try:
            items.check(payloads, n, "its payloads")
        except ValueError as e:  # (not a blob this god wrote: nothing of it is loaded, or kept)
            logger.bind(role="god").error("journal: left out the batch of {} from {} ({} tasks): {}",
                                          producer, first, n, e)
            continue
        put: Put = (first, n, payloads, queue, task, priority, _policy(retry), due,
                    tuple(json.loads(after)) if after is not None else None,
                    tuple(json.loads(vals)) if vals is not None else None,
                    _resources(res))
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
        for run in load_data(blob):
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
        for producer, first, lo, hi, n, retried, due in load_data(blob):
            tries[producer, first].append((lo - first, hi - first, n, retried, due))
    if forget_before is not None:
        db.execute(sql.FORGET, (forget_before,))
    r.upto = dict(db.execute("SELECT name, upto FROM producers"))
    r.limits = dict(db.execute("SELECT queue, rate FROM limits"))
    r.paused = [queue for (queue,) in db.execute("SELECT queue FROM paused ORDER BY queue")]
    r.schedules = [Schedule(*row) for row in db.execute(
        "SELECT name, every, cron, queue, task, payload, next, runs FROM schedules ORDER BY name")]
    r.dead = [DeadLetter(tid, queue, task, priority, _policy(retry), shown, reason, attempts, at,
                         values=tuple(json.loads(vals)) if vals is not None else None, resources=_resources(res))
              for tid, queue, task, priority, retry, shown, reason, attempts, at, vals, res in db.execute(
                  "SELECT id, queue, task, priority, retry, shown, reason, attempts, at, vals, res FROM dead "
                  "ORDER BY at")]
    for (producer, first), (_, put, done) in held.items():
        r.upto[producer] = max(r.upto.get(producer, 0), first + put[PUT_N] - 1)

    def is_done(producer: str, seq: int) -> bool:
        fs = firsts.get(producer, [])
        i = bisect.bisect_right(fs, seq) - 1
        h = held.get((producer, fs[i])) if i >= 0 else None
        if h is not None and seq < fs[i] + h[1][PUT_N]:
            return bool(h[2][seq - fs[i]])
        return seq <= r.upto.get(producer, 0)  # its batch was released: all of it done

    r.outcomes = dict(db.execute("SELECT id, value FROM outcomes"))
    r.mailboxes = {producer: [] for (producer,) in db.execute("SELECT producer FROM mailboxes")}
    mail = db.execute("SELECT producer, lo, hi, consumer, attempt, vals FROM mail ORDER BY producer, lo").fetchall()
    for producer, lo, hi, consumer, attempt, blob in mail:
        box = r.mailboxes.get(producer)
        if box is None:
            continue
        # Posted, but the task may have no result: god died before its results line was written
        # (then it runs again, and its next result is posted). Keep what is done.
        done_seqs = [seq for seq in range(lo, hi) if is_done(producer, seq)]
        if len(done_seqs) == hi - lo:
            box.append((lo, hi, blob, consumer, attempt))
            continue
        values = items.load(blob) if done_seqs else []
        for a, z in runs_of(done_seqs):
            box.append((a, z, items.dump(items.cut(values, a - lo, z - lo)), consumer, attempt))
    for (producer, first), (_, put, done) in held.items():
        left = done.count(0)
        if left:
            r.batches.append((producer, put, done, tries.get((producer, first), []), origins.get((producer, first))))
            r.pending += left
            r.done += put[PUT_N] - left
    # Rewrite: the open batches, one row of their done runs, their attempts; the rest goes.
    with db:
        db.execute("DELETE FROM done")
        db.execute("DELETE FROM attempts")
        db.execute("DELETE FROM mail")
        db.executemany(sql.MAIL, [(producer, lo, hi, consumer, attempt, blob)
                                  for producer, items in r.mailboxes.items()
                                  for lo, hi, blob, consumer, attempt in items])
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
            kept[producer, first] = (seq, first + put[PUT_N] - 1)
    return r, kept


def _policy(text: str | None) -> RetryPolicy | None:
    """A retry policy as the journal keeps it (JSON), back as a tuple."""
    if text is None:
        return None
    retries, backoff, longest, on = json.loads(text)
    return retries, backoff, longest, tuple(on) if on is not None else None


def _resources(res: str | None) -> Res | None:
    """What a batch's tasks need, as the journal keeps it (JSON pairs)."""
    return tuple((str(k), float(v)) for k, v in json.loads(res)) if res is not None else None
