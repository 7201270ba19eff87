"""The whole system as users run it: real god, producers and consumers on loopback."""

from __future__ import annotations

import os
import signal
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest

from consumer.tasks import square
from tests.support.gods import God, addr_env, god_stats
from tests.support.helpers import Proc, read_results, wait_for_results, wait_until, write_tasks

pytestmark = pytest.mark.timeout(90)


def test_tutorial_flow_end_to_end(god: God, spawn: Callable[..., Proc]) -> None:
    # Given god, two consumers and a producer of three rounds
    env = addr_env(god)
    consumers = [spawn("consumer", "--processes", "1", env_extra=env) for _ in range(2)]
    producer = spawn("producer", "--rounds", "3", "--per-round", "10", "--interval", "0.1", env_extra=env)
    # When the producer is done and the results are in
    assert producer.wait() == 0, producer.text()
    results = wait_for_results(god.results, 30)
    # Then every task has exactly one correct result, and god printed them the tutorial's way
    assert len(results) == 30
    assert len({r["id"] for r in results}) == 30
    assert all(r["ok"] and r["value"] == square(r["payload"]) for r in results)
    god.proc.wait_for(r"^\d+ \* \d+ = \d+$")
    for c in consumers:
        c.signal(signal.SIGTERM)
        assert c.wait() == 0, c.text()
    god.proc.signal(signal.SIGTERM)
    assert god.proc.wait() == 0
    assert any(line.startswith("final: done 30") for line in god.proc.out), god.proc.text()


def test_tasks_from_a_file_and_a_failing_task_function(god: God, spawn: Callable[..., Proc], tmp_path: Path) -> None:
    # Given a file of ten tasks, one of which makes the task function raise
    src = write_tasks(tmp_path / "tasks.jsonl", list(range(10, 20)))
    env = addr_env(god)
    assert spawn("producer", "--from", str(src), env_extra=env).wait() == 0
    # When a burst consumer runs them
    c = spawn("consumer", "--task", "tests.support.tasks:fail_on_13", "--processes", "2", "--burst", env_extra=env)
    assert c.wait() == 0, c.text()
    # Then the failure is a result with the error and traceback, and the others succeeded
    results = wait_for_results(god.results, 10)
    by_payload = {r["payload"]: r for r in results}
    assert sorted(by_payload) == list(range(10, 20))
    bad = by_payload[13]
    assert bad["ok"] is False and bad["error"] == "ValueError: 13 is unlucky"
    assert "Traceback" in bad["traceback"] and "fail_on_13" in bad["traceback"]
    assert all(r["ok"] for p, r in by_payload.items() if p != 13)
    god.proc.wait_for(r"failed.*ValueError: 13 is unlucky")


def test_killed_consumer_tasks_are_redelivered_and_finished_exactly_once(
    god: God, spawn: Callable[..., Proc], tmp_path: Path
) -> None:
    # Given 12 tasks of 0.3 s and a consumer that takes them
    src = write_tasks(tmp_path / "slow.jsonl", [{"n": n, "s": 0.3} for n in range(12)])
    env = addr_env(god)
    victim = spawn("consumer", "--task", "tests.support.tasks:slow", "--processes", "2", env_extra=env, new_session=True)
    assert spawn("producer", "--from", str(src), env_extra=env).wait() == 0
    wait_until(lambda: read_results(god.results), 20, "the first result")
    # When it is SIGKILLed with its workers (a host going down) while it holds tasks
    os.killpg(victim.pid, signal.SIGKILL)
    victim.wait()
    # Then another consumer finishes every task, and each task id has exactly one result
    spawn("consumer", "--task", "tests.support.tasks:slow", "--processes", "2", env_extra=env)
    results = wait_for_results(god.results, 12, timeout=40)
    counts = Counter(r["id"] for r in results)
    assert len(counts) == 12 and set(counts.values()) == {1}, counts
    assert sorted(r["value"] for r in results) == sorted(square(n) for n in range(12))
    assert any(r["attempts"] >= 2 for r in results), "no task was redelivered: the kill came too late"
    god.proc.wait_for(r"consumer \S+ lost", stream="err")


def test_a_full_queue_makes_the_producer_wait_and_nothing_is_dropped(
    start_god: Callable[..., God], spawn: Callable[..., Proc]
) -> None:
    # Given a god that takes a batch while fewer than 5 tasks wait
    g = start_god("--capacity", "5")
    env = addr_env(g)
    # When a producer puts 4 rounds of 10
    producer = spawn("producer", "--rounds", "4", "--per-round", "10", "--interval", "0", env_extra=env)
    # Then god takes the first round, the producer says it is waiting, and finishes once a consumer makes room
    producer.wait_for(r"god's queues are full", stream="err")
    assert producer.popen.poll() is None
    spawn("consumer", "--processes", "1", env_extra=env)
    assert producer.wait() == 0, producer.text()
    results = wait_for_results(g.results, 40)
    assert len({r["id"] for r in results}) == 40


def test_a_result_that_cannot_be_pickled_fails_that_task_only(
    god: God, spawn: Callable[..., Proc], tmp_path: Path
) -> None:
    # Given tasks 5..9, where the task function returns a lambda for 7
    src = write_tasks(tmp_path / "tasks.jsonl", list(range(5, 10)))
    env = addr_env(god)
    assert spawn("producer", "--from", str(src), env_extra=env).wait() == 0
    # When one worker runs them all in one batch
    c = spawn("consumer", "--task", "tests.support.tasks:unpicklable_on_7", "--processes", "1", "--burst", env_extra=env)
    assert c.wait() == 0, c.text()
    # Then 7 fails saying why, and the others of its batch succeed
    by_payload = {r["payload"]: r for r in wait_for_results(god.results, 5)}
    assert by_payload[7]["ok"] is False and "cannot be pickled" in by_payload[7]["error"]
    assert all(by_payload[n]["value"] == square(n) for n in (5, 6, 8, 9))


def test_identical_consumers_share_the_work(god: God, spawn: Callable[..., Proc], tmp_path: Path) -> None:
    # Given two identical consumers, both running
    env = addr_env(god)
    for c in [spawn("consumer", "--task", "tests.support.tasks:nap", "--processes", "1", env_extra=env) for _ in range(2)]:
        c.wait_for("running", stream="err")
    # When 400 tasks of a few milliseconds each are put at once
    assert spawn("producer", "--from", str(write_tasks(tmp_path / "t.jsonl", list(range(400)))),
                 env_extra=env).wait() == 0
    # Then each consumer did about half of them (the first lease does not take them all)
    done = Counter(r["consumer"] for r in wait_for_results(god.results, 400, timeout=60))
    assert len(done) == 2 and min(done.values()) >= 150, done


def test_batches_sent_several_at_a_time_to_a_full_god_are_taken_once_each_in_order(
    start_god: Callable[..., God], spawn: Callable[..., Proc], tmp_path: Path, env: dict[str, str]
) -> None:
    # Given a god that takes a batch while fewer than 1,500 tasks wait, and a file of 5,000
    # tasks that the producer sends as batches of 1,000, several before the first is confirmed
    g = start_god("--capacity", "1500")
    where = addr_env(g)
    producer = spawn("producer", "--from", str(write_tasks(tmp_path / "t.jsonl", list(range(5000)))),
                     env_extra=where)
    # When god is full before they are all taken (the third waits for room, those behind it
    # are refused), and a consumer then makes room
    producer.wait_for(r"god's queues are full", stream="err")
    spawn("consumer", "--processes", "1", env_extra=where)
    assert producer.wait() == 0, producer.text()
    # Then every task was taken once, numbered in the order of the file, and none was lost
    results = wait_for_results(g.results, 5000)
    assert len(results) == 5000
    assert sorted((int(r["id"].rsplit("/", 1)[1]), r["payload"]) for r in results) == [
        (i + 1, i) for i in range(5000)]
    s = god_stats(g, env)
    assert (s["accepted"], s["duplicates"]) == (5000, 0)


def test_a_producer_that_finished_leaves_the_status(god: God, spawn: Callable[..., Proc], env: dict[str, str]) -> None:
    # When a producer puts its tasks and exits
    assert spawn("producer", "--rounds", "1", "--per-round", "3", env_extra=addr_env(god)).wait() == 0
    # Then god no longer lists it among its producers (it stayed 5 minutes), and holds its tasks
    s = god_stats(god, env)
    assert (s["producers"], s["waiting"]) == ([], 3)
