"""Peers' lifecycle (god/rules/peers.py): hello, heartbeat, bye, lost and forgotten, for
consumers, their workers and producers alike.

On the path production uses (API, waits, broker), with a fake clock: no sockets, no sleeps."""

from __future__ import annotations

from god.operator.lines import status_text
from shared.version import PYTHON, VERSION
from tests.support.core import Core


def test_hello_records_each_peers_python_and_god_answers_with_its_own_versions(core: Core) -> None:
    reply = core.call("hello", "p", "producer", {"host": "h", "python": "3.10.13", "version": VERSION}).result()
    assert (reply["version"], reply["python"]) == (VERSION, PYTHON)
    core.call("hello", "c", "consumer", {"host": "h", "python": "3.13.0", "queues": ["default"]}).result()
    core.call("hello", "c/0", "consumer", {"parent": "c", "python": "3.13.0"}).result()
    stats = core.broker.figures.stats()
    assert [(c["name"], c["python"]) for c in stats["consumers"]] == [("c", "3.13.0")]
    assert [(p["name"], p["python"]) for p in stats["producers"]] == [("p", "3.10.13")]
    text = status_text("here", stats)
    assert "consumer c on h (Python 3.13.0): " in text and "producer p on h (Python 3.10.13): " in text


def test_a_producer_that_says_goodbye_is_no_longer_shown_and_its_results_not_kept(core: Core) -> None:
    core.call("hello", "p", "producer", {"results": True}).result()
    core.put("p", [1])
    core.ack("c", core.lease("c", 1))
    core.call("bye", "p").result()
    assert core.broker.figures.stats()["producers"] == []
    assert core.call("results_for", "p", core.broker.state.run, 0, 10, 0.0, None).result() == ([], [])
    assert core.settle(core.put("p", [1], first=1)) == 1  # and a re-sent put of it is still a duplicate
    assert core.broker.figures.stats()["accepted"] == 1


def test_a_producer_is_remembered_for_the_dedupe_window_and_then_forgotten_and_counted() -> None:
    core = Core(dedupe_window_s=100.0)
    try:
        core.put("p", [1, 2]).result()
        core.ack("c", core.lease("c", 2))
        core.clock.t += 99
        core.broker.reap()
        assert core.put("p", [1, 2], first=1).result() == 2  # re-sent within the window: a duplicate
        assert core.broker.figures.stats()["waiting"] == 0
        core.clock.t += 51
        core.put("q", [7]).result()
        core.ack("c", core.lease("c", 1))
        core.clock.t += 50  # p silent for longer than the window; q heard from since
        core.broker.reap()
        s = core.broker.figures.stats()
        assert (s["producers_forgotten"], s["unknown_puts"]) == (1, 0)
        # Then: a put p sends again is taken as new, and counted as such
        assert core.put("p", [1, 2], first=1).result() == 2
        s = core.broker.figures.stats()
        assert (s["waiting"], s["unknown_puts"]) == (2, 0)  # from seq 1: new
        core.clock.t += 101
        core.broker.reap()
        core.put("p", [3], first=3).result()
        s = core.broker.figures.stats()
        assert (s["producers_forgotten"], s["unknown_puts"], s["waiting"]) == (3, 1, 3)
    finally:
        core.close()


def test_a_lost_consumer_that_comes_back_is_told_and_its_late_result_still_counts(core: Core) -> None:
    core.put("p", [1])
    got = core.lease("c", 1)
    core.clock.t += 6
    core.broker.reap()
    assert core.call("heartbeat", "c").result()[0] is False  # it had been given up
    assert core.ack("c", got, "late") == 1  # the requeued copy is settled too
    assert core.lease("other", 1) == []
    assert core.broker.figures.stats()["waiting"] == 0


def test_a_consumers_bye_hands_back_what_its_workers_hold(core: Core) -> None:
    core.put("p", [1, 2, 3])
    core.hello("c")
    core.hello("c/0", parent="c")
    core.lease("c/0", 2)
    core.call("bye", "c").result()
    s = core.broker.figures.stats()
    assert (s["waiting"], s["running"], s["consumers"]) == (3, 0, [])


def test_bye_hands_back_what_is_still_leased(core: Core) -> None:
    core.put("p", [1, 2])
    core.lease("c", 2)
    core.call("bye", "c").result()
    s = core.broker.figures.stats()
    assert (s["waiting"], s["running"], s["consumers"]) == (2, 0, [])


def test_heartbeats_keep_a_long_task_from_being_served_twice(core: Core) -> None:
    core.put("p", [1])
    core.lease("c", 1)
    for _ in range(10):
        core.clock.t += 4
        assert core.call("heartbeat", "c").result()[0] is True
        assert core.broker.reap() == []
    assert core.lease("other", 1) == []
    assert core.broker.figures.stats()["running"] == 1
