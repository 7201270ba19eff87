"""Tasks that wait for other tasks, against a real god and consumers: futures as arguments of
calls, resolved at god (god/rules/graph.py), across the exit of the program that submitted them,
god's kill -9, and consumers killed mid-graph.

Functions defined here travel by value (the tests are not an installed package).
"""

from __future__ import annotations

import concurrent.futures as cf
import os
import signal
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest

from producer import Executor, connect
from shared import exitcodes
from tests.support.gods import God, addr_env
from tests.support.helpers import Proc, read_results, wait_for_results, wait_until, write_tasks

pytestmark = pytest.mark.timeout(90)

IDLE = "idle"  # a queue no consumer serves: its tasks wait


def inc(x: int) -> int:
    return x + 1


def slow_inc(x: int) -> int:
    time.sleep(0.02)
    return x + 1


def total(xs: list[int], extra: dict[str, int] | None = None) -> int:
    return sum(xs) + sum((extra or {}).values())


def blob(n: int) -> bytes:
    return os.urandom(n)


def size_and_head(b: bytes, again: bytes) -> tuple[int, bytes]:
    assert b == again
    return len(b), b[:4]


def div(x: int, y: int) -> float:
    return x / y


def flaky(marker: str) -> str:
    if not os.path.exists(marker):
        open(marker, "w").close()
        raise OSError("the first try fails")
    return "second try"


def test_fan_out_and_fan_in_of_futures_as_arguments(executor: Executor, god: God) -> None:
    pages = [executor.submit(inc, i) for i in range(20)]
    words = [executor.submit(inc, p) for p in pages]  # each waits for its page
    overall = executor.submit(total, words, extra={"a": pages[0], "b": 100})  # a list of futures, and a dict
    assert overall.result(timeout=30) == sum(i + 2 for i in range(20)) + 1 + 100
    assert [w.result() for w in words] == [i + 2 for i in range(20)]
    line = wait_until(lambda: next((r for r in read_results(god.results) if r["id"] == overall.task_id), None), 20)
    assert line["payload"]["args"] == [[i + 2 for i in range(20)]] and line["payload"]["kwargs"] == {"extra": {"a": 1, "b": 100}}


def test_a_chain_and_a_diamond(executor: Executor) -> None:
    f = executor.submit(inc, 0)
    for _ in range(49):
        f = executor.submit(inc, f)
    assert f.result(timeout=30) == 50
    top = executor.submit(inc, 1)
    left, right = executor.submit(inc, top), executor.submit(div, top, 2)
    assert executor.submit(total, [left, right]).result(timeout=30) == 3 + 1.0
    # a future that has its result is passed as its value
    assert executor.submit(inc, top).result(timeout=30) == 3


def test_a_large_value_is_passed_along(executor: Executor) -> None:
    big = executor.submit(blob, 2**20)  # 1 MiB
    n, head = executor.submit(size_and_head, big, again=big).result(timeout=30)
    assert n == 2**20 and head == big.result()[:4]


def test_a_failure_fails_what_waits_for_it_transitively(executor: Executor, god: God) -> None:
    bad = executor.submit(div, 1, 0)
    second = executor.submit(inc, bad)
    third = executor.submit(inc, second)
    with pytest.raises(ZeroDivisionError):  # the exception itself, as with the call that raised it
        third.result(timeout=30)
    assert isinstance(second.exception(), ZeroDivisionError)
    by_id = {r["id"]: r for r in wait_for_results(god.results, 3)}
    assert by_id[second.task_id]["error"] == f"dependency {bad.task_id} failed: ZeroDivisionError: division by zero"
    assert by_id[third.task_id]["error"] == (f"dependency {second.task_id} failed: dependency {bad.task_id} "
                                             "failed: ZeroDivisionError: division by zero")
    # a call that waits for a future that failed before it was made fails at once
    late = executor.submit(inc, bad)
    assert late.done() and isinstance(late.exception(), ZeroDivisionError) and late.task_id is None


def test_a_retried_dependency_that_succeeds_on_its_second_try_fails_nothing(
    executor: Executor, tmp_path: Path
) -> None:
    first = executor.options(retries=1, retry_backoff=0.1).submit(flaky, str(tmp_path / "tried"))
    assert executor.submit(str.upper, first).result(timeout=30) == "SECOND TRY"


def test_cancelling_a_root_cancels_what_waits_for_it(executor: Executor) -> None:
    root = executor.options(queue=IDLE).submit(inc, 1)
    child = executor.submit(inc, root)
    grandchild = executor.submit(total, [child, 5])
    wait_until(lambda: executor.task(child.task_id)["state"] == "blocked", 20, "the child to be blocked")
    assert executor.task(child.task_id)["on"] == executor.task(child.task_id)["after"] == [root.task_id]
    assert root.cancel()
    wait_until(lambda: grandchild.done(), 20, "the cancel to reach the grandchild")
    assert child.cancelled() and grandchild.cancelled()
    with pytest.raises(cf.CancelledError):
        grandchild.result()


def test_a_future_of_another_executor_is_refused_with_one_line(executor: Executor, god: God) -> None:
    with Executor(god.address, give_up_after=10) as other:
        f = other.submit(inc, 1)
        with pytest.raises(ValueError, match=r"the future of task \S+ is another executor's: pass its result\(\)"):
            executor.submit(inc, f)
        f.result(timeout=30)


SUBMIT_AND_DIE = """
import os, signal, time
from producer import Executor

def step(x):
    time.sleep(0.01)
    return x + 1

def add(xs):
    return sum(xs)

ex = Executor()
f = ex.submit(step, 0)
for _ in range(19):
    f = ex.submit(step, f)
fans = [ex.submit(step, f) for _ in range(10)]
last = ex.submit(add, fans)
ex.shutdown(wait=False)  # god holds every task
print(last.task_id, flush=True)
os.kill(os.getpid(), signal.SIGKILL)
"""


def test_the_graph_completes_after_its_program_is_killed(god: God, spawn: Callable[..., Proc], tmp_path: Path) -> None:
    # Given a program that submits a chain and a fan-in, and is killed right after
    (tmp_path / "die.py").write_text(SUBMIT_AND_DIE)
    p = spawn(str(tmp_path / "die.py"), env_extra=addr_env(god), cwd=tmp_path)
    assert p.wait(30) == -signal.SIGKILL
    (last,) = p.out
    # When a consumer comes only then, Then the graph runs to its end
    spawn("consumer", "--processes", "1", "--concurrency", "4", env_extra=addr_env(god))
    results = {r["id"]: r for r in wait_for_results(god.results, 31, timeout=60)}
    assert results[last]["value"] == 10 * 21 and all(r["ok"] for r in results.values())


def test_the_graph_goes_on_across_god_killed_and_restarted(
    start_god: Callable[..., God], spawn: Callable[..., Proc], tmp_path: Path, env: dict[str, str],
    monkeypatch: pytest.MonkeyPatch
) -> None:
    journal = ("--lease-timeout", "1", "--journal", str(tmp_path / "journal.sqlite3"))
    god = start_god(*journal)
    spawn("consumer", "--processes", "2", "--concurrency", "4", env_extra=addr_env(god))
    monkeypatch.setenv("GOD_AUTHKEY", env["GOD_AUTHKEY"])
    with Executor(god.address, give_up_after=30) as ex:
        chains = []
        for c in range(4):  # four chains of 40, then one task that waits for their ends
            f = ex.submit(slow_inc, c * 1000)
            for _ in range(39):
                f = ex.submit(slow_inc, f)
            chains.append(f)
        end = ex.submit(total, chains)
        wait_for_results(god.results, 40)
        god.proc.signal(signal.SIGKILL)
        god.proc.wait()
        start_god(*journal, port=int(god.address.rsplit(":", 1)[1]))
        assert end.result(timeout=60) == sum(c * 1000 + 40 for c in range(4))
    lines_per_id = Counter(r["id"] for r in wait_for_results(god.results, 161))
    assert len(lines_per_id) == 161 and max(lines_per_id.values()) == 1


def test_the_graph_goes_on_when_a_consumer_is_killed_mid_graph(
    start_god: Callable[..., God], spawn: Callable[..., Proc], env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    god = start_god("--lease-timeout", "1")
    first = spawn("consumer", "--processes", "1", "--concurrency", "4", env_extra=addr_env(god))
    monkeypatch.setenv("GOD_AUTHKEY", env["GOD_AUTHKEY"])
    with Executor(god.address, give_up_after=30) as ex:
        f = ex.submit(slow_inc, 0)
        for _ in range(79):
            f = ex.submit(slow_inc, f)
        wait_for_results(god.results, 10)
        first.popen.kill()  # SIGKILL: the consumer and its worker are gone mid-chain
        first.popen.wait()
        spawn("consumer", "--processes", "1", env_extra=addr_env(god))
        assert f.result(timeout=60) == 80
    lines_per_id = Counter(r["id"] for r in wait_for_results(god.results, 80))
    assert len(lines_per_id) == 80 and max(lines_per_id.values()) == 1


def test_blocked_tasks_are_counted_per_queue(executor: Executor, god: God) -> None:
    root = executor.options(queue=IDLE).submit(inc, 1)
    for _ in range(3):
        executor.submit(inc, root)
    executor.options(queue=IDLE).submit(inc, root)
    with connect(god.address, give_up_after=10) as other:
        stats = wait_until(lambda: (s := other.client.stats())["blocked"] == 4 and s, 20)
    assert stats["queues"]["default"]["blocked"] == 3 and stats["queues"][IDLE]["blocked"] == 1
    assert stats["queues"][IDLE]["waiting"] == 1


def test_producer_after_puts_tasks_that_wait_for_those_ids(
    god: God, spawn: Callable[..., Proc], env: dict[str, str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # Given a task on a queue no consumer serves yet
    monkeypatch.setenv("GOD_AUTHKEY", env["GOD_AUTHKEY"])
    with connect(god.address, give_up_after=10) as first:
        tid = first.put(7, queue="later")
        # When the command line puts two tasks after it
        src = write_tasks(tmp_path / "t.jsonl", [1, 2])
        p = spawn("producer", "--from", str(src), "--after", tid, env_extra=addr_env(god))
        assert p.wait(30) == 0, p.text()
        # Then they wait (blocked), and run once it has its result, with their payloads as put
        assert wait_until(lambda: first.client.stats()["blocked"] == 2, 20)
        spawn("consumer", "--queues", "later,default", "--processes", "1", env_extra=addr_env(god))
        results = wait_for_results(god.results, 3)
    assert [r["payload"] for r in results] == [7, 1, 2] and all(r["ok"] for r in results)
    # And an id god never had, or one that is not an id, is one line and a failure, not a task
    p = spawn("producer", "--from", str(src), "--after", "nope:1:2/9", env_extra=addr_env(god))
    assert p.wait(30) == exitcodes.CONFIG and "god knows no task nope:1:2/9" in p.text(), p.text()
    p = spawn("producer", "--from", str(src), "--after", "7", env_extra=addr_env(god))
    assert p.wait(30) == exitcodes.CONFIG and "after: '7' is not a task id" in p.text(), p.text()
    assert "Traceback" not in p.text() and len(read_results(god.results)) == 3
