"""Workers replaced after so many tasks, or once their memory passed a bound: no task lost or
run twice on the way."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.support.gods import God, addr_env
from tests.support.helpers import Proc, wait_for_results, write_tasks

pytestmark = pytest.mark.timeout(90)


@pytest.mark.parametrize("concurrency", ["1", "4"])
def test_a_worker_is_replaced_after_max_tasks_per_worker(
    god: God, spawn: Callable[..., Proc], tmp_path: Path, concurrency: str
) -> None:
    env = addr_env(god)
    assert spawn("producer", "--from", str(write_tasks(tmp_path / "t.jsonl", list(range(23)))), env_extra=env).wait() == 0
    c = spawn("consumer", "--task", "tests.support.tasks:pid", "--processes", "1", "--concurrency", concurrency,
              "--max-tasks-per-worker", "5", env_extra=env)
    results = wait_for_results(god.results, 23)
    assert sorted(r["payload"] for r in results) == list(range(23))  # each once
    assert all(r["ok"] and r["attempts"] == 1 for r in results)  # handed back unstarted, never lost
    per_worker = Counter(r["value"] for r in results)
    assert sorted(per_worker.values()) == [3, 5, 5, 5, 5], per_worker  # five processes, each 5 tasks at most
    c.wait_for(r"worker \S+ \(pid \d+\) ran 5 tasks \(--max-tasks-per-worker 5\): replacing it", stream="err")


def test_a_worker_is_replaced_once_its_memory_passed_max_worker_memory(
    god: God, spawn: Callable[..., Proc], tmp_path: Path
) -> None:
    env = addr_env(god)
    assert spawn("producer", "--from", str(write_tasks(tmp_path / "t.jsonl", list(range(12)))), env_extra=env).wait() == 0
    c = spawn("consumer", "--task", "tests.support.tasks:leak", "--processes", "1", "--prefetch", "1",
              "--max-worker-memory", "150", env_extra=env)
    results = wait_for_results(god.results, 12)
    assert sorted(r["payload"] for r in results) == list(range(12))
    per_worker = Counter(r["value"] for r in results)
    assert len(per_worker) >= 2 and max(per_worker.values()) <= 7, per_worker  # 20 MB a task: ~5 over a ~50 MB start
    c.wait_for(r"worker \S+ \(pid \d+\) uses \d+ MB \(--max-worker-memory 150\): replacing it", stream="err")
