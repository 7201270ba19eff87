"""producer.Executor: concurrent.futures across hosts, against a real god and consumers.

The behaviours the standard library's own concurrent.futures tests check (submit, map, its
timeout and exceptions, as_completed, wait, cancel, shutdown, callbacks), and what crossing
hosts adds: functions that travel by value, exceptions that come back as themselves.
Functions defined here travel by value (the tests are not an installed package).
"""

from __future__ import annotations

import asyncio
import concurrent.futures as cf
import gc
import hashlib
import io
import json
import os
import pickle
import threading
import time
import weakref
from collections.abc import Callable
from pathlib import Path
from typing import Any

import cloudpickle
import pytest

from producer import Executor, RemoteError, TaskFuture, completed, connect, progress
from producer.mapping import FIRST_WINDOW
from shared.calls import RemoteTraceback
from tests.support.gods import God, addr_env
from tests.support.helpers import Proc, read_results, wait_for_results, wait_until
from tests.support.tasks import Held, held_size, make_held, megabyte

pytestmark = pytest.mark.timeout(60)

IDLE = "idle"  # a queue no consumer serves: its tasks wait


def mul(x: int, y: int) -> int:
    return x * y


def capture(*args: Any, **kwargs: Any) -> tuple[Any, ...]:
    return args, kwargs


def nap(seconds: float) -> float:
    time.sleep(seconds)
    return seconds


async def twice(x: int) -> int:
    await asyncio.sleep(0.01)
    return 2 * x


class Counted:
    """A callable that leaves a line in a file each time it is unpickled."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        with open(self.path, "a") as f:
            f.write("loaded\n")

    def __call__(self, x: int) -> int:
        return x + 1


class Unlucky(Exception):
    """Defined in the program, so it travels by value and comes back as itself."""


def unlucky(x: int) -> int:
    if x == 13:
        raise Unlucky(f"{x} is unlucky")
    return x


def test_submit_runs_the_call_with_its_positional_and_keyword_arguments(executor: Executor, god: God) -> None:
    f = executor.submit(mul, 2, y=8)
    assert issubclass(type(f), cf.Future) and type(f) is TaskFuture
    assert f.result(timeout=20) == 16
    # self= and fn= are arguments of the call, not of submit
    assert executor.submit(capture, 1, self=2, fn=3).result(timeout=20) == ((1,), {"self": 2, "fn": 3})
    # A builtin travels by name; so does a function of an installed module
    assert executor.submit(pow, 2, 10).result(timeout=20) == 1024
    line = wait_until(lambda: next((r for r in read_results(god.results) if r["id"] == f.task_id), None), 20)
    assert line["payload"] == {"fn": f"{__name__}:mul", "args": [2], "kwargs": {"y": 8}}
    assert line["task"] == f"{__name__}:mul()" and line["value"] == 16


def test_map_keeps_input_order_over_several_iterables_whatever_the_chunksize(executor: Executor) -> None:
    want = list(map(pow, range(50), range(5, 55)))
    assert list(executor.map(pow, range(50), range(5, 55))) == want
    assert list(executor.map(pow, range(50), range(5, 55), chunksize=7)) == want
    assert list(executor.map(len, [])) == []
    # a window smaller than the input: it is fed as results are taken
    assert list(executor.map(mul, range(100), range(100), buffersize=8)) == [i * i for i in range(100)]
    with pytest.raises(ValueError, match="chunksize"):
        executor.map(len, ["a"], chunksize=0)


def test_map_raises_at_the_failing_item_after_yielding_the_ones_before(executor: Executor) -> None:
    results = executor.map(divmod, [1, 1, 1, 1], [2, 3, 0, 5])
    assert next(results) == (0, 1)
    assert next(results) == (0, 1)
    with pytest.raises(ZeroDivisionError):
        next(results)


def test_an_exception_comes_back_as_itself_with_the_consumers_traceback(executor: Executor) -> None:
    f = executor.submit(unlucky, 13)
    with pytest.raises(Unlucky, match="13 is unlucky") as raised:
        f.result(timeout=20)
    cause = raised.value.__cause__
    assert isinstance(cause, RemoteTraceback)
    assert "Traceback (most recent call last)" in cause.tb and "in unlucky" in cause.tb
    assert cause.consumer and cause.consumer in str(cause)
    assert isinstance(f.exception(timeout=1), Unlucky)


def test_map_and_result_time_out(executor: Executor) -> None:
    results = executor.map(nap, [0, 0, 2.5], timeout=1.5)
    assert [next(results), next(results)] == [0, 0]
    t0 = time.monotonic()
    with pytest.raises(cf.TimeoutError):
        next(results)
    assert time.monotonic() - t0 < 2.4
    with pytest.raises(cf.TimeoutError):
        executor.submit(nap, 1.5).result(timeout=0.3)


def test_as_completed_and_each_wait_mode(executor: Executor) -> None:
    slow, quick = executor.submit(nap, 1.5), executor.submit(nap, 0)
    assert next(cf.as_completed([slow, quick], timeout=20)) is quick
    done, not_done = cf.wait([slow, quick], timeout=20, return_when=cf.FIRST_COMPLETED)
    assert quick in done and slow in not_done
    failing = executor.submit(divmod, 1, 0)
    done, not_done = cf.wait([slow, failing], timeout=20, return_when=cf.FIRST_EXCEPTION)
    assert done == {failing} and not_done == {slow}
    done, not_done = cf.wait([slow, quick, failing], timeout=20, return_when=cf.ALL_COMPLETED)
    assert done == {slow, quick, failing} and not not_done
    assert sorted(f.result() for f in cf.as_completed([slow, quick])) == [0, 1.5]


def test_done_callbacks_are_called_once_with_the_future(executor: Executor) -> None:
    called: list[Any] = []
    f = executor.submit(mul, 3, 4)
    f.add_done_callback(lambda fut: called.append(fut.result()))
    assert f.result(timeout=20) == 12
    wait_until(lambda: called, 5, "the callback")
    f.add_done_callback(lambda fut: called.append("late"))  # added after: called at once
    assert called == [12, "late"]


def test_cancel_of_a_waiting_task_cancels_it_at_god(executor: Executor, god: God) -> None:
    f = executor.options(queue=IDLE).submit(mul, 1, 2)
    assert f.cancel() is True
    assert f.cancelled() and f.done()
    with pytest.raises(cf.CancelledError):
        f.result(timeout=1)
    assert list(cf.as_completed([f], timeout=5)) == [f]
    line = wait_until(lambda: next((r for r in read_results(god.results) if r["id"] == f.task_id), None), 20)
    assert not line["ok"] and "cancelled by its program" in line["error"]
    assert executor.task(f.task_id)["state"] == "done"


def test_cancel_of_a_running_task_returns_false_and_it_runs_to_its_end(executor: Executor) -> None:
    f = executor.submit(nap, 1.0)
    wait_until(lambda: executor.task(f.task_id)["state"] == "running", 20, "the task to run")
    assert f.cancel() is False
    assert f.result(timeout=20) == 1.0 and not f.cancelled()


def test_shutdown_cancel_futures_cancels_what_waits_and_leaves_no_thread(
    god: God, spawn: Callable[..., Proc], env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    spawn("consumer", "--processes", "1", env_extra=addr_env(god))
    monkeypatch.setenv("GOD_AUTHKEY", env["GOD_AUTHKEY"])
    ex = Executor(god.address, give_up_after=10)
    running = ex.submit(nap, 1.0)
    waiting = [ex.options(queue=IDLE).submit(mul, i, i) for i in range(5)]
    wait_until(lambda: ex.task(running.task_id)["state"] == "running", 20, "the task to run")
    ex.shutdown(wait=True, cancel_futures=True)
    assert running.result(timeout=0) == 1.0
    assert all(f.cancelled() for f in waiting)
    assert not [t for t in threading.enumerate() if t.name.startswith(f"executor-results-{ex.name}")]
    with pytest.raises(RuntimeError, match="shutdown"):
        ex.submit(mul, 1, 1)


def test_options_and_ids_reach_god(executor: Executor) -> None:
    f = executor.options(priority=9, queue="default").submit(mul, 6, 7)
    assert f.result(timeout=20) == 42
    # (the results line is there once god's monitor wrote it, just after the future has its value)
    state = wait_until(lambda: (s := executor.task(f.task_id))["result"] and s, 20, "the results line")
    assert state["state"] == "done" and state["result"]["value"] == 42 and state["result"]["task"].endswith("mul()")


def test_coroutine_functions_are_awaited_on_the_consumer(
    god: God, spawn: Callable[..., Proc], executor: Executor
) -> None:
    assert executor.submit(twice, 21).result(timeout=20) == 42  # up to 8 at once there
    spawn("consumer", "--processes", "1", "--queues", "serial", env_extra=addr_env(god))  # one at a time
    assert list(executor.options(queue="serial").map(twice, range(5))) == [0, 2, 4, 6, 8]


def test_a_function_that_cannot_be_pickled_fails_submit_with_one_line(executor: Executor) -> None:
    lock = threading.Lock()
    with pytest.raises(TypeError, match=r"function .*<lambda> cannot be pickled") as raised:
        executor.submit(lambda: lock)
    assert "\n" not in str(raised.value)
    with pytest.raises(TypeError, match="the arguments of .*mul cannot be pickled"):
        executor.submit(mul, lock, 1)


def test_values_of_the_programs_own_classes_come_back_as_themselves(executor: Executor) -> None:
    assert executor.submit(Unlucky, "x").result(timeout=20).args == ("x",)
    assert type(executor.submit(Unlucky, "y").result(timeout=20)) is Unlucky


SCRIPT = '''
import functools
import mytasks
from producer import Executor, RemoteError

def double(x):
    return 2 * x

k = 5

def outer():
    def inner(x):
        return x + k
    return inner

with Executor() as ex:
    print("main", ex.submit(double, 21).result())
    print("lambda", ex.submit(lambda x: x * k, 3).result())
    print("closure", ex.submit(outer(), 1).result())
    print("partial", ex.submit(functools.partial(double, 4)).result())
    print("beside", ex.submit(mytasks.triple, 3).result())
    try:
        ex.submit(mytasks.uses_helper, 1).result()
    except RemoteError as e:
        print("missing", e)
    print("after", list(ex.map(double, range(3))))
'''


def test_functions_of_the_program_travel_by_value_to_a_consumer_elsewhere(
    god: God, spawn: Callable[..., Proc], tmp_path: Path
) -> None:
    # Given a program with a module beside it (and one the consumer lacks), and a consumer in
    # another directory, which cannot import either
    program = tmp_path / "program"
    program.mkdir()
    (program / "helper_mod.py").write_text("VALUE = 7\n")
    (program / "mytasks.py").write_text("import helper_mod\n\ndef triple(x):\n    return 3 * x\n\n"
                                       "def uses_helper(x):\n    return helper_mod.VALUE + x\n")
    (program / "main.py").write_text(SCRIPT)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    spawn("consumer", "--processes", "1", env_extra=addr_env(god), cwd=elsewhere)
    # When the program runs its calls
    p = spawn(str(program / "main.py"), env_extra=addr_env(god), cwd=program)
    assert p.wait(40) == 0, p.text()
    # Then each ran there, by value; the one that needs a missing module failed alone, saying so
    out = dict(line.split(" ", 1) for line in p.out)
    assert out["main"] == "42" and out["lambda"] == "15" and out["closure"] == "6" and out["partial"] == "8"
    assert out["beside"] == "9" and out["after"] == "[0, 2, 4]"
    assert "mytasks:uses_helper cannot be loaded on consumer" in out["missing"]
    assert "No module named 'helper_mod'" in out["missing"]
    lines = [r for r in read_results(god.results) if r["task"] == "__main__:double()"]
    assert {json.dumps(r["payload"]) for r in lines} >= {'{"fn": "__main__:double", "args": [21], "kwargs": {}}'}


def test_a_call_killed_with_its_consumer_is_run_again_and_resolves_once(
    god: God, spawn: Callable[..., Proc], env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    first = spawn("consumer", "--processes", "1", env_extra=addr_env(god))
    monkeypatch.setenv("GOD_AUTHKEY", env["GOD_AUTHKEY"])
    with Executor(god.address, give_up_after=10) as ex:
        f = ex.submit(nap, 1.5)
        wait_until(lambda: ex.task(f.task_id)["state"] == "running", 20, "the call to run")
        first.popen.kill()  # SIGKILL: the consumer and its worker are gone mid-call
        first.popen.wait()
        spawn("consumer", "--processes", "1", env_extra=addr_env(god))
        assert f.result(timeout=30) == 1.5
    lines = wait_until(lambda: [r for r in read_results(god.results) if r["id"] == f.task_id], 20)
    assert len(lines) == 1 and lines[0]["ok"] and lines[0]["attempts"] == 2


def unlucky_with(x: int, blob: bytes) -> int:
    return unlucky(x)


def test_a_calls_large_argument_is_in_brief_in_its_results_line_on_success_and_failure(
    start_god: Callable[..., God], spawn: Callable[..., Proc], env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given god keeping up to 1,000 characters of a payload in a results line
    g = start_god("--results-payload-max", "1000")
    spawn("consumer", "--processes", "1", env_extra=addr_env(g))
    monkeypatch.setenv("GOD_AUTHKEY", env["GOD_AUTHKEY"])
    big = bytes(range(256)) * 4096  # 1 MiB: it travels on its own (shared/values.py), and its line names it
    pickled = cloudpickle.dumps(big, protocol=pickle.HIGHEST_PROTOCOL)
    brief = {"value": f"sha256:{hashlib.sha256(pickled).hexdigest()}", "bytes": len(pickled)}
    # When calls get a 1 MiB argument, one of them failing
    with Executor(g.address, give_up_after=10) as ex:
        ok, failed = ex.submit(len, big), ex.submit(unlucky_with, 13, blob=big)
        assert ok.result(timeout=30) == len(big)
        with pytest.raises(Unlucky):
            failed.result(timeout=30)
    # Then each line shows the call with that argument in brief, the others whole
    lines = {r["id"]: r for r in wait_for_results(g.results, 2)}
    assert lines[ok.task_id]["payload"] == {"fn": "builtins:len", "args": [brief], "kwargs": {}}
    assert lines[failed.task_id]["payload"] == {"fn": f"{__name__}:unlucky_with", "args": [13], "kwargs": {"blob": brief}}
    assert not lines[failed.task_id]["ok"] and "13 is unlucky" in lines[failed.task_id]["error"]
    assert max(len(json.dumps(r)) for r in lines.values()) < 5000


def test_a_dead_letter_fails_its_future_with_the_reason(
    start_god: Callable[..., God], spawn: Callable[..., Proc], env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    g = start_god("--lease-timeout", "1", "--max-attempts", "1")
    spawn("consumer", "--processes", "1", env_extra=addr_env(g))
    monkeypatch.setenv("GOD_AUTHKEY", env["GOD_AUTHKEY"])
    with Executor(g.address, give_up_after=10) as ex:
        f = ex.submit(os._exit, 3)  # kills the worker: given up after one attempt
        with pytest.raises(RemoteError, match="dead letter"):
            f.result(timeout=30)


def test_a_function_by_value_is_unpickled_once_per_worker(executor: Executor, tmp_path: Path) -> None:
    loads = tmp_path / "loads.txt"
    fn = Counted(str(loads))
    assert list(executor.map(fn, range(300), buffersize=64)) == list(range(1, 301))  # many puts, many leases
    assert [executor.submit(fn, i).result(timeout=20) for i in range(10)] == list(range(1, 11))
    assert loads.read_text() == "loaded\n"  # one worker process: once


def test_a_task_by_id_from_another_client_after_the_program_left(
    god: God, spawn: Callable[..., Proc], env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    spawn("consumer", "--processes", "1", env_extra=addr_env(god))
    monkeypatch.setenv("GOD_AUTHKEY", env["GOD_AUTHKEY"])
    with Executor(god.address, give_up_after=10) as ex:
        tid = ex.submit(mul, 6, 7).task_id
    with connect(god.address, give_up_after=10) as other:
        state = wait_until(lambda: (s := other.task(tid))["result"] and s, 20, "the results line")
    assert state["state"] == "done" and state["result"]["value"] == 42
    assert state["result"]["payload"] == {"fn": f"{__name__}:mul", "args": [6, 7], "kwargs": {}}


LEAVING = """
import time
from producer import Executor

def nap(i):
    time.sleep(0.05)
    return i

ex = Executor()
futures = [ex.submit(nap, i) for i in range(20)]
ex.shutdown(wait=False)
print("left", len(futures), flush=True)
"""


def test_shutdown_without_waiting_leaves_the_calls_to_run_to_their_end(
    god: God, spawn: Callable[..., Proc], tmp_path: Path
) -> None:
    # Given a program that submits 20 calls and exits without waiting for them
    (tmp_path / "leaving.py").write_text(LEAVING)
    p = spawn(str(tmp_path / "leaving.py"), env_extra=addr_env(god), cwd=tmp_path)
    assert p.wait(30) == 0, p.text()
    assert p.out == ["left 20"]
    # When a consumer comes only then, Then every call runs, once
    spawn("consumer", "--processes", "1", env_extra=addr_env(god))
    wait_until(lambda: len(read_results(god.results)) >= 20, 30, "20 results")
    results = read_results(god.results)
    assert sorted(r["value"] for r in results) == list(range(20)) and all(r["ok"] for r in results)


def test_the_executor_lets_go_of_calls_arguments_and_results(executor: Executor) -> None:
    # As the standard library's executors promise (their tests check both): once a call is done
    # and the program drops what it gave, nothing of it stays alive in the executor
    held, argument = Held(3), Held(2)
    refs = [weakref.ref(held), weakref.ref(argument)]

    def by_value(x: int) -> int:  # a closure, by value: it holds `held`
        return x + len(held.items)

    refs.append(weakref.ref(by_value))
    assert executor.submit(by_value, 1).result(timeout=30) == 4
    assert executor.submit(held_size, argument).result(timeout=30) == 2
    del held, argument, by_value
    gc.collect()
    assert [r() for r in refs] == [None, None, None]
    # and a map keeps no result the program took and dropped, while it goes on
    results = executor.map(make_held, range(3))
    first = next(results)
    taken = weakref.ref(first)
    del first
    gc.collect()
    assert taken() is None
    assert [len(h.items) for h in results] == [1, 2]


def test_a_map_of_large_results_holds_about_map_bytes_of_them_whatever_its_window(executor: Executor) -> None:
    # A map of 1 MiB results keeps about MAP_BYTES of them in flight or in hand (64), not its
    # window of 16,384 (16 GiB at god and in the program)
    producer = executor._sender.producer
    before = producer.next_seq
    results = executor.map(megabyte, range(1000))
    assert producer.next_seq - before == FIRST_WINDOW  # until a result says how large they are
    assert next(results) == "a" * (1 << 20)
    assert FIRST_WINDOW < producer.next_seq - before <= 1 + 64  # the one taken, and 64 MiB
    results.close()


def test_an_async_program_awaits_futures_and_iterates_completions(executor: Executor) -> None:
    async def main() -> int:
        ticks = 0

        async def tick() -> None:  # the loop goes on while a future is awaited
            nonlocal ticks
            while True:
                ticks += 1
                await asyncio.sleep(0.01)

        ticker = asyncio.ensure_future(tick())
        slow, quick = executor.submit(nap, 1.0), executor.submit(nap, 0)
        assert await quick == 0
        assert [f async for f in completed([slow, quick, quick], timeout=30)] == [quick, slow]
        with pytest.raises(ZeroDivisionError):
            await executor.submit(divmod, 1, 0)
        with pytest.raises(TimeoutError, match=r"1 \(of 1\) futures unfinished"):
            async for _ in completed([executor.submit(nap, 5)], timeout=0.2):
                pass
        ticker.cancel()
        return ticks

    assert asyncio.run(main()) >= 20  # a second of awaiting at least: the loop was never blocked


def test_progress_lines_reach_the_end_for_a_map_and_for_futures(executor: Executor) -> None:
    out = io.StringIO()
    assert list(executor.map(nap, [0] * 50, progress=out)) == [0] * 50
    last = out.getvalue().split("\r")[-1]
    assert last.startswith("map of tests.integration.test_executor:nap: 50/50, 50 done, 0 failed, 0 in flight, "
                           "0 not sent, "), last
    assert last.endswith("\n") and " left, " in last
    futures = [executor.submit(divmod, 1, n) for n in (1, 0, 2)]
    out = io.StringIO()
    got = list(progress(cf.as_completed(futures), total=3, out=out))
    assert set(got) == set(futures)
    last = out.getvalue().split("\r")[-1]
    assert last.startswith("calls: 3/3, 2 done, 1 failed, 0 in flight, 0 not sent, "), last
