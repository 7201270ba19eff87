"""Redelivery (god/rules/redelivery.py): what lost, silent or leaving consumers held goes back, or to the dead letters.

On the path production uses (API, waits, broker), with a fake clock: no sockets, no sleeps."""

from __future__ import annotations

from shared.records import G_ALONE, G_ATTEMPT, G_HI, G_LO
from tests.support.core import Core, lines, payloads_of, seqs


def test_a_silent_consumer_loses_its_leases_to_the_front_of_the_queue(core: Core) -> None:
    core.put("p", [0, 1, 2, 3])
    assert seqs(core.lease("dead", 2)) == [1, 2]
    core.clock.t += 5.1
    assert core.broker.reap() == [("dead", 2)]
    got = core.lease("alive", 10)
    assert seqs(got) == [1, 2, 3, 4]
    assert [g[G_ATTEMPT] for g in got] == [2, 1]  # attempts counted
    assert core.broker.figures.stats()["redelivered"] == 2


def test_a_task_that_keeps_killing_its_consumer_is_dead_lettered(core: Core) -> None:
    core.put("p", ["poison"])
    for attempt in range(3):
        assert seqs(core.lease(f"c{attempt}", 1)) == [1]
        core.clock.t += 6
        core.broker.reap()
    assert core.lease("c", 1) == []
    s = core.broker.figures.stats()
    assert (s["dead"], s["waiting"], s["running"]) == (1, 0, 0)
    (r,) = lines(core)
    assert r["ok"] is False and "dead letter" in str(r["error"]) and r["attempts"] == 3 and r["payload"] == "poison"
    assert [(d["id"], d["payload"], d["attempts"]) for d in core.broker.dead.listing()] == [("p/1", "poison", 3)]


def test_a_crash_uses_an_attempt_of_that_task_only(core: Core) -> None:
    core.put("p", [0, 1, 2, 3])
    core.hello("c/0", parent="c")
    core.lease("c/0", 3)
    core.lease("c/1", 1)
    # the worker died running 2; 3 it had not started; 1 it finished (not acked yet)
    core.lost("c/0", ("p", 1, 2, 3))
    got = core.lease("c2", 10)
    assert sorted((g[G_LO], g[G_HI], g[G_ATTEMPT]) for g in got) == [(1, 2, 1), (2, 3, 2), (3, 4, 1)]
    assert core.broker.figures.stats()["running"] == 4  # 4 is still c/1's


def test_tasks_that_ran_together_in_a_worker_that_died_each_run_alone_next(core: Core) -> None:
    # Given a worker that died running two tasks at once (either may have killed it), and one alone
    core.put("p", ["a", "b", "c", "d"])
    core.lease("c/0", 4)
    core.lost("c/0", None)
    core.lease("c/0", 3)
    core.call("worker_lost", "c/0", [("p", 1, 1, 2), ("p", 1, 2, 3)], None).result()
    # Then both used an attempt and come back marked to run alone; the one it had not started does not
    got = core.lease("c/1", 4)
    assert sorted((seqs([g]), g[G_ATTEMPT], g[G_ALONE]) for g in got) == [
        ([1], 2, True), ([2], 2, True), ([3], 1, False), ([4], 1, False)]
    # And a death with one task running names that task: it is not marked
    core.lost("c/1", ("p", 1, 1, 2))
    (g,) = [g for g in core.lease("c/2", 4) if seqs([g]) == [1]]
    assert (g[G_ATTEMPT], g[G_ALONE]) == (3, True)  # (still marked from before)
    core.put("p", ["e"])
    core.lease("c/3", 1)
    core.lost("c/3", ("p", 5, 5, 6))
    (g,) = core.lease("c/3", 1)
    assert (seqs([g]), g[G_ATTEMPT], g[G_ALONE]) == ([5], 2, False)


def test_a_lost_worker_does_not_take_back_a_task_now_held_by_another(core: Core) -> None:
    core.put("p", [1])
    core.lease("a", 1)
    core.clock.t += 6
    core.broker.reap()
    core.lease("b", 1)
    core.lost("a", ("p", 1, 1, 2))
    s = core.broker.figures.stats()
    assert (s["running"], s["waiting"], s["redelivered"]) == (1, 0, 1)


def test_a_redelivered_task_keeps_its_priority_and_goes_first_within_its_level(core: Core) -> None:
    core.put("p", ["a", "b"], priority=5)
    core.put("p", ["top"], priority=9)
    assert payloads_of(core.lease("dead", 1)[0]) == ["top"]
    assert payloads_of(core.lease("dead", 1)[0]) == ["a"]
    core.clock.t += 6
    core.broker.reap()
    got = core.lease("c", 10)
    assert [payloads_of(g) for g in got] == [["top"], ["a"], ["b"]]


def test_a_task_that_killed_a_worker_goes_to_another_consumer_while_there_is_one(core: Core) -> None:
    # Given two consumers on the queue, and a task that killed a worker of the first
    core.put("p", ["poison", "fine"])
    for consumer in ("c", "other"):
        core.hello(consumer)
        core.hello(f"{consumer}/0", parent=consumer)
        core.hello(f"{consumer}/1", parent=consumer)
    got = core.lease("c/0", 2)
    core.lost("c/0", ("p", 1, 1, 2))
    # When a worker of the first leases again, it gets the other task, not the one that killed its worker
    assert [payloads_of(g) for g in core.lease("c/1", 10)] == [["fine"]]
    waiting = core.call("lease", "c/1", ("default",), 10, 1.0, 99)
    assert not waiting.done  # it waits rather than spinning on empty answers
    # Then the other consumer gets it, at its second attempt
    (g,) = core.lease("other/1", 10)
    assert (payloads_of(g), g[G_ATTEMPT]) == (["poison"], 2)
    assert seqs(got) == [1, 2]


def test_a_task_that_killed_a_worker_comes_back_to_its_consumer_when_it_is_the_only_one(core: Core) -> None:
    core.put("p", ["poison"])
    core.lease("c/0", 1)
    core.lost("c/0", ("p", 1, 1, 2))
    (g,) = core.lease("c/0", 1)
    assert g[G_ATTEMPT] == 2


def test_a_task_kept_from_the_consumer_it_killed_goes_back_to_it_after_a_lease_period(core: Core) -> None:
    # Given a task that killed a worker of c, and another consumer that serves the queue but
    # takes nothing from it (busy with queues it serves first)
    core.put("p", ["poison"])
    for consumer in ("c", "other"):
        core.hello(consumer)
        core.hello(f"{consumer}/0", parent=consumer)
    core.hello("c/1", parent="c")
    core.lease("c/0", 1)
    core.lost("c/0", ("p", 1, 1, 2))
    # When c's new worker leases within a lease period, it gets nothing; just after, the task
    for step, expected in ((4.9, []), (0.2, [["poison"]])):
        core.clock.t += step
        for consumer in ("c", "other"):
            core.call("heartbeat", consumer).result()
        assert [payloads_of(g) for g in core.lease("c/1", 10)] == expected
    assert core.broker.figures.stats()["running"] == 1
