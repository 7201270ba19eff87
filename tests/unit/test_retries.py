"""Retries and scheduled tasks (god/rules/retries.py): backoff, named exceptions, Retry(after), delays.

On the path production uses (API, waits, broker), with a fake clock: no sockets, no sleeps."""

from __future__ import annotations

import time

from consumer.tasks import Retry
from shared.records import G_ATTEMPT
from tests.support.core import Core, lines, payloads_of


def test_a_failure_with_retries_left_waits_its_backoff_then_runs_again(core: Core) -> None:
    # Given a task that may be retried twice, backing off 10 s, then 20 s
    core.put("p", ["flaky"], retry=(2, 10.0, 300.0, None))
    # When it fails, it has no result yet and waits off the queue
    assert core.ack("c", core.lease("c", 1), fail={1}) == 0
    s = core.broker.figures.stats()
    assert (s["failed"], s["scheduled"], s["waiting"], s["running"], s["retried"]) == (0, 1, 0, 0, 1)
    assert lines(core) == [] and core.lease("c", 1) == []
    core.clock.t += 7.9  # 10 s less 20% jitter at most: not yet
    core.broker.reap()
    assert core.lease("c", 1) == []
    core.clock.t += 4.2  # 10 s and 20% more at most: by now
    core.broker.reap()
    (g,) = core.lease("c", 1)
    assert g[G_ATTEMPT] == 2
    # Then it fails again and waits about twice as long, and on its third try it succeeds
    core.ack("c", [g], fail={1})
    core.clock.t += 16.0 - 0.1
    core.broker.reap()
    assert core.lease("c", 1) == []
    core.clock.t += 8.2
    core.broker.reap()
    (g,) = core.lease("c", 1)
    assert g[G_ATTEMPT] == 3 and core.ack("c", [g]) == 1
    (r,) = lines(core)  # one line for the task: the last attempt's
    assert (r["ok"], r["attempts"]) == (True, 3)
    assert core.broker.figures.stats()["scheduled"] == 0


def test_a_failure_with_no_retries_left_is_its_result(core: Core) -> None:
    core.put("p", ["bad"], retry=(1, 1.0, 300.0, None))
    core.ack("c", core.lease("c", 1), fail={1})
    core.clock.t += 2
    core.broker.reap()
    assert core.ack("c", core.lease("c", 1), fail={1}) == 1
    (r,) = lines(core)
    assert (r["ok"], r["attempts"], r["error"]) == (False, 2, "ValueError: no")
    assert core.broker.figures.stats()["failed"] == 1


def test_only_the_named_exceptions_are_retried(core: Core) -> None:
    core.put("p", ["a", "b"], retry=(3, 1.0, 300.0, ("TimeoutError",)))
    grants = core.lease("c", 2)
    core.ack("c", grants, fail={1}, raised=TimeoutError("slow"), only=(1, 2))
    core.ack("c", grants, fail={2}, raised=KeyError("x"), only=(2, 3))
    assert [r["payload"] for r in lines(core)] == ["b"]  # the KeyError is final; the timeout waits
    assert core.broker.figures.stats()["scheduled"] == 1


def test_a_task_asking_to_be_retried_later_is_served_then(core: Core) -> None:
    core.put("p", ["rate limited"], retry=(1, 1.0, 300.0, ("OtherError",)))
    core.ack("c", core.lease("c", 1), fail={1}, raised=Retry(after=30))  # honoured whatever retry_on says
    core.clock.t += 29
    core.broker.reap()
    assert core.lease("c", 1) == []
    core.clock.t += 1.5
    core.broker.reap()
    assert len(core.lease("c", 1)) == 1


def test_retries_do_not_count_towards_deaths(core: Core) -> None:
    # Given a task that failed and was retried twice: its third lease
    core.put("p", ["x"], retry=(5, 1.0, 1.0, None))
    for _ in range(2):
        core.ack("c", core.lease("c", 1), fail={1})
        core.clock.t += 2
        core.broker.reap()
    (g,) = core.lease("c", 1)
    assert g[G_ATTEMPT] == 3
    # When its worker dies, it is its first death of max_attempts 3: served again, not dead
    core.lost("c", ("p", 1, 1, 2))
    assert core.broker.figures.stats()["dead"] == 0
    (g,) = core.lease("other", 1)
    assert g[G_ATTEMPT] == 4


def test_a_delayed_batch_is_served_when_its_time_comes(core: Core) -> None:
    core.put("p", ["later"], due=time.time() + 60)
    core.put("p", ["now"])
    got = core.lease("c", 10)
    assert [payloads_of(g) for g in got] == [["now"]]
    core.ack("c", got)
    s = core.broker.figures.stats()
    assert (s["scheduled"], s["waiting"], s["queues"]["default"]["scheduled"]) == (1, 0, 1)
    core.clock.t += 59
    core.broker.reap()
    assert core.lease("c", 10) == []
    core.clock.t += 1.5
    core.broker.reap()
    assert [payloads_of(g) for g in core.lease("c", 10)] == [["later"]]
