"""Clients written for the tutorial work unchanged against god, alone or mixed with ours."""

from __future__ import annotations

import re
from collections.abc import Callable

import pytest

from consumer.tasks import square
from tests.conftest import God, addr_env
from tests.helpers import Proc, wait_for_results

pytestmark = pytest.mark.timeout(60)


def _puts_and_results(master: Proc) -> tuple[list[int], list[str]]:
    puts = [int(m.group(1)) for line in master.out if (m := re.match(r"Put task (\d+)", line))]
    results = [line.removeprefix("Result: ") for line in master.out if line.startswith("Result: ")]
    return puts, results


@pytest.mark.parametrize("names", [("get_task_queue", "get_result_queue"), ("pq", "cq")])
def test_tutorial_master_and_worker_against_god(god: God, spawn: Callable[..., Proc], names: tuple[str, str]) -> None:
    env = addr_env(god)
    master = spawn("tests.tutorial_clients", "master", *names, env_extra=env)
    master.wait_for("Try get results")
    worker = spawn("tests.tutorial_clients", "worker", *names, env_extra=env)
    assert master.wait() == 0, master.text()
    assert worker.wait() == 0, worker.text()
    puts, results = _puts_and_results(master)
    assert len(puts) == 10 and sorted(results) == sorted(square(n) for n in puts)
    assert "worker exit. empty=True" in worker.out
    records = wait_for_results(god.results, 10, distinct=False)
    assert sorted(r["value"] for r in records) == sorted(results)  # god prints and records them too
    god.proc.wait_for(re.escape(results[0]))


def test_tutorial_master_with_our_consumer(god: God, spawn: Callable[..., Proc]) -> None:
    env = addr_env(god)
    spawn("consumer", "--processes", "1", env_extra=env)
    master = spawn("tests.tutorial_clients", "master", "pq", "cq", env_extra=env)
    assert master.wait() == 0, master.text()
    puts, results = _puts_and_results(master)
    assert len(puts) == 10 and sorted(results) == sorted(square(n) for n in puts)


def test_our_producer_with_a_tutorial_worker(god: God, spawn: Callable[..., Proc]) -> None:
    env = addr_env(god)
    assert spawn("producer", "--rounds", "1", "--per-round", "10", env_extra=env).wait() == 0
    worker = spawn("tests.tutorial_clients", "worker", "get_task_queue", "get_result_queue", env_extra=env)
    assert worker.wait() == 0, worker.text()
    ran = [line for line in worker.out if line.startswith("run task")]
    assert len(ran) == 10
    records = wait_for_results(god.results, 10, distinct=False)
    assert len(records) == 10 and all(re.fullmatch(r"(\d+) \* \1 = \d+", r["value"]) for r in records)
