"""Results come from the lease holder only (god --keys: god/rules/acks.py ``leased_only``).

A consumer's results count only for tasks leased to it now, and each line of an ack must be
its own task's: its id, consumer, queue and task what god knows. On the path production uses
(API, waits, broker), with a fake clock."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from shared.records import G_ATTEMPT, G_FIRST, G_HI, G_LO, G_PRODUCER, Grant, json_line
from tests.support.core import Core, lines


@pytest.fixture
def held() -> Iterator[Core]:
    c = Core(capacity=100, lease_s=5.0, max_attempts=3, leased_only=True)
    yield c
    c.close()


def forged(g: Grant, line: str, failed: tuple = ()) -> tuple:
    """An ack of grant g with these lines."""
    return (g[G_PRODUCER], g[G_FIRST], g[G_LO], g[G_HI], line, failed, None)


def line_of(g: Grant, seq: int, consumer: str, *, queue: str = "default", task: str | None = None,
            tid: str | None = None) -> str:
    return json_line(tid or f"{g[G_PRODUCER]}/{seq}", seq, True, "forged", None, None, consumer, g[G_ATTEMPT],
                     1.0, queue, task) + "\n"


def test_results_for_tasks_leased_to_another_consumer_are_dropped(held: Core) -> None:
    # Given a task leased to a
    held.put("p", [1])
    got = held.lease("a", 1)
    # When b acks it, the result is dropped and counted; a's own result is the one kept
    assert held.ack("b", got, "b's") == 0
    s = held.broker.figures.stats()
    assert (s["unleased"], s["done"], s["running"]) == (1, 0, 1)
    assert held.ack("a", got, "a's") == 1
    assert [(r["id"], r["value"], r["consumer"]) for r in lines(held)] == [("p/1", "a's", "a")]


def test_a_result_after_its_lease_ran_out_is_dropped_and_the_task_runs_again(held: Core) -> None:
    held.put("p", [1])
    got = held.lease("a", 1)
    held.clock.t += 6
    held.broker.reap()  # a went silent: its task waits again
    assert held.ack("a", got, "late") == 0
    s = held.broker.figures.stats()
    assert (s["unleased"], s["done"], s["waiting"]) == (1, 0, 1)
    again = held.lease("b", 1)
    assert held.ack("b", again, "b's") == 1
    assert [r["value"] for r in lines(held)] == ["b's"]


def test_without_a_table_a_late_result_is_kept(core: Core) -> None:
    # (every key holder may do everything then: a late result saves running the task again)
    core.put("p", [1])
    got = core.lease("a", 1)
    core.clock.t += 6
    core.broker.reap()
    assert core.ack("a", got, "late") == 1
    assert [r["value"] for r in lines(core)] == ["late"]


def test_part_of_an_ack_leased_to_it_counts_and_the_rest_is_dropped(held: Core) -> None:
    held.put("p", [1, 2, 3, 4])
    a, b = held.lease("a", 2), held.lease("b", 2)
    both = [(a[0][G_PRODUCER], a[0][G_FIRST], 1, 5, "".join(line_of(a[0], s, "a") for s in range(1, 5)), (), None)]
    assert held.call("ack_many", "a", both).result() == 2
    assert held.broker.figures.stats()["unleased"] == 2
    assert sorted(r["id"] for r in lines(held)) == ["p/1", "p/2"]
    assert held.ack("b", b) == 2


def test_results_for_tasks_god_never_leased_are_dropped(held: Core) -> None:
    # (a god restarted without its journal keeps those without a table: nobody else runs them)
    ack = ("q", 1, 1, 2, '{"id": "q/1"}\n', (), None)
    assert held.call("ack_many", "a", [ack]).result() == 0
    assert held.broker.figures.stats()["unleased"] == 1
    assert lines(held) == []


@pytest.mark.parametrize("what, line", [
    ("another task's id", lambda g: line_of(g, 1, "a", tid="victim/7")),
    ("another consumer", lambda g: line_of(g, 1, "someone-else")),
    ("another queue", lambda g: line_of(g, 1, "a", queue="other")),
    ("another task", lambda g: line_of(g, 1, "a", task="os:system")),
    ("an id given twice", lambda g: line_of(g, 1, "a")[:-2] + ', "id": "victim/7"}\n'),
    ("two lines for one task", lambda g: line_of(g, 1, "a") + line_of(g, 1, "a")),
    ("no line", lambda g: ""),
    ("not JSON", lambda g: "{\"id\": \"p/1\", oops}\n"),
    ("a list", lambda g: "[1]\n"),
])
def test_a_line_that_is_not_its_own_tasks_is_refused_whole(held: Core, what: str, line) -> None:
    held.put("p", [1])
    (g,) = held.lease("a", 1)
    with pytest.raises(PermissionError, match=r"consumer a .*p/1"):
        held.call("ack_many", "a", [forged(g, line(g))]).result()
    s = held.broker.figures.stats()
    assert (s["done"], s["failed"], s["running"]) == (0, 0, 1), what
    assert lines(held) == []
    assert held.call("ack_many", "a", [forged(g, line_of(g, 1, "a"))]).result() == 1  # its own line is kept


def test_a_failure_outside_its_ack_is_refused(held: Core) -> None:
    held.put("p", [1, 2])
    (g,) = held.lease("a", 1)
    failed = ((2, "KeyError", None, "KeyError: 'k'", None, "2"),)
    with pytest.raises(PermissionError, match="may not report a failure of p/2"):
        held.call("ack_many", "a", [forged(g, line_of(g, 1, "a"), failed)]).result()
    assert held.call("failed", None).result() == []


def test_a_worker_cannot_time_out_a_task_it_does_not_hold(core: Core) -> None:
    core.put("p", [1])
    core.hello("a/0", parent="a")
    core.hello("b/0", parent="b")
    core.lease("a/0", 1)
    core.lost("b/0", ("p", 1, 1, 2), timed_out="TimeoutError: says b")
    s = core.broker.figures.stats()
    assert (s["failed"], s["running"]) == (0, 1)
    assert lines(core) == []


def test_the_lines_a_real_worker_writes_pass(held: Core) -> None:
    # Given every kind of result a worker writes: values, failures, a task named, a queue
    held.put("p", [1, 2, 3], queue="jobs", task="consumer.tasks:square")
    got = held.lease("a", 3, queues=("jobs",))
    assert held.ack("a", got, {"nested": {"id": "x"}}, fail={2}) == 3
    assert [(r["id"], r["ok"]) for r in lines(held)] == [("p/1", True), ("p/2", False), ("p/3", True)]
