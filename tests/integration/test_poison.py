"""Tasks that kill their worker, and tasks that never finish: bounded, reported, and the rest go on."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from consumer.tasks import square
from tests.conftest import God, addr_env
from tests.helpers import Proc, wait_for_results, write_tasks

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
    c = spawn("consumer", "--task", "tests.tasks:exit_on_13", "--processes", "1", env_extra=env)
    # Then 13 is served three times, then recorded as a dead letter with the reason
    by_payload = {r["payload"]: r for r in wait_for_results(g.results, 10, timeout=60)}
    dead = by_payload[13]
    assert dead["ok"] is False and dead["attempts"] == 3
    assert dead["error"].startswith("dead letter: its worker on ") and "3 attempts" in dead["error"]
    assert all(by_payload[n]["ok"] and by_payload[n]["value"] == square(n) for n in by_payload if n != 13)
    g.proc.wait_for(r"task \S+ failed \(13\): dead letter")  # god shows it too
    # and the consumer replaced each dead worker, saying so, and backed off the quick deaths
    c.wait_for(r"worker 0 \(pid \d+\) died with exit code 3 while running task \S+; started a new one", stream="err")
    c.wait_for(r"starting a new one in \d+\.\ds \(2 died within 1s of starting\)", stream="err")


def test_a_task_over_task_timeout_fails_and_the_others_go_on(
    god: God, spawn: Callable[..., Proc], tmp_path: Path
) -> None:
    # Given tasks 11..15, where 13 hangs
    env = addr_env(god)
    assert spawn("producer", "--from", str(write_tasks(tmp_path / "t.jsonl", list(range(11, 16)))),
                 env_extra=env).wait() == 0
    # When one worker runs them with a one-second limit per task
    c = spawn("consumer", "--task", "tests.tasks:hang_on_13", "--processes", "1", "--task-timeout", "1",
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
