"""Results come from the lease holder only (god --keys: god/rules/acks.py ``leased_only``).

A consumer's results count only for tasks leased to it now, and each line of an ack must be
its own task's: its id, consumer, queue and task what god knows. On the path production uses
(API, waits, broker), with a fake clock."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from shared.records import G_ATTEMPT, G_FIRST, G_HI, G_LO, G_PRODUCER, Grant, json_line
from tests.support.core import Core, kill_three_times, lines


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
    ("an id spelled with escapes", lambda g: line_of(g, 1, "a")[:-2] + ', "\\u0069d": "victim/7"}\n'),
    ("a consumer spelled with escapes", lambda g: line_of(g, 1, "a")[:-2] + ', "\\u0063onsumer": "x"}\n'),
    ("a raw carriage return", lambda g: line_of(g, 1, "a")[:-2] + ',\r"x": 1}\n'),
    ("an id without spaces", lambda g: line_of(g, 1, "a")[:-2] + ',"id":"victim/7"}\n'),
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


def test_a_line_break_splitlines_sees_is_kept_escaped(held: Core) -> None:
    # Given a value with U+2028 in it (JSON allows it raw in a string; str.splitlines breaks there)
    held.put("p", [1])
    (g,) = held.lease("a", 1)
    text = line_of(g, 1, "a").replace('"forged"', '"one\u2028{\\"id\\": \\"victim/7\\"}"')
    assert "\u2028" in text
    assert held.call("ack_many", "a", [forged(g, text)]).result() == 1
    out, _ = held.broker.take_results()
    (kept,) = [t for t, _ in out]
    assert "\u2028" not in kept and kept.count("\n") == 1 and "\\u2028" in kept
    assert [r["value"] for r in map(json.loads, kept.splitlines())] == ['one\u2028{"id": "victim/7"}']


@pytest.mark.parametrize("payload, value", [
    ({"task": "mine", "id": 3, "queue": "q"}, {"consumer": "me"}),  # the words, nested: read line by line
    ("plain", "café ✓"),
])
def test_lines_a_worker_writes_with_any_payload_pass(held: Core, payload: object, value: object) -> None:
    held.put("p", [payload, payload])
    got = held.lease("a", 2)
    assert held.ack("a", got, value) == 2
    assert [(r["id"], r["payload"], r["value"]) for r in lines(held)] == [("p/1", payload, value), ("p/2", payload, value)]


def test_a_workers_lines_are_taken_at_once_and_anything_else_is_read_line_by_line() -> None:
    from consumer.acks import Acks as WorkerAcks
    from consumer.functions import Functions
    from consumer.policy import Policy
    from god.rules.own_lines import _at_once

    acks = WorkerAcks("c", Functions(Policy("consumer.tasks:square"), "c"))
    g = ("p", 1, 1, 5, 1, b"", None, "q", False, False, None)
    for seq in range(1, 4):
        acks.add(g, seq, seq, (True, f"{seq}", None, None))  # type: ignore[arg-type]
    acks.add(g, 4, 4, (False, None, "KeyError: 'k'", "Traceback"), KeyError("k"))  # type: ignore[arg-type]
    ((*_, text, _, _),) = acks.take()[0]
    assert _at_once(text, "p", 1, 5, "c", "q", None)
    lines = text.split("\n")
    for forged in (text.replace('"p/2"', '"p/7"'), text.replace('"consumer": "c"', '"consumer": "x"', 1),
                   text.replace('"queue": "q"', '"queue": "r"', 1), text.replace('"value": "1"', '"value": "1", "id": 1'),
                   "\n".join([lines[1], lines[0], *lines[2:]]), text.replace('"value": "1"', '"value": "\\u0031"')):
        assert not _at_once(forged, "p", 1, 5, "c", "q", None), forged


def test_a_dead_letter_served_again_is_acked_with_its_origin_and_not_another(held: Core) -> None:
    held.put("p", [1], queue="mail")
    kill_three_times(held, queue="mail")
    lines(held)
    ((_, new),) = held.call("requeue", ["p/1"]).result()
    (g,) = held.lease("c", 5, queues=("mail",))
    ok = json_line(new, 1, True, 1, None, None, "c", 1, 1.0, "mail", requeued_from="p/1") + "\n"
    with pytest.raises(PermissionError, match="says another requeued_from"):
        held.call("ack_many", "c", [forged(g, ok.replace("\"p/1\"", "\"victim/9\""))]).result()
    assert held.call("ack_many", "c", [forged(g, ok)]).result() == 1
    (r,) = lines(held)
    assert (r["id"], r["requeued_from"]) == (new, "p/1")
