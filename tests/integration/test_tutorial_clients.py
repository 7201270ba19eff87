"""Clients written for the tutorial work unchanged against god, alone or mixed with ours."""

from __future__ import annotations

import re
from collections.abc import Callable

import pytest

from consumer.tasks import square
from tests.support.gods import God, addr_env
from tests.support.helpers import Proc, puts_and_results, wait_for_results

pytestmark = pytest.mark.timeout(60)


@pytest.mark.parametrize("names, style", [
    (("get_task_queue", "get_result_queue"), "worker"), (("pq", "cq"), "worker"),
    (("getTaskQueue", "getResultQueue"), "seed-worker"),  # get(True, timeout), as another tutorial writes it
])
def test_tutorial_master_and_worker_against_god(god: God, spawn: Callable[..., Proc], names: tuple[str, str],
                                                style: str) -> None:
    env = addr_env(god)
    master = spawn("tests.support.tutorial_clients", "master", *names, env_extra=env)
    master.wait_for("Try get results")
    worker = spawn("tests.support.tutorial_clients", style, *names, env_extra=env)
    assert master.wait() == 0, master.text()
    assert worker.wait() == 0, worker.text()
    puts, results = puts_and_results(master)
    assert len(puts) == 10 and sorted(results) == sorted(square(n) for n in puts)
    assert "worker exit. empty=True" in worker.out
    records = wait_for_results(god.results, 10, distinct=False)
    assert sorted(r["value"] for r in records) == sorted(results)  # god prints and records them too
    god.proc.wait_for(re.escape(results[0]))


def test_tutorial_master_with_our_consumer(god: God, spawn: Callable[..., Proc]) -> None:
    env = addr_env(god)
    spawn("consumer", "--processes", "1", env_extra=env)
    master = spawn("tests.support.tutorial_clients", "master", "pq", "cq", env_extra=env)
    assert master.wait() == 0, master.text()
    puts, results = puts_and_results(master)
    assert len(puts) == 10 and sorted(results) == sorted(square(n) for n in puts)


def test_our_producer_that_waits_with_a_tutorial_worker_finishes(god: God, spawn: Callable[..., Proc]) -> None:
    # Given our producer, waiting for the results of its 10 tasks
    env = addr_env(god)
    producer = spawn("producer", "--rounds", "1", "--per-round", "10", "--wait", env_extra=env)
    producer.wait_for("god accepted all 10 tasks", stream="err")
    # When a worker written the tutorial's way does them
    worker = spawn("tests.support.tutorial_clients", "worker", "get_task_queue", "get_result_queue", env_extra=env)
    assert worker.wait() == 0, worker.text()
    ran = [int(m.group(1)) for line in worker.out if (m := re.match(r"run task (\d+) \*", line))]
    assert len(ran) == 10
    # Then the producer gets each task's result and exits 0, and god records each one under its task
    assert producer.wait(20) == 0, producer.text()
    assert sorted(line for line in producer.out if "=" in line) == sorted(square(n) for n in ran)
    records = wait_for_results(god.results, 10)
    assert all(r["value"] == square(r["payload"]) for r in records)
