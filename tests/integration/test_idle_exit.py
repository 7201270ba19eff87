"""consumer --idle-exit: a consumer started for a backlog exits 0 once no task ran for a while,
and never while one runs (issue 38's first step: consumers that follow the backlog)."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.support.gods import God, addr_env
from tests.support.helpers import Proc, wait_for_results, write_tasks

pytestmark = pytest.mark.timeout(60)


def test_an_idle_consumer_exits_0_after_its_tasks_and_not_while_one_runs(
    god: God, spawn: Callable[..., Proc], tmp_path: Path
) -> None:
    tasks = write_tasks(tmp_path / "t.jsonl", [{"n": 3, "s": 2.5}, {"n": 4, "s": 0.0}])  # one longer than the idle time
    assert spawn("producer", "--from", str(tasks), env_extra=addr_env(god)).wait() == 0
    t0 = time.monotonic()
    c = spawn("consumer", "--task", "tests.support.tasks:slow", "--processes", "1", "--idle-exit", "1",
              env_extra=addr_env(god))
    assert c.wait(30) == 0, c.text()
    took = time.monotonic() - t0
    results = wait_for_results(god.results, 2, 10)
    assert sorted(r["value"] for r in results) == ["3 * 3 = 9", "4 * 4 = 16"] and all(r["ok"] for r in results)
    assert took >= 2.5 and "no task for 1s (--idle-exit)" in c.text()
