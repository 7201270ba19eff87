"""Operator controls (god/rules/controls.py): rate limits, pauses, drains, cancels.

On the path production uses (API, waits, broker), with a fake clock: no sockets, no sleeps."""

from __future__ import annotations

import pytest

from shared.records import CANCELLED
from tests.support.core import Core, lines, seqs


def test_a_rate_limit_holds_across_consumers(core: Core) -> None:
    # Given a queue limited to 10 tasks a second, with 100 waiting
    core.put("p", list(range(100)))
    assert core.call("set_limit", "default", 10).result() is None
    # When two consumers lease all they can, the second half a second after the first
    first = seqs(core.lease("a", 100))
    assert core.lease("b", 100) == [] and not core.call("lease", "b", ("default",), 100, 1.0, 7).done
    core.clock.t += 0.5
    second = seqs(core.lease("b", 100))
    # Then they got one second's budget, then half a second's more: together, not each
    assert (len(first), len(second)) == (10, 5)
    core.clock.t += 10  # a long pause does not bank more than a second's worth
    assert len(seqs(core.lease("a", 100))) == 10
    assert core.broker.figures.stats()["queues"]["default"]["rate_limit"] == 10
    # and without the limit, the rest goes at once
    assert core.call("set_limit", "default", None).result() == 10
    assert len(seqs(core.lease("a", 1000))) == 75


def test_a_rate_limit_below_one_a_second_lets_one_through_at_a_time(core: Core) -> None:
    core.put("p", list(range(5)))
    core.call("set_limit", "default", 0.5).result()
    assert len(seqs(core.lease("a", 10))) == 1
    core.clock.t += 1.9
    assert core.lease("a", 10) == []
    core.clock.t += 0.2
    assert len(seqs(core.lease("a", 10))) == 1


def test_a_paused_queue_starts_nothing_until_resumed_and_others_go_on(core: Core) -> None:
    core.put("p", [1, 2], queue="q1")
    core.put("p", [3], queue="q2")
    (g,) = core.lease("c", 1, queues=("q1",))  # running before the pause: it finishes
    assert core.call("pause", "q1", True).result() is False
    assert core.call("pause", "q1", True).result() is True  # paused already
    assert core.lease("c", 5, queues=("q1",)) == []
    assert seqs(core.lease("c", 5, queues=("q1", "q2"))) == [3]
    assert core.ack("c", [g]) == 1
    waiting = core.call("lease", "c", ("q1",), 5, 10.0, None)  # a consumer waits for work
    core.step()
    assert not waiting.done
    s = core.broker.figures.stats()["queues"]["q1"]
    assert (s["paused"], s["waiting"]) == (True, 1)
    assert core.call("pause", "q1", False).result() is True
    core.step()
    assert seqs(waiting.result()) == [2]
    with pytest.raises(ValueError, match=r"god knows no queue nope \(queues: q1, q2\)"):
        core.call("pause", "nope", True).result()


def test_drain_asks_a_consumer_through_its_heartbeats(core: Core) -> None:
    core.hello("c")
    core.hello("c/0", parent="c")
    core.put("p", [1, 2])
    core.lease("c/0", 2)
    assert core.call("heartbeat", "c").result() == (True, {"drain": False, "stop": []})
    assert core.call("drain", "c").result() == 2
    assert core.call("heartbeat", "c").result() == (True, {"drain": True, "stop": []})
    assert core.call("heartbeat", "c").result()[1]["drain"]  # asked until it leaves: a lost reply is no matter
    with pytest.raises(ValueError, match=r"god knows no consumer nope \(consumers: c\)"):
        core.call("drain", "nope").result()
    with pytest.raises(ValueError, match=r"c/0 is a worker process of consumer c: drain c"):
        core.call("drain", "c/0").result()  # a worker, not a consumer


def test_cancel_fails_waiting_scheduled_and_running_tasks_at_once_and_tells_the_runner(core: Core) -> None:
    core.hello("c")
    core.hello("c/0", parent="c")
    core.put("p", [1, 2, 3, 4])
    core.put("p", [5], retry=(1, 60.0, 60.0, None))
    running = core.lease("c/0", 2)  # p/1, p/2 run
    core.ack("c/0", core.lease("c/0", 3), only=(5, 6), fail={5})  # p/5 waits for its retry; p/3, p/4 held
    assert core.call("cancel", ["p/1", "p/5", "p/3"], None, None).result() == {"waiting": 0, "scheduled": 1,
                                                                              "running": 2}
    got = {r["id"]: r for r in lines(core)}
    assert {tid for tid, r in got.items() if r["error"] == CANCELLED} == {"p/1", "p/3", "p/5"}
    assert core.call("heartbeat", "c").result()[1]["stop"] == [("p", 1), ("p", 3)]
    assert core.ack("c/0", running) == 1  # p/2's result counts; p/1's is a duplicate
    s = core.broker.figures.stats()
    assert (s["cancelled"], s["failed"], s["scheduled"]) == (3, 3, 0)  # p/5 failed once: tried again, then cancelled
    assert core.call("task", "p/1").result()["state"] == "done"
    core.clock.t += 11  # told for two lease periods, then forgotten
    assert core.call("heartbeat", "c").result()[1]["stop"] == []
    with pytest.raises(ValueError, match=r"1 task not waiting, scheduled or running .*: p/2"):
        core.call("cancel", ["p/2"], None, None).result()


def test_cancel_a_queue_or_a_producer(core: Core) -> None:
    core.put("p", [1, 2], queue="q1")
    core.put("r", [3], queue="q2")
    core.put("r", [4], queue="q1")
    assert core.call("cancel", None, "q1", None).result() == {"waiting": 3, "scheduled": 0, "running": 0}
    assert core.call("cancel", None, None, "r").result() == {"waiting": 1, "scheduled": 0, "running": 0}
    assert core.broker.figures.stats()["waiting"] == 0 and core.lease("c", 5, queues=("q1", "q2")) == []
    assert len(lines(core)) == 4
    with pytest.raises(ValueError, match="god knows no queue nope"):
        core.call("cancel", None, "nope", None).result()
    with pytest.raises(ValueError, match="god knows no producer nobody"):
        core.call("cancel", None, None, "nobody").result()
    with pytest.raises(ValueError, match="one of them"):
        core.call("cancel", ["p/1"], "q1", None).result()
