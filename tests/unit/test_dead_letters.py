"""Dead letters (god/rules/dead_letters.py): listed, served again under new ids, purged, bounded.

On the path production uses (API, waits, broker), with a fake clock: no sockets, no sleeps."""

from __future__ import annotations

import pytest

from shared.records import G_LO, G_ORIGIN, G_QUEUE, G_TASK
from tests.support.core import Core, kill_three_times, lines, payloads_of



def test_a_dead_letter_is_listed_served_again_under_a_new_id_that_says_where_it_came_from(core: Core) -> None:
    core.put("p", [{"to": "a@example.com"}], queue="mail", task="m:send", priority=4)
    kill_three_times(core, queue="mail")
    lines(core)
    (d,) = core.call("dead", "mail").result()
    assert (d["id"], d["queue"], d["task"], d["attempts"]) == ("p/1", "mail", "m:send", 3)
    assert d["payload"] == {"to": "a@example.com"} and "lost" in d["reason"]  # its JSON value
    assert d["shown"] == '{"to": "a@example.com"}'
    assert core.call("dead", "other").result() == []
    ((old, new),) = core.call("requeue", ["p/1"]).result()
    assert old == "p/1" and new != old and new.endswith("/1")
    assert core.call("dead", None).result() == [] and core.broker.figures.stats()["dead_kept"] == 0
    (g,) = core.lease("c", 5, queues=("mail",))
    assert (g[G_QUEUE], g[G_TASK], payloads_of(g)) == ("mail", "m:send", [{"to": "a@example.com"}])
    core.ack("c", [g])
    (r,) = lines(core)
    assert (r["id"], r["ok"], r["requeued_from"]) == (new, True, "p/1")


def test_dead_letters_served_again_say_which_they_were_in_success_and_failure_lines(core: Core) -> None:
    # Given two dead letters served again
    core.put("p", ["a", "b"])
    kill_three_times(core, 2)
    moved = dict(core.call("requeue", None).result())
    # When a consumer runs them, one failing (the grant says what they were; the consumer writes it)
    (g,) = core.lease("c", 5)
    assert g[G_ORIGIN] == ["p/1", "p/2"]
    core.ack("c", [g], fail={g[G_LO] + 1})
    # Then each line names the dead letter it was
    assert {r["requeued_from"]: (r["id"], r["ok"]) for r in lines(core) if r["id"] in moved.values()} == {
        "p/1": (moved["p/1"], True), "p/2": (moved["p/2"], False)}


def test_requeue_of_an_id_god_does_not_keep_is_refused_and_changes_nothing(core: Core) -> None:
    core.put("p", ["x"])
    kill_three_times(core)
    with pytest.raises(ValueError, match=r"1 id god keeps no dead letter of: p/9"):
        core.call("requeue", ["p/1", "p/9"]).result()
    assert [d["id"] for d in core.call("dead", None).result()] == ["p/1"]
    assert core.broker.figures.stats()["waiting"] == 0


def test_requeue_of_a_queue_and_purge_by_queue_and_age(core: Core) -> None:
    core.put("p", ["a"], queue="q1")
    kill_three_times(core, queue="q1")
    core.put("p", ["b", "c"], queue="q2")
    kill_three_times(core, 2, queue="q2")
    assert [d["id"] for d in core.call("dead", None).result()] == ["p/1", "p/2", "p/3"]
    assert core.call("purge", "q1", 3600.0).result() == 0  # given up just now
    assert [new for _, new in core.call("requeue", None, "q2").result()] != []
    assert core.broker.figures.stats()["waiting"] == 2
    assert core.call("purge", None, None).result() == 1
    assert core.call("dead", None).result() == []


def test_dead_keep_lets_the_oldest_go() -> None:
    core = Core(dead_keep=2)
    try:
        core.put("p", [1, 2, 3])
        kill_three_times(core, 3)
        assert [d["id"] for d in core.call("dead", None).result()] == ["p/2", "p/3"]
        assert core.broker.figures.stats()["dead"] == 3 and core.broker.figures.stats()["dead_kept"] == 2
    finally:
        core.close()
