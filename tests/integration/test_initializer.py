"""Workers set up once: Executor(initializer=fn, initargs=...) runs fn once in each worker process
before that executor's first call there, and again in a worker that replaces it; one that
raises fails that executor's calls in that worker, once per worker, never a loop."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from producer import Executor
from shared.initializer import InitializerFailed
from tests.support.gods import God, addr_env
from tests.support.helpers import Proc, wait_for_results, write_tasks
from tests.support.tasks import broken_model, load_model, model_of, model_of_async

pytestmark = pytest.mark.timeout(90)


def test_an_initializer_runs_once_a_worker_and_again_in_its_replacement(
    god: God, spawn: Callable[..., Proc], env: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a consumer whose one worker is replaced after every 10 tasks
    spawn("consumer", "--processes", "1", "--concurrency", "4", "--max-tasks-per-worker", "10",
          env_extra=addr_env(god))
    monkeypatch.setenv("GOD_AUTHKEY", env["GOD_AUTHKEY"])
    log = tmp_path / "inits"
    with Executor(god.address, give_up_after=10, initializer=load_model, initargs=("bert", str(log))) as ex:
        # When it runs 30 calls of that executor, plain and async
        got = list(ex.map(model_of, range(15))) + list(ex.map(model_of_async, range(15)))
    # Then every call saw the model, each worker loaded it once, before its first call
    assert {name for _, name in got} == {"bert"}
    pids = [int(line) for line in log.read_text().split()]
    assert len(pids) == len(set(pids)) == len({pid for pid, _ in got}) >= 3


def test_an_initializer_that_raises_fails_its_calls_in_that_worker_once_and_clearly(
    god: God, spawn: Callable[..., Proc], env: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spawn("consumer", "--processes", "1", env_extra=addr_env(god))
    monkeypatch.setenv("GOD_AUTHKEY", env["GOD_AUTHKEY"])
    log = tmp_path / "inits"
    with Executor(god.address, give_up_after=10, initializer=broken_model, initargs=(str(log),)) as ex:
        futures = [ex.submit(model_of, i) for i in range(5)]
        for f in futures:
            with pytest.raises(InitializerFailed, match=r"the executor's initializer tests\.support\.tasks:broken_model "
                                                        r"raised in this worker \(pid \d+\), so nothing it sets up "
                                                        r"for runs here: ValueError: no model here"):
                f.result(timeout=30)
    assert len(log.read_text().split()) == 1  # run once, not once a call
    # and another executor on the same worker, without it, is not touched
    with Executor(god.address, give_up_after=10) as ex:
        assert ex.submit(model_of, 1).result(timeout=30)[1] is None


def test_an_initializer_that_is_not_a_function_is_refused_at_once(god: God, env: dict[str, str],
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GOD_AUTHKEY", env["GOD_AUTHKEY"])
    with pytest.raises(Exception, match=r"Executor\(initializer='load'\): not a function"):
        Executor(god.address, initializer="load")


def test_consumer_init_sets_up_each_worker_for_queue_work(
    god: God, spawn: Callable[..., Proc], tmp_path: Path
) -> None:
    e = addr_env(god)
    spawn("consumer", "--processes", "2", "--task", "tests.support.tasks:with_model", "--init",
          "tests.support.tasks:setup_worker", env_extra=e)
    assert spawn("producer", "--from", str(write_tasks(tmp_path / "t.jsonl", [1, 2, 3])), env_extra=e).wait(30) == 0
    assert sorted(r["value"] for r in wait_for_results(god.results, 3)) == [
        "1 with from --init", "2 with from --init", "3 with from --init"]


def test_a_consumer_init_that_raises_fails_its_tasks_clearly_and_the_consumer_goes_on(
    god: God, spawn: Callable[..., Proc], tmp_path: Path
) -> None:
    e = addr_env(god)
    consumer = spawn("consumer", "--processes", "1", "--task", "tests.support.tasks:with_model", "--init",
                     "tests.support.tasks:broken_setup", env_extra=e)
    assert spawn("producer", "--from", str(write_tasks(tmp_path / "t.jsonl", [1, 2])), env_extra=e).wait(30) == 0
    results = wait_for_results(god.results, 2)
    assert all(not r["ok"] and "InitializerFailed: --init tests.support.tasks:broken_setup raised in this worker"
               in r["error"] and "OSError: the database is down" in r["error"] for r in results), results
    assert consumer.popen.poll() is None
