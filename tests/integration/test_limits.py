"""Rate limits: god starts at most N tasks a second from a queue, across all its consumers."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from shared import exitcodes
from tests.support.gods import God, addr_env
from tests.support.helpers import Proc, wait_for_results, write_tasks

pytestmark = pytest.mark.timeout(60)


def test_a_rate_limit_holds_over_two_consumers_and_changes_while_god_runs(
    start_god: Callable[..., God], spawn: Callable[..., Proc], tmp_path: Path
) -> None:
    # Given god limiting the default queue to 20 tasks a second, and two consumers
    g = start_god("--rate-limit", "default=20")
    env = addr_env(g)
    for _ in range(2):
        spawn("consumer", "--processes", "1", env_extra=env).wait_for("running", stream="err")
    # When 60 tiny tasks are put (without the limit they take a few milliseconds)
    assert spawn("producer", "--from", str(write_tasks(tmp_path / "a.jsonl", list(range(60)))),
                 env_extra=env).wait() == 0
    # Then the first second's 20 go at once, and the other 40 take about two seconds more
    times = sorted(r["time"] for r in wait_for_results(g.results, 60, timeout=30))
    assert times[-1] - times[0] >= 1.5, times[-1] - times[0]
    # and both consumers shared them
    assert len({r["consumer"] for r in wait_for_results(g.results, 60)}) == 2
    # When the limit is lifted while god runs, god says so, and the next 60 are served without it
    lift = spawn("god", "limit", "default", "off", env_extra=env)
    assert lift.wait() == 0, lift.text()
    assert lift.out == ["queue default: no rate limit (was at most 20 tasks a second start)"]
    status = spawn("god", "status", "--json", env_extra=env)
    assert status.wait() == 0 and json.loads(status.out[0])["queues"]["default"]["rate_limit"] is None
    assert spawn("producer", "--from", str(write_tasks(tmp_path / "b.jsonl", list(range(60)))),
                 env_extra=env).wait() == 0
    assert len(wait_for_results(g.results, 120, timeout=30)) == 120


@pytest.mark.parametrize("args, says", [
    (("--rate-limit", "images"), "--rate-limit 'images': expected QUEUE=N"),
    (("--rate-limit", "images=fast"), "--rate-limit 'images=fast': expected QUEUE=N"),
    (("--rate-limit", "bad name=3"), "--rate-limit 'bad name=3': expected QUEUE=N"),
])
def test_a_rate_limit_that_is_not_queue_equals_n_is_one_line(
    spawn: Callable[..., Proc], args: tuple[str, ...], says: str
) -> None:
    p = spawn("god", "--address", "127.0.0.1:0", "--no-journal", *args)
    assert p.wait(20) == exitcodes.USAGE, p.text()
    errors = [line for line in p.err if "ERROR" in line]
    assert len(errors) == 1 and says in errors[0], p.text()


def test_limit_with_no_arguments_lists_every_queues_limit(
    start_god: Callable[..., God], spawn: Callable[..., Proc], tmp_path: Path
) -> None:
    g = start_god("--rate-limit", "images=5", "--rate-limit", "pages=0.5")
    env = addr_env(g)
    assert spawn("producer", "--from", str(write_tasks(tmp_path / "a.jsonl", [1])), env_extra=env).wait() == 0
    listed = spawn("god", "limit", env_extra=env)
    assert listed.wait() == 0, listed.text()
    assert listed.out == ["queue default: no rate limit", "queue images: at most 5 tasks a second start",
                          "queue pages: at most 0.5 tasks a second start"]
    assert listed.err == ["3 queues, 2 with a rate limit"]
    as_json = spawn("god", "limit", "--json", env_extra=env)
    assert as_json.wait() == 0
    assert [json.loads(line) for line in as_json.out] == [
        {"queue": "default", "rate_limit": None}, {"queue": "images", "rate_limit": 5.0},
        {"queue": "pages", "rate_limit": 0.5}]
    one = spawn("god", "limit", "images", env_extra=env)
    assert one.wait() == 0 and one.out == ["queue images: at most 5 tasks a second start"], one.text()
