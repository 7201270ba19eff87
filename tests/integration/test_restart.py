"""A god killed and started again on its journal: nothing lost, nothing run or recorded twice."""

from __future__ import annotations

import json
import signal
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest

from consumer.tasks import square
from producer import Executor
from tests.support.gods import God, addr_env
from tests.support.helpers import Proc, read_results, wait_for_results, write_tasks
from tests.support.journals import version_2_journal

pytestmark = pytest.mark.timeout(90)


def port_of(g: God) -> int:
    return int(g.address.rsplit(":", 1)[1])


@pytest.mark.parametrize("sig, sync", [(signal.SIGKILL, "normal"), (signal.SIGTERM, "normal"), (signal.SIGKILL, "full")],
                         ids=["SIGKILL", "SIGTERM", "SIGKILL-sync-full"])
def test_a_god_restarted_on_its_journal_loses_and_repeats_nothing(
    start_god: Callable[..., God], spawn: Callable[..., Proc], tmp_path: Path, sig: signal.Signals, sync: str
) -> None:
    # Given 60 tasks put, and a consumer part way through them (with --sync full: each commit
    # and results write synced to disk, the one part of a power cut a test can make)
    journal = ("--journal", str(tmp_path / "journal.sqlite3"), "--sync", sync)
    god = start_god("--lease-timeout", "1", *journal)
    env = addr_env(god)
    src = write_tasks(tmp_path / "tasks.jsonl", [{"n": i, "s": 0.05} for i in range(60)])
    assert spawn("producer", "--from", str(src), env_extra=env).wait() == 0
    consumer = spawn("consumer", "--task", "tests.support.tasks:slow", "--processes", "2", env_extra=env)
    wait_for_results(god.results, 10)
    # When god is killed outright (or stopped) and started again on the same journal and port
    god.proc.signal(sig)
    assert god.proc.wait() == (-9 if sig == signal.SIGKILL else 0), god.proc.text()
    again = start_god("--lease-timeout", "1", *journal, port=port_of(god))
    again.proc.wait_for(r"journal .*: \d+ tasks? to serve .*, \d+ tasks? already done", stream="err")

    # Then the consumer carries on against the new god and every task has one result line
    results = wait_for_results(again.results, 60, timeout=60)
    assert consumer.popen.poll() is None  # it waited for god instead of giving up
    consumer.signal(signal.SIGTERM)  # before god: its goodbye is heard, not tried for seconds
    assert consumer.wait() == 0, consumer.text()
    again.proc.signal(signal.SIGTERM)
    assert again.proc.wait() == 0, again.proc.text()
    results = read_results(again.results)
    lines_per_id = Counter(r["id"] for r in results)
    assert len(lines_per_id) == 60 and max(lines_per_id.values()) == 1, lines_per_id.most_common(3)
    assert sorted(r["payload"]["n"] for r in results) == list(range(60))
    assert all(r["ok"] and r["value"] == square(r["payload"]["n"]) for r in results)


def test_a_producer_that_waits_gets_every_result_across_a_restart_of_god(
    start_god: Callable[..., God], spawn: Callable[..., Proc], tmp_path: Path
) -> None:
    # Given a producer waiting for the results of 300 tasks, a third of them done
    journal = ("--lease-timeout", "1", "--journal", str(tmp_path / "journal.sqlite3"))
    god = start_god(*journal)
    env = addr_env(god)
    spawn("consumer", "--task", "tests.support.tasks:slow", "--processes", "2", env_extra=env)
    src = write_tasks(tmp_path / "tasks.jsonl", [{"n": i, "s": 0.01} for i in range(300)])
    out = tmp_path / "mine.jsonl"
    producer = spawn("producer", "--from", str(src), "--wait", "--results", str(out), env_extra=env)
    wait_for_results(god.results, 100)
    # When god is killed and started again on its journal
    god.proc.signal(signal.SIGKILL)
    god.proc.wait()
    start_god(*journal, port=port_of(god))
    # Then the producer gets every result once, and exits 0
    assert producer.wait(60) == 0, producer.text()
    got = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(got) == 300 and len({r["id"] for r in got}) == 300
    assert sorted(r["value"] for r in got) == sorted(square(i) for i in range(300))


def slow_square(n: int) -> int:
    time.sleep(0.01)
    return n * n


def test_futures_resolve_with_their_values_across_a_restart_of_god(
    start_god: Callable[..., God], spawn: Callable[..., Proc], tmp_path: Path, env: dict[str, str],
    monkeypatch: pytest.MonkeyPatch
) -> None:
    journal = ("--lease-timeout", "1", "--journal", str(tmp_path / "journal.sqlite3"))
    god = start_god(*journal)
    spawn("consumer", "--processes", "2", env_extra=addr_env(god))
    monkeypatch.setenv("GOD_AUTHKEY", env["GOD_AUTHKEY"])
    with Executor(god.address, give_up_after=30) as ex:
        futures = [ex.submit(slow_square, i) for i in range(200)]
        wait_for_results(god.results, 60)
        god.proc.signal(signal.SIGKILL)
        god.proc.wait()
        start_god(*journal, port=port_of(god))
        assert [f.result(timeout=60) for f in futures] == [i * i for i in range(200)]
    lines_per_id = Counter(r["id"] for r in wait_for_results(god.results, 200))
    assert len(lines_per_id) == 200 and max(lines_per_id.values()) == 1


def test_a_second_god_on_the_same_journal_refuses(start_god: Callable[..., God], spawn: Callable[..., Proc],
                                                    tmp_path: Path) -> None:
    journal = tmp_path / "shared.sqlite3"
    start_god("--journal", str(journal))
    second = spawn("god", "--address", "127.0.0.1:0", "--journal", str(journal))
    assert second.wait() == 3
    assert f"journal {journal} is in use by another god (pid" in second.text()
    assert "Traceback" not in second.text()


@pytest.mark.parametrize("content, message", [
    (b"this is not a database" * 200, "is damaged or not a journal"),
    (b"", "empty, starting fresh"),
])
def test_god_names_a_journal_it_cannot_use(spawn: Callable[..., Proc], tmp_path: Path, content: bytes,
                                           message: str) -> None:
    journal = tmp_path / "j.sqlite3"
    journal.write_bytes(content)
    g = spawn("god", "--address", "127.0.0.1:0", "--journal", str(journal))
    if not content:  # an empty file is a new journal
        g.wait_for(message, stream="err")
        return
    assert g.wait() == 3
    assert message in g.text() and str(journal) in g.text()
    assert "Traceback" not in g.text()
    assert journal.read_bytes() == content  # left alone for the user to look at
    assert not (tmp_path / "j.sqlite3.lock").exists()  # and no lock file of ours beside it


def test_a_journal_path_that_is_a_directory_is_named(spawn: Callable[..., Proc], tmp_path: Path) -> None:
    g = spawn("god", "--address", "127.0.0.1:0", "--journal", str(tmp_path))
    assert g.wait() == 3
    assert f"journal {tmp_path} is a directory: give a file in it, e.g. --journal {tmp_path / 'journal.sqlite3'}" \
        in g.text(), g.text()
    assert "Traceback" not in g.text()


def test_journal_and_no_journal_together_is_a_usage_error(spawn: Callable[..., Proc], tmp_path: Path) -> None:
    g = spawn("god", "--address", "127.0.0.1:0", "--journal", str(tmp_path / "j"), "--no-journal")
    assert g.wait() == 2
    assert "--journal and --no-journal" in g.text()


def test_without_a_journal_god_says_what_a_restart_loses(spawn: Callable[..., Proc]) -> None:
    g = spawn("god", "--address", "127.0.0.1:0", "--no-journal")
    g.wait_for("no journal: tasks and results live in memory only", stream="err")


def test_a_god_started_on_a_journal_of_the_previous_version_serves_what_it_held(
    start_god: Callable[..., God], spawn: Callable[..., Proc], tmp_path: Path
) -> None:
    # Given a journal written by the previous version: four tasks waiting, one done
    path = tmp_path / "old.sqlite3"
    version_2_journal(path)
    # When god starts on it
    god = start_god("--journal", str(path))
    god.proc.wait_for(r"journal .*: 4 tasks to serve", stream="err")
    spawn("consumer", "--task", "tests.support.tasks:echo", "--processes", "1", "--burst", env_extra=addr_env(god))
    # Then those four run, and the done one does not
    results = wait_for_results(god.results, 4)
    assert sorted((r["id"], r["value"]) for r in results) == [
        ("p/1", "a"), ("p/3", "c"), ("p/4", "d"), ("tutorial:abc/1", 7)]
