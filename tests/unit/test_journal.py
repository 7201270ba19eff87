"""The journal, the results file and the broker's recovery, on temporary files: no sockets."""

from __future__ import annotations

import io
import json
import os
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from god.broker import Broker
from god.journal import Journal
from god.monitor import Monitor
from god.results import ResultsFile
from shared.errors import ConfigError
from shared.records import failure, success


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "j" / "journal.sqlite3"


@pytest.fixture
def journal(path: Path) -> Iterator[Journal]:
    j = Journal(path)
    j.recover()
    j.start()
    yield j
    j.close()


def reopen(j: Journal) -> Journal:
    """Close a journal and open it again, the way a restarted god does."""
    j.close()
    again = Journal(j.path)
    return again


def run(broker: Broker, n: int) -> list[str]:
    """Put n tasks, lease them all, and return their ids."""
    broker.put_many("p", [(f"p/{i}", i) for i in range(n)])
    return [t[0] for t in broker.lease("c", n)]


def test_confirmed_tasks_come_back_in_order_and_done_ones_do_not(journal: Journal) -> None:
    b = Broker(journal=journal)
    leased = run(b, 5)
    b.ack_many("c", [success(leased[1], 1), failure(leased[3], ValueError("x"))])
    m = Monitor(b, out=io.StringIO(), results_path=None, quiet=True, journal=journal)
    m.step(0)  # journals the two results

    again = reopen(journal)
    try:
        r = again.recover()
        assert [(tid, p) for tid, p, _ in r.pending] == [("p/0", 0), ("p/2", 2), ("p/4", 4)]
        assert sorted(r.done_ids) == ["p/1", "p/3"]
        b2 = Broker(journal=again)
        b2.restore(r)
        assert [t[0] for t in b2.lease("c", 10)] == ["p/0", "p/2", "p/4"]
        assert b2.put_many("p", [("p/1", 1)]) == 1 and b2.stats()["pending"] == 0  # done: not again
        assert b2.ack_many("c", [success("p/3", 9)]) == 0  # a late result of a done task: a duplicate
    finally:
        again.close()


def test_attempts_of_tasks_that_killed_their_consumer_survive_a_restart(journal: Journal) -> None:
    b = Broker(journal=journal, max_attempts=3)
    tid = run(b, 1)[0]
    b.release("c", [], crashed=[tid])
    b.lease("c", 1)
    b.release("c", [], crashed=[tid])
    again = reopen(journal)
    try:
        r = again.recover()
        assert r.pending == [(tid, 0, 2)]
        b2 = Broker(journal=again, max_attempts=3)
        b2.restore(r)
        again.start()
        assert b2.lease("c", 1)[0][2] == 3  # the third and last attempt
        b2.release("c", [], crashed=[tid])
        assert b2.stats()["dead"] == 1
    finally:
        again.close()


def test_a_second_journal_on_the_same_file_is_refused(journal: Journal) -> None:
    with pytest.raises(ConfigError, match=r"in use by another god \(pid \d+ on "):
        Journal(journal.path)


def test_a_file_that_is_not_a_journal_is_refused(path: Path) -> None:
    path.parent.mkdir()
    path.write_bytes(b"hello, this is not SQLite at all" * 100)
    with pytest.raises(ConfigError, match="damaged or not a journal"):
        Journal(path)
    path.unlink()
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE users (name TEXT)")
    db.commit()
    db.close()
    with pytest.raises(ConfigError, match="a SQLite file but not a god journal"):
        Journal(path)


def read_only_dir(tmp_path: Path) -> Path:
    """A directory this process cannot create files in (root writes anywhere but sysfs)."""
    if os.geteuid() == 0:
        return Path("/sys/god-test")
    ro = tmp_path / "ro"
    ro.mkdir(mode=0o555)
    return ro


def test_a_journal_in_a_read_only_directory_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot use journal .*(Permission denied|Operation not permitted)"):
        Journal(read_only_dir(tmp_path) / "journal.sqlite3")


def test_results_file_drops_a_line_cut_short_and_reads_the_results_after_an_offset(tmp_path: Path) -> None:
    p = tmp_path / "r.jsonl"
    p.write_text('{"id": "a", "ok": true}\n')
    offset = p.stat().st_size
    with open(p, "a") as f:
        f.write('{"id": "b", "ok": false}\n{"id": "c", "val')
    rf = ResultsFile(p)
    assert rf.ids_after(offset) == [("b", False)]
    assert rf.ids_after(10**9) == [("a", True), ("b", False)]  # shorter than the offset: a new file
    assert rf.write(['{"id": "c", "ok": true}\n'], [("c", True)]) == [("c", True)]
    rf.close()
    assert [json.loads(line)["id"] for line in p.read_text().splitlines()] == ["a", "b", "c"]


def test_results_a_killed_god_wrote_but_did_not_journal_are_not_run_again(journal: Journal, tmp_path: Path) -> None:
    results = tmp_path / "r.jsonl"
    b = Broker(journal=journal)
    leased = run(b, 3)
    m = Monitor(b, out=io.StringIO(), results_path=results, quiet=True, journal=journal)
    b.ack_many("c", [success(leased[0], 0)])
    m.step(0)  # p/0: written, then journaled
    m.close()
    # A god killed after writing p/1's line, before journaling it, and while writing p/2's
    with open(results, "a") as f:
        f.write(json.dumps({"id": "p/1", "ok": False}) + "\n" + '{"id": "p/2", "ok"')

    again = reopen(journal)
    rf = ResultsFile(results.resolve())
    try:
        r = again.recover(rf)
        assert r.found_in_file == 1
        assert sorted(r.done_ids) == ["p/0", "p/1"]
        assert [tid for tid, _, _ in r.pending] == ["p/2"]  # its line was cut short: it runs again
        assert [json.loads(line)["id"] for line in results.read_text().splitlines()] == ["p/0", "p/1"]
    finally:
        rf.close()
        again.close()


def test_a_put_is_confirmed_only_once_its_tasks_are_committed(path: Path) -> None:
    j = Journal(path)
    j.recover()  # the writer is not started yet: nothing can commit
    b = Broker(journal=j)
    returned: list[int] = []
    t, resent = (threading.Thread(target=lambda: returned.append(b.put_many("p", [("p/0", 0)]))) for _ in range(2))
    t.start()
    try:
        t.join(0.3)
        assert t.is_alive() and not returned  # still waiting for the commit
        resent.start()
        resent.join(0.3)
        assert resent.is_alive()  # a re-sent put of the same task waits for that commit too
    finally:
        j.start()
        for thread in (t, resent):
            if thread.ident is not None:
                thread.join(5)
        j.close()
    assert returned == [1, 1]
    again = Journal(path)
    try:
        assert [tid for tid, _, _ in again.recover().pending] == ["p/0"]
    finally:
        again.close()


def task_rows(path: Path) -> int:
    db = sqlite3.connect(path)
    try:
        return int(db.execute("SELECT count(*) FROM task_batches").fetchone()[0])
    finally:
        db.close()


def test_a_task_batch_is_released_once_none_of_its_tasks_waits_or_runs(
    journal: Journal, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("god.monitor.COMPACT_EVERY_S", 0.0)
    b = Broker(journal=journal)
    b.put_many("p", [("p/0", 0), ("p/1", 1)])
    b.put_many("p", [("p/2", 2)])
    m = Monitor(b, out=io.StringIO(), results_path=None, quiet=True, journal=journal)
    leased = b.lease("c", 3)
    b.ack_many("c", [success(t[0], 0) for t in leased[:2]])  # the first batch is done, p/2 runs
    m.step(0)
    journal.wait(journal.ticket)
    assert task_rows(journal.path) == 1
    assert journal.oldest_open(10) == [["p/2"]]
    b.ack_many("c", [success("p/2", 0)])
    m.step(0)
    journal.wait(journal.ticket)
    assert task_rows(journal.path) == 0


def test_no_batch_is_released_while_the_results_file_refuses_its_results(
    journal: Journal, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("god.monitor.COMPACT_EVERY_S", 0.0)
    b = Broker(journal=journal)
    b.put_many("p", [("p/0", 0)])
    m = Monitor(b, out=io.StringIO(), results_path=Path("/dev/full"), quiet=True, journal=journal)
    b.ack_many("c", [success(t[0], 0) for t in b.lease("c", 1)])
    m.step(0)  # the line is refused: not journaled, so the task must stay in the journal
    journal.wait(journal.ticket)
    assert task_rows(journal.path) == 1
    m.results.close()  # type: ignore[union-attr]
    again = reopen(journal)
    try:
        assert [tid for tid, _, _ in again.recover().pending] == ["p/0"]  # served again after a restart
    finally:
        again.close()
