"""The journal, the results file and recovery, on temporary files: no sockets."""

from __future__ import annotations

import json
import os
import sqlite3
import time
from pathlib import Path

import pytest

from god.journal.recorder import Recorder
from god.journal.results_file import ResultsFile
from god.journal.journal import Journal
from shared.errors import ConfigError
from shared.records import G_ATTEMPT, G_FIRST, G_LO, G_PRODUCER, G_QUEUE, G_TASK
from tests.support.core import Core, payloads_of, restarted, seqs


def test_confirmed_tasks_come_back_in_order_and_done_ones_do_not(journal: Journal) -> None:
    core = Core(journal=journal)
    assert core.settle(core.put("p", [0, 1, 2, 3, 4], queue="q", task="m:f", priority=3)) == 5
    grants = core.lease("c", 5, queues=("q",))
    core.ack("c", grants, only=(2, 3))
    core.ack("c", grants, only=(4, 5), fail={4})
    Recorder(core.broker, results_path=None, journal=journal).take()  # journals the two results

    again, r, core2 = restarted(journal)
    try:
        assert (r.pending, r.done) == (3, 2)
        got = core2.lease("c", 10, queues=("q",))
        assert seqs(got) == [1, 3, 5] and [payloads_of(g) for g in got] == [[0], [2], [4]]
        assert {(g[G_QUEUE], g[G_TASK]) for g in got} == {("q", "m:f")}  # queue, task and priority kept
        assert core2.settle(core2.put("p", [0, 1, 2, 3, 4], first=1)) == 5  # a re-sent put: not again
        assert core2.broker.figures.stats()["waiting"] == 0
        assert core2.ack("c", [g for g in grants], only=(2, 3)) == 0  # a late result of a done task
    finally:
        again.close()


def test_a_producers_finished_batches_are_not_taken_again_after_a_restart(
    journal: Journal, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("god.journal.recorder.COMPACT_EVERY_S", 0.0)
    core = Core(journal=journal)
    core.settle(core.put("p", [1, 2]))
    core.ack("c", core.lease("c", 2))
    record = Recorder(core.broker, results_path=None, journal=journal)
    record.take()
    record.take()  # releases the finished batch
    journal.wait(journal.ticket)
    assert batch_rows(journal.path) == 0
    again, r, core2 = restarted(journal)
    try:
        assert r.upto == {"p": 2}
        assert core2.settle(core2.put("p", [1, 2], first=1)) == 2 and core2.broker.figures.stats()["waiting"] == 0
    finally:
        again.close()


def test_attempts_of_tasks_that_killed_their_consumer_survive_a_restart(journal: Journal) -> None:
    core = Core(journal=journal, max_attempts=3)
    core.settle(core.put("p", ["poison", "fine"]))
    core.lease("c", 2)
    core.lost("c", ("p", 1, 1, 2))
    core.lease("c", 2)
    core.lost("c", ("p", 1, 1, 2))
    again, r, core2 = restarted(journal)
    try:
        assert r.pending == 2
        got = core2.lease("c", 2)
        assert [(seqs([g]), g[G_ATTEMPT]) for g in got] == [([1], 3), ([2], 1)]  # the last attempt
        core2.lost("c", ("p", 1, 1, 2))
        assert core2.broker.figures.stats()["dead"] == 1
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
    assert rf.ids_after(offset) == ["b"]
    assert rf.ids_after(10**9) == ["a", "b"]  # shorter than the offset: a new file
    assert rf.write(['{"id": "c", "ok": true}\n'], [("c", 1, 1, 2)]) == [("c", 1, 1, 2)]
    rf.close()
    assert [json.loads(line)["id"] for line in p.read_text().splitlines()] == ["a", "b", "c"]


def test_results_a_killed_god_wrote_but_did_not_journal_are_not_run_again(journal: Journal, tmp_path: Path) -> None:
    results = tmp_path / "r.jsonl"
    core = Core(journal=journal)
    core.settle(core.put("p", [0, 1, 2]))
    grants = core.lease("c", 3)
    record = Recorder(core.broker, results_path=results, journal=journal)
    core.ack("c", grants, only=(1, 2))
    record.take()  # p/1: written, then journaled
    record.close()
    # A god killed after writing p/2's line, before journaling it, and while writing p/3's
    with open(results, "a") as f:
        f.write(json.dumps({"id": "p/2", "ok": False}) + "\n" + '{"id": "p/3", "ok"')

    rf = ResultsFile(results.resolve())
    again, r, core2 = restarted(journal, rf)
    try:
        assert r.found_in_file == 1 and (r.pending, r.done) == (1, 2)
        assert seqs(core2.lease("c", 10)) == [3]  # its line was cut short: it runs again
        assert [json.loads(line)["id"] for line in results.read_text().splitlines()] == ["p/1", "p/2"]
    finally:
        rf.close()
        again.close()


def test_a_put_is_confirmed_only_once_its_tasks_are_committed(path: Path) -> None:
    j = Journal(path)
    j.recover()  # the writer is not started yet: nothing can commit
    core = Core(journal=j)
    try:
        put = core.put("p", [0], first=1)
        resent = core.put("p", [0], first=1)
        core.step()
        assert not put.done  # still waiting for the commit
        assert not resent.done  # a re-sent put of the same task waits for that commit too
        j.start()
        assert core.settle(put) == 1 and core.settle(resent) == 1
    finally:
        j.close()
    again = Journal(path)
    try:
        assert again.recover().pending == 1
    finally:
        again.close()


def batch_rows(path: Path) -> int:
    db = sqlite3.connect(path)
    try:
        return int(db.execute("SELECT count(*) FROM batches").fetchone()[0])
    finally:
        db.close()


def test_a_batch_is_released_once_none_of_its_tasks_waits_or_runs(
    journal: Journal, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("god.journal.recorder.COMPACT_EVERY_S", 0.0)
    core = Core(journal=journal)
    core.settle(core.put("p", [0, 1]))
    core.settle(core.put("p", [2]))
    record = Recorder(core.broker, results_path=None, journal=journal)
    grants = core.lease("c", 3)
    core.ack("c", grants, only=(1, 3))  # the first batch is done, p/3 runs
    record.take()
    record.take()
    journal.wait(journal.ticket)
    assert batch_rows(journal.path) == 1
    assert journal.held() == [("p", 3)]
    core.ack("c", grants, only=(3, 4))
    record.take()
    record.take()
    journal.wait(journal.ticket)
    assert batch_rows(journal.path) == 0


def test_finished_batches_go_with_their_rows_while_an_older_one_still_runs(
    journal: Journal, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("god.journal.recorder.COMPACT_EVERY_S", 0.0)
    core = Core(journal=journal)
    record = Recorder(core.broker, results_path=None, journal=journal)
    core.settle(core.put("p", [0]))
    stuck = core.lease("c", 1)  # p/1 runs for as long as it likes
    for k in range(50):  # batches after it come and finish, with an attempt counted on the way
        core.settle(core.put("p", [k, k]))
        g = core.lease("d", 2)[0]
        core.lost("d", (g[G_PRODUCER], g[G_FIRST], g[G_LO], g[G_LO] + 1))  # its worker died on one
        assert core.ack("c", core.lease("c", 2)) == 2
        record.take()
    record.take()
    journal.wait(journal.ticket)
    db = sqlite3.connect(journal.path)
    try:  # what is left: the batch with p/1 running, nothing of the others
        assert db.execute("SELECT producer, first FROM batches").fetchall() == [("p", 1)]
        assert db.execute("SELECT count(*) FROM done").fetchone()[0] == 0
        assert db.execute("SELECT count(*) FROM attempts").fetchone()[0] == 0
    finally:
        db.close()
    assert journal.held() == [("p", 1)] and len(stuck) == 1


def test_no_batch_is_released_while_the_results_file_refuses_its_results(
    journal: Journal, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("god.journal.recorder.COMPACT_EVERY_S", 0.0)
    core = Core(journal=journal)
    core.settle(core.put("p", [0]))
    record = Recorder(core.broker, results_path=Path("/dev/full"), journal=journal)
    core.ack("c", core.lease("c", 1))
    record.take()  # the line is refused: not journaled, so the task must stay in the journal
    record.take()
    journal.wait(journal.ticket)
    assert batch_rows(journal.path) == 1
    assert record.results is not None
    record.results.close()
    again, r, _ = restarted(journal)
    try:
        assert r.pending == 1  # served again after a restart
    finally:
        again.close()


def test_a_retry_waiting_for_its_time_survives_a_restart(journal: Journal) -> None:
    # Given two failed tasks waiting for their retries: one due in about 1000 s, one due at once
    core = Core(journal=journal)
    core.settle(core.put("p", ["later"], retry=(2, 1000.0, 1000.0, None)))
    core.settle(core.put("p", ["now"], retry=(2, 0.001, 0.001, None)))
    core.ack("c", core.lease("c", 2), fail={1, 2})
    s = core.broker.figures.stats()
    assert s["scheduled"] >= 1 and s["scheduled"] + s["waiting"] == 2
    # When god restarts on its journal
    again, r, core2 = restarted(journal)
    try:
        # Then the one whose time has come is served at once, its attempts counted; the other waits
        s = core2.broker.figures.stats()
        assert (s["waiting"], s["scheduled"]) == (1, 1)
        (g,) = core2.lease("c", 10)
        assert (payloads_of(g), g[G_ATTEMPT]) == (["now"], 2)
    finally:
        again.close()


def test_a_delayed_batch_waits_across_a_restart(journal: Journal) -> None:
    core = Core(journal=journal)
    core.settle(core.put("p", ["later"], due=time.time() + 1000))
    core.settle(core.put("p", ["past"], due=time.time() - 1))
    again, r, core2 = restarted(journal)
    try:
        s = core2.broker.figures.stats()
        assert (s["scheduled"], s["waiting"]) == (1, 1)
        assert [payloads_of(g) for g in core2.lease("c", 10)] == [["past"]]
    finally:
        again.close()


def test_a_rate_limit_set_while_god_runs_holds_across_a_restart(journal: Journal) -> None:
    core = Core(journal=journal)
    core.call("set_limit", "images", 5).result()
    core.call("set_limit", "pages", 2).result()
    core.call("set_limit", "pages", None).result()
    journal.wait(journal.ticket)
    again, r, _ = restarted(journal)
    again.close()
    assert r.limits == {"images": 5.0}


def test_producers_past_the_dedupe_window_are_forgotten_by_the_journal(
    journal: Journal, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("god.journal.recorder.COMPACT_EVERY_S", 0.0)
    core = Core(journal=journal)
    core.settle(core.put("old", [1]))
    core.ack("c", core.lease("c", 1))
    record = Recorder(core.broker, results_path=None, journal=journal)
    record.take()
    record.take()  # releases the batch: its producer's last seq stays, with when
    journal.wait(journal.ticket)
    journal.wait(journal.forget_producers(time.time() - 3600))  # heard from just now: kept
    again, r, core2 = restarted(journal)
    assert r.upto == {"old": 1}
    again.close()
    again = Journal(journal.path)
    try:  # a restart a window later forgets it
        assert again.recover(forget_before=time.time() + 1).upto == {}
        db = sqlite3.connect(journal.path)
        assert db.execute("SELECT count(*) FROM producers").fetchone()[0] == 0
        db.close()
    finally:
        again.close()


def test_dead_letters_keep_their_payloads_on_disk_across_a_restart_and_are_served_again(journal: Journal) -> None:
    core = Core(journal=journal, lease_s=5.0, max_attempts=1)
    core.settle(core.put("p", ["x" * 1000, "small"], queue="q", task="m:f"))
    core.lease("doomed", 2, queues=("q",))
    core.clock.t += 6
    core.broker.reap()
    Recorder(core.broker, results_path=None, journal=journal).take()
    assert all(d.payload is None for d in core.broker.state.dead.listing())  # not in memory
    again, r, core2 = restarted(journal)
    try:
        assert [d.id for d in r.dead] == ["p/1", "p/2"]
        moved = dict(core2.call("requeue", ["p/2"]).result())
    finally:
        again.close()
    again, r, core3 = restarted(again)  # the batch serving it again survives a restart too
    try:
        assert [d["id"] for d in core3.call("dead", None).result()] == ["p/1"]
        (g,) = core3.lease("c", 5, queues=("q",))
        assert payloads_of(g) == ["small"] and g[G_TASK] == "m:f"
        core3.ack("c", [g])
        out, _ = core3.broker.take_results()
        line = json.loads(out[0][0])
        assert (line["id"], line["requeued_from"]) == (moved["p/2"], "p/2")
    finally:
        again.close()


def test_sync_full_syncs_every_commit_and_every_results_write(path: Path, tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    for sync_full, level in ((False, 1), (True, 2)):  # NORMAL, FULL
        j = Journal(path, sync_full=sync_full)
        try:
            assert j._db.execute("PRAGMA synchronous").fetchone()[0] == level
        finally:
            j.close()
    synced: list[int] = []
    monkeypatch.setattr("god.journal.results_file.os.fsync", synced.append)
    plain = ResultsFile(tmp_path / "plain.jsonl")
    plain.write(["a\n"], [])
    plain.close()
    assert synced == []
    full = ResultsFile(tmp_path / "full.jsonl", fsync=True)
    full.write(["a\n"], [])
    assert len(synced) == 1
    full.close()


def test_a_schedule_survives_a_restart_and_runs_once_for_the_periods_missed(journal: Journal) -> None:
    core = Core(journal=journal)
    core.call("schedule_add", "tick", 10.0, None, "default", None, "hello").result()
    core.clock.t = 1010
    core.broker.reap()
    again, r, core2 = restarted(journal)
    try:
        (s,) = r.schedules
        assert (s.name, s.runs, s.next) == ("tick", 1, 1020)
        core2.clock.t = 1055  # god was down through 1020, 1030, 1040, 1050
        core2.broker.reap()
        core2.broker.reap()
        assert seqs(core2.lease("c", 10)) == [1, 2]  # run 1 still waiting, and one run for the four missed
        assert core2.call("schedule_list").result()[0]["next"] == 1060
    finally:
        again.close()


def test_the_wal_stays_short_while_commits_keep_coming(journal: Journal, path: Path) -> None:
    # (a checkpoint from a thread of its own, PASSIVE, never caught up with commits that kept
    # coming: the WAL grew to 148 MB in 3 s of single tasks)
    wal = Path(f"{path}-wal")
    biggest = 0
    for i in range(1, 201):  # 200 commits of 200 kB: 40 MB through the WAL
        put = (i, 1, b"\0" * 200_000, "default", None, 0, None, None, None)
        assert journal.wait(journal.add_batch("p", put), 10)
        biggest = max(biggest, wal.stat().st_size)
    assert biggest < 8 << 20, f"the WAL grew to {biggest:,} bytes"
