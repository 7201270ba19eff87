"""Tasks that kill their worker, and tasks that never finish: bounded, reported, and the rest go on."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from consumer.tasks import square
from tests.support.gods import God, addr_env, god_stats
from tests.support.helpers import Proc, read_results, wait_for_results, wait_until, write_tasks

pytestmark = pytest.mark.timeout(90)


def test_a_task_that_kills_its_worker_is_dead_lettered_after_max_attempts(
    start_god: Callable[..., God], spawn: Callable[..., Proc], tmp_path: Path
) -> None:
    # Given tasks 10..19, where 13 ends the worker process running it
    g = start_god("--max-attempts", "3")
    env = addr_env(g)
    assert spawn("producer", "--from", str(write_tasks(tmp_path / "t.jsonl", list(range(10, 20)))),
                 env_extra=env).wait() == 0
    # When a consumer runs them
    c = spawn("consumer", "--task", "tests.support.tasks:exit_on_13", "--processes", "1", env_extra=env)
    # Then 13 is served three times, then recorded as a dead letter with the reason
    by_payload = {r["payload"]: r for r in wait_for_results(g.results, 10, timeout=60)}
    dead = by_payload[13]
    assert dead["ok"] is False and dead["attempts"] == 3
    assert dead["error"].startswith("dead letter: its worker on ") and "3 attempts" in dead["error"]
    assert all(by_payload[n]["ok"] and by_payload[n]["value"] == square(n) for n in by_payload if n != 13)
    g.proc.wait_for(r"task \S+ failed \(13\): dead letter")  # god shows it too
    # and the consumer replaced each dead worker at once, saying so
    c.wait_for(r"worker 0 \(pid \d+\) died with exit code 3 while running task \S+; started a new one", stream="err")
    assert "starting a new one in" not in c.text()


def test_poison_tasks_among_good_ones_do_not_stall_a_consumer(
    god: God, spawn: Callable[..., Proc], tmp_path: Path
) -> None:
    # Given 100 tasks, of which 0, 10, ..., 90 end the worker process running them
    env = addr_env(god)
    assert spawn("producer", "--from", str(write_tasks(tmp_path / "t.jsonl", list(range(100)))),
                 env_extra=env).wait() == 0
    # When one consumer of 2 processes runs them
    spawn("consumer", "--task", "tests.support.tasks:exit_on_tens", "--processes", "2", env_extra=env)
    # Then every task has its result soon: 90 squares and 10 dead letters (each worker that died
    # running a task was replaced at once; before, each quick death doubled a pause up to 30 s)
    records = wait_for_results(god.results, 100, timeout=60)
    dead = sorted(r["payload"] for r in records if not r["ok"])
    assert dead == list(range(0, 100, 10))
    assert all(r["value"] == square(r["payload"]) for r in records if r["ok"])


def test_workers_that_die_before_their_first_task_are_replaced_after_a_growing_pause(
    god: God, spawn: Callable[..., Proc]
) -> None:
    # Given a task module that imports in the consumer but ends every worker process that imports it
    c = spawn("consumer", "--task", "tests.support.crash_in_worker:square", "--processes", "1", env_extra=addr_env(god))
    # Then the consumer replaces them after a pause that grows, and says why
    c.wait_for(r"worker 0 \(pid \d+\) died with exit code 3; starting a new one in 0\.5s "
               r"\(2 in a row died before their first task\)", stream="err")
    c.wait_for(r"starting a new one in 1\.0s \(3 in a row died before their first task\)", stream="err")


def test_a_task_over_task_timeout_fails_and_the_others_go_on(
    god: God, spawn: Callable[..., Proc], tmp_path: Path
) -> None:
    # Given tasks 11..15, where 13 hangs
    env = addr_env(god)
    assert spawn("producer", "--from", str(write_tasks(tmp_path / "t.jsonl", list(range(11, 16)))),
                 env_extra=env).wait() == 0
    # When one worker runs them with a one-second limit per task
    c = spawn("consumer", "--task", "tests.support.tasks:hang_on_13", "--processes", "1", "--task-timeout", "1",
              "--burst", env_extra=env)
    assert c.wait(timeout=60) == 0, c.text()
    # Then 13 failed saying it timed out, once, and the others succeeded
    by_payload = {r["payload"]: r for r in wait_for_results(god.results, 5)}
    stuck = by_payload[13]
    assert stuck["ok"] is False and stuck["attempts"] == 1
    assert stuck["error"].startswith("TimeoutError: timed out after 1s (--task-timeout)")
    assert all(by_payload[n]["ok"] and by_payload[n]["value"] == square(n) for n in (11, 12, 14, 15))
    assert "ran over --task-timeout 1s; stopping it" in c.text()
    assert "was stopped with exit code -9 while running task" in c.text()


def test_a_task_that_holds_the_gil_longer_than_a_lease_keeps_it(
    start_god: Callable[..., God], spawn: Callable[..., Proc], tmp_path: Path, env: dict[str, str]
) -> None:
    # Given a god that serves a task again after 1 s without a heartbeat, and a task that holds
    # its worker's GIL in C code for 3 s (the worker itself can say nothing meanwhile)
    g = start_god("--lease-timeout", "1")
    where = addr_env(g)
    assert spawn("producer", "--from", str(write_tasks(tmp_path / "t.jsonl", [{"n": 4, "s": 3}])),
                 env_extra=where).wait() == 0
    # When one worker runs it
    c = spawn("consumer", "--task", "tests.support.tasks:hold_gil", "--processes", "1", "--burst", env_extra=where)
    assert c.wait(timeout=60) == 0, c.text()
    # Then its consumer's heartbeats kept the lease: one result, at the first attempt, never served again
    (r,) = wait_for_results(g.results, 1)
    assert (r["ok"], r["value"], r["attempts"]) == (True, square(4), 1)
    s = god_stats(g, env)
    assert (s["redelivered"], s["duplicates"], [c["lost"] for c in s["consumers"]]) == (0, 0, [])


def test_a_poison_task_kept_from_its_consumer_does_not_wait_behind_another_consumers_busy_queue(
    god: God, spawn: Callable[..., Proc], env: dict[str, str], tmp_path: Path
) -> None:
    # Given consumer A serving pages first (busy with them for far longer than this test waits),
    # then images; and consumer B serving images alone
    addr = addr_env(god)
    pages = write_tasks(tmp_path / "pages.jsonl", [{"n": i, "s": 0.1} for i in range(4000)])
    assert spawn("producer", "--queue", "pages", "--task", "tests.support.tasks:slow", "--from", str(pages),
                 env_extra=addr).wait() == 0
    spawn("consumer", "--queues", "pages,images,mail", "--processes", "1", "--concurrency", "20", env_extra=addr)
    b = spawn("consumer", "--queues", "images,mail", "--processes", "1", env_extra=addr)
    b.wait_for("running", stream="err")
    # When four tasks on images kill B's workers
    poison = write_tasks(tmp_path / "images.jsonl", [13] * 4)
    assert spawn("producer", "--queue", "images", "--task", "tests.support.tasks:exit_on_13", "--from", str(poison),
                 env_extra=addr).wait() == 0

    # Then each is kept from B for a lease period at most, not until A is done with pages:
    # all four reach their dead letters while pages is still busy
    def dead_letters() -> list[dict[str, object]] | None:
        dead = [r for r in read_results(god.results) if r["queue"] == "images"]
        return dead if len(dead) == 4 else None

    dead = wait_until(dead_letters, 30, "the four poison tasks' dead letters")
    assert all(r["ok"] is False and r["attempts"] == 3 for r in dead), dead
    assert god_stats(god, env)["queues"]["pages"]["waiting"] > 0  # A never got to images
