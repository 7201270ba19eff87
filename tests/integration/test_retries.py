"""Retries at god: a failed task waits its backoff at god, journaled, and runs again."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from consumer.tasks import square
from shared import exitcodes
from tests.support.gods import God, addr_env
from tests.support.helpers import Proc, wait_for_results, write_tasks

pytestmark = pytest.mark.timeout(60)


def tries_of(d: Path, n: int) -> list[float]:
    return [float(t) for t in (d / f"tries-{n}").read_text().splitlines()]


def test_a_flaky_task_succeeds_on_its_third_try_and_one_that_never_does_fails_once_out_of_retries(
    god: God, spawn: Callable[..., Proc], tmp_path: Path
) -> None:
    # Given task 1 that fails twice, and task 2 that always fails, with 3 retries 0.3 s apart, doubling
    d = tmp_path / "marks"
    d.mkdir()
    env = addr_env(god)
    src = write_tasks(tmp_path / "t.jsonl", [{"dir": str(d), "n": 1, "fails": 2}, {"dir": str(d), "n": 2, "fails": 99}])
    assert spawn("producer", "--from", str(src), "--retries", "3", "--retry-backoff", "0.3", env_extra=env).wait() == 0
    # When a consumer runs them
    spawn("consumer", "--task", "tests.support.tasks:flaky", "--processes", "1", env_extra=env)
    # Then each has one result line: 1 succeeded at its third attempt, 2 failed at its fourth
    by_n = {r["payload"]["n"]: r for r in wait_for_results(god.results, 2, timeout=30)}
    assert (by_n[1]["ok"], by_n[1]["value"], by_n[1]["attempts"]) == (True, square(1), 3)
    assert (by_n[2]["ok"], by_n[2]["attempts"]) == (False, 4)
    assert by_n[2]["error"].startswith("ConnectionError: try 4 of 2 failed")
    # and the waits between its tries grew: about 0.3, 0.6 and 1.2 s (jitter of 20%)
    tries = tries_of(d, 2)
    gaps = [b - a for a, b in zip(tries, tries[1:])]
    assert len(gaps) == 3 and gaps[0] >= 0.24 and gaps[1] >= 0.48 and gaps[2] >= 0.96, gaps
    assert len(god.results.read_text().splitlines()) == 2


def test_a_task_that_asks_to_be_retried_later_runs_again_then(
    god: God, spawn: Callable[..., Proc], tmp_path: Path
) -> None:
    d = tmp_path / "marks"
    d.mkdir()
    env = addr_env(god)
    src = write_tasks(tmp_path / "t.jsonl", [{"dir": str(d), "n": 5, "after": 1.0}])
    assert spawn("producer", "--from", str(src), "--retries", "1", env_extra=env).wait() == 0
    spawn("consumer", "--task", "tests.support.tasks:rate_limited", "--processes", "1", env_extra=env)
    (r,) = wait_for_results(god.results, 1, timeout=30)
    assert (r["ok"], r["value"], r["attempts"]) == (True, square(5), 2)


@pytest.mark.parametrize("args, says", [
    (("--retries", "-1"), "retries -1 is not a whole number from 0"),
    (("--retries", "2", "--retry-backoff", "-3"), "retry backoff -3.0 is not a number of seconds from 0"),
])
def test_bad_retry_options_are_one_line_at_once(
    god: God, spawn: Callable[..., Proc], args: tuple[str, ...], says: str
) -> None:
    p = spawn("producer", "--rounds", "1", *args, env_extra=addr_env(god))
    assert p.wait(20) == exitcodes.CONFIG, p.text()
    errors = [line for line in p.err if "ERROR" in line]
    assert len(errors) == 1 and says in errors[0], p.text()


def test_a_delayed_task_waits_at_god_across_a_restart(
    start_god: Callable[..., God], spawn: Callable[..., Proc], tmp_path: Path
) -> None:
    # Given a task put with a 3 s delay, and god stopped and started again on its journal meanwhile
    journal = ("--journal", str(tmp_path / "journal.sqlite3"))
    g = start_god(*journal)
    src = write_tasks(tmp_path / "t.jsonl", [7])
    put_at = time.time()
    assert spawn("producer", "--from", str(src), "--delay", "3", env_extra=addr_env(g)).wait() == 0
    status = spawn("god", "status", "--json", env_extra=addr_env(g))
    assert status.wait() == 0 and json.loads(status.out[0])["scheduled"] == 1
    g.proc.stop()
    again = start_god(*journal)
    # When a consumer is there all along
    spawn("consumer", "--processes", "1", env_extra=addr_env(again))
    # Then the task runs once its time has come, not before
    (r,) = wait_for_results(again.results, 1, timeout=30)
    assert r["value"] == square(7) and r["time"] >= put_at + 3
