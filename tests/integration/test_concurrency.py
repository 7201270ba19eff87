"""consumer --concurrency N: threads for plain functions, coroutines for async def ones."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from consumer.tasks import square
from tests.support.gods import God, addr_env
from tests.support.helpers import Proc, wait_for_results, write_tasks

pytestmark = pytest.mark.timeout(90)


def most_at_once(spans: list[list[float]]) -> int:
    """The most intervals that overlap at one moment."""
    events = sorted([(t0, 1) for t0, _ in spans] + [(t1, -1) for _, t1 in spans])
    now = top = 0
    for _, step in events:
        now += step
        top = max(top, now)
    return top


@pytest.mark.parametrize("task", ["tests.support.tasks:span", "tests.support.tasks:await_span"])
def test_a_worker_runs_many_tasks_at_once_threads_and_coroutines_alike(
    god: God, spawn: Callable[..., Proc], tmp_path: Path, task: str
) -> None:
    # Given 100 tasks that each wait 0.2 s
    env = addr_env(god)
    assert spawn("producer", "--from", str(write_tasks(tmp_path / "t.jsonl", [{"s": 0.2}] * 100)),
                 env_extra=env).wait() == 0
    # When one worker process runs up to 20 at once
    c = spawn("consumer", "--task", task, "--processes", "1", "--concurrency", "20", "--burst", env_extra=env)
    assert c.wait(timeout=60) == 0, c.text()
    # Then all are done, once each, and they ran side by side (the times the tasks saw overlap)
    records = wait_for_results(god.results, 100)
    assert len(records) == 100 and all(r["ok"] and r["attempts"] == 1 for r in records)
    assert most_at_once([r["value"] for r in records]) >= 5


@pytest.mark.parametrize(("task", "concurrency", "says"), [
    ("tests.support.tasks:hang_on_13", 4, "its thread cannot be stopped, so its worker is replaced once the others are done"),
    ("tests.support.tasks:await_hang_on_13", 4, "it was cancelled"),
    ("tests.support.tasks:await_hang_on_13", 1, "it was cancelled"),  # async def, one task at a time
    ("tests.support.tasks:block_on_13", 4,
     "its coroutine was not cancelled in time (it blocks its event loop), so its worker is replaced"),
])
def test_a_task_over_task_timeout_fails_with_concurrency_and_the_others_go_on(
    god: God, spawn: Callable[..., Proc], tmp_path: Path, task: str, concurrency: int, says: str
) -> None:
    # Given tasks 11..15, where 13 hangs: a thread, a coroutine that awaits, one that never awaits
    env = addr_env(god)
    assert spawn("producer", "--from", str(write_tasks(tmp_path / "t.jsonl", list(range(11, 16)))),
                 env_extra=env).wait() == 0
    # When one worker runs them, some at a time, with a one-second limit per task
    c = spawn("consumer", "--task", task, "--processes", "1", "--concurrency", str(concurrency), "--task-timeout", "1",
              "--burst", env_extra=env)
    assert c.wait(timeout=60) == 0, c.text()
    # Then 13 failed, once, saying it timed out and what became of it; the others succeeded
    by_payload = {r["payload"]: r for r in wait_for_results(god.results, 5)}
    stuck = by_payload.pop(13)
    assert stuck["ok"] is False and "timed out after 1s (--task-timeout)" in stuck["error"], stuck
    assert says in stuck["error"]
    assert all(r["ok"] and r["value"] == square(n) for n, r in by_payload.items())


def test_a_task_that_kills_its_worker_among_others_running_is_dead_lettered_alone(
    start_god: Callable[..., God], spawn: Callable[..., Proc], tmp_path: Path
) -> None:
    # Given tasks 10..29, where 13 ends the worker process running it, and workers of 8 places
    g = start_god("--max-attempts", "3")
    env = addr_env(g)
    assert spawn("producer", "--from", str(write_tasks(tmp_path / "t.jsonl", list(range(10, 30)))),
                 env_extra=env).wait() == 0
    spawn("consumer", "--task", "tests.support.tasks:exit_on_13", "--processes", "1", "--concurrency", "8", env_extra=env)
    # Then 13 alone is a dead letter: the tasks that ran beside it when it struck ran alone next,
    # and only 13 killed a worker again
    by_payload = {r["payload"]: r for r in wait_for_results(g.results, 20, timeout=60)}
    dead = by_payload.pop(13)
    assert dead["ok"] is False and dead["attempts"] == 3 and "dead letter" in dead["error"]
    assert all(r["ok"] and r["value"] == square(n) for n, r in by_payload.items())
