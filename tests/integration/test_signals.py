"""Stopping: one signal drains and exits 0, a second exits at once; nothing is lost either way."""

from __future__ import annotations

import os
import signal
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest

from shared import exitcodes
from tests.support.gods import God, addr_env
from tests.support.helpers import Proc, read_results, wait_for_results, wait_until, write_tasks

pytestmark = pytest.mark.timeout(60)


def slow_tasks(tmp_path: Path, n: int, seconds: float) -> Path:
    return write_tasks(tmp_path / "slow.jsonl", [{"n": i, "s": seconds} for i in range(n)])


def slow_consumer_at_work(spawn: Callable[..., Proc], env: dict[str, str], tmp_path: Path, n: int,
                          seconds: float) -> Proc:
    """n tasks of that many seconds put, and a consumer of 2 workers for them in a process
    group of its own (to signal it whole, or its main process alone)."""
    assert spawn("producer", "--from", str(slow_tasks(tmp_path, n, seconds)), env_extra=env).wait() == 0
    return spawn("consumer", "--task", "tests.support.tasks:slow", "--processes", "2", env_extra=env, new_session=True)


@pytest.mark.parametrize(("tasks", "concurrency"), [(8, 1), (120, 50)])
def test_one_sigterm_drains_and_hands_back_the_rest(
    god: God, spawn: Callable[..., Proc], tmp_path: Path, tasks: int, concurrency: int
) -> None:
    # Given a consumer working through tasks of 0.4 s with one worker (running one or 50 at a time)
    env = addr_env(god)
    assert spawn("producer", "--from", str(slow_tasks(tmp_path, tasks, 0.4)), env_extra=env).wait() == 0
    c = spawn("consumer", "--task", "tests.support.tasks:slow", "--processes", "1", "--concurrency", str(concurrency),
              env_extra=env)
    wait_for_results(god.results, 1)
    # When it gets one SIGTERM
    c.signal(signal.SIGTERM)
    # Then it finishes what runs, exits 0, and the rest goes back unstarted (attempt not used up)
    assert c.wait(15) == 0, c.text()
    done_first = len(read_results(god.results))
    assert done_first < tasks, "the consumer finished everything before the signal: nothing was handed back"
    spawn("consumer", "--task", "tests.support.tasks:slow", "--processes", "2", "--concurrency", str(concurrency), "--burst",
          env_extra=env)
    results = wait_for_results(god.results, tasks)
    assert set(Counter(r["id"] for r in results).values()) == {1}
    assert all(r["attempts"] == 1 for r in results)


def test_sigterm_to_every_process_of_a_consumer_drains_it_too(
    god: God, spawn: Callable[..., Proc], tmp_path: Path
) -> None:
    # Given a consumer of two workers, each running a task of 1.5 s, in a process group of its own
    env = addr_env(god)
    c = slow_consumer_at_work(spawn, env, tmp_path, 2, 1.5)
    for i in range(2):
        c.wait_for(f"slow task {i} started", stream="err")
    # When SIGTERM reaches all of its processes at once, as Slurm's scancel sends it (and a
    # service manager's stop without KillMode=mixed)
    os.killpg(c.pid, signal.SIGTERM)
    # Then the workers' tasks finish, the consumer exits 0, and nothing runs twice
    assert c.wait(15) == 0, c.text()
    results = wait_for_results(god.results, 2)
    assert len(results) == 2 and all(r["ok"] and r["attempts"] == 1 for r in results), results
    assert "died" not in c.text()


def test_a_second_sigterm_exits_at_once_with_a_non_zero_code(
    god: God, spawn: Callable[..., Proc], tmp_path: Path
) -> None:
    # Given a consumer running a 30 s task
    env = addr_env(god)
    assert spawn("producer", "--from", str(slow_tasks(tmp_path, 1, 30)), env_extra=env).wait() == 0
    c = spawn("consumer", "--task", "tests.support.tasks:slow", "--processes", "1", env_extra=env)
    c.wait_for("slow task 0 started", stream="err")
    # When it gets two SIGTERMs
    c.signal(signal.SIGTERM)
    c.wait_for("SIGTERM received", stream="err")
    started = time.monotonic()
    c.signal(signal.SIGTERM)
    # Then it exits promptly, non-zero, and says why
    assert c.wait(10) == exitcodes.INTERRUPTED, c.text()
    assert time.monotonic() - started < 8
    assert "second SIGTERM: stopping at once; god serves its tasks again" in c.text()
    assert "stopped at once" in c.text() and "died" not in c.text()  # the workers it stops are no news


def test_a_consumer_waiting_for_a_gone_god_stops_on_one_signal(
    start_god: Callable[..., God], spawn: Callable[..., Proc]
) -> None:
    g = start_god()
    c = spawn("consumer", "--processes", "1", env_extra=addr_env(g))
    c.wait_for("running", stream="err")
    g.proc.signal(signal.SIGTERM)
    assert g.proc.wait() == 0
    c.wait_for("not answering", stream="err")
    c.signal(signal.SIGTERM)
    assert c.wait(15) == 0, c.text()


def _children(pid: int) -> list[int]:
    kids = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            kids.append(int(stat.parent.name))
    return kids


def _running(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def test_the_workers_of_a_consumer_killed_alone_end_and_their_tasks_are_served_again(
    god: God, spawn: Callable[..., Proc], tmp_path: Path
) -> None:
    # Given a consumer of 2 worker processes (each with its own connection to god) at work
    env = addr_env(god)
    c = slow_consumer_at_work(spawn, env, tmp_path, 40, 0.1)
    wait_for_results(god.results, 1)
    workers = [pid for pid in _children(c.pid) if "worker" in Path(f"/proc/{pid}/cmdline").read_text()
               or "multiprocessing" in Path(f"/proc/{pid}/cmdline").read_text()]
    assert workers, "no worker processes found"
    # When the consumer process alone is SIGKILLed (not its process group)
    c.signal(signal.SIGKILL)
    # Then its workers end on their own (their consumer's pipe closed), and god serves their
    # tasks again: another consumer finishes every task, one result each
    wait_until(lambda: not any(map(_running, workers)), 15, "the orphaned workers to end")
    spawn("consumer", "--task", "tests.support.tasks:slow", "--processes", "2", "--burst", env_extra=env)
    results = wait_for_results(god.results, 40)
    assert set(Counter(r["id"] for r in results).values()) == {1}
