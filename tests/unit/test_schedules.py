"""Schedules (god/rules/schedules.py): a task a period, once for periods missed, not twice across a crash.

On the path production uses (API, waits, broker), with a fake clock: no sockets, no sleeps."""

from __future__ import annotations

import pytest

from shared.records import G_LO, G_PRODUCER, G_TASK
from tests.support.core import Core, payloads_of, seqs


def test_a_schedule_puts_its_task_once_a_period_and_once_for_periods_missed(core: Core) -> None:
    t0 = core.clock.t
    s = core.call("schedule_add", "tick", 10.0, None, "q", "m:f", {"n": 1}).result()
    assert (s["next"], s["runs"]) == (t0 + 10, 0)
    core.clock.t = t0 + 9.9
    core.broker.reap()
    assert core.broker.figures.stats()["waiting"] == 0
    core.clock.t = t0 + 10
    core.broker.reap()
    (g,) = core.lease("c", 5, queues=("q",))
    assert (g[G_PRODUCER], g[G_LO], g[G_TASK], payloads_of(g)) == ("schedule-tick", 1, "m:f", [{"n": 1}])
    core.ack("c", [g])
    core.clock.t = t0 + 55  # periods at 20, 30, 40, 50 missed (god was busy, or down): one run
    core.broker.reap()
    core.broker.reap()
    second = core.lease("c", 5, queues=("q",))
    assert seqs(second) == [2]
    core.ack("c", second)
    (s,) = core.call("schedule_list").result()
    assert (s["runs"], s["next"], s["payload"]) == (2, t0 + 60, {"n": 1})
    with pytest.raises(ValueError, match="schedule tick exists already"):
        core.call("schedule_add", "tick", 5.0, None, "q", None, None).result()
    assert core.call("schedule_remove", "tick").result()["runs"] == 2
    core.clock.t = t0 + 100
    core.broker.reap()
    assert core.lease("c", 5, queues=("q",)) == []
    with pytest.raises(ValueError, match=r"god knows no schedule tick \(schedules: none\)"):
        core.call("schedule_remove", "tick").result()


def test_a_schedule_run_put_before_a_crash_is_not_put_again(core: Core) -> None:
    core.call("schedule_add", "tick", 10.0, None, "default", None, 7).result()
    s = core.broker.state.schedules["tick"]
    core.put(s.producer, [7], first=1)  # run 1 was put; the schedule's own row did not say so yet
    core.clock.t = s.next
    core.broker.reap()
    assert core.broker.figures.stats()["waiting"] == 1 and s.runs == 1  # the run counted, not put twice


def test_bad_schedules_are_refused(core: Core) -> None:
    for args, says in (((None, None), "one of them"), ((0.5, None), "1 or more"), ((None, "* * *"), "five fields"),
                       ((5.0, "* * * * *"), "one of them")):
        with pytest.raises(ValueError, match=says):
            core.call("schedule_add", "x", *args, "default", None, None).result()
    with pytest.raises(ValueError, match="not allowed"):
        core.call("schedule_add", "a/b", 5.0, None, "default", None, None).result()
