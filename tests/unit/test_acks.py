"""Acks (god/rules/acks.py): the first result wins; failures kept; a timeout's failure.

On the path production uses (API, waits, broker), with a fake clock: no sockets, no sleeps."""

from __future__ import annotations

import hashlib

from shared.records import G_ATTEMPT, G_FIRST, G_HI, G_LO, G_PRODUCER
from tests.support.core import Core, lines, payloads_of


def test_first_result_wins_and_later_ones_are_counted_duplicates(core: Core) -> None:
    core.put("p", [1])
    got = core.lease("c", 1)
    assert core.ack("c", got, "first") == 1
    assert core.ack("c", got, "second") == 0
    assert [r["value"] for r in lines(core)] == ["first"]
    assert core.broker.figures.stats()["duplicates"] == 1


def test_failed_lists_the_last_failures_not_those_tried_again(core: Core) -> None:
    core.put("p", [1, 2, 3])
    core.put("p", [4], retry=(2, 1.0, 10.0, None))
    core.ack("c", core.lease("c", 10), fail={2, 4}, raised=KeyError("k"))
    (f,) = core.call("failed", None).result()
    assert (f["id"], f["payload"], f["shown"], f["queue"]) == ("p/2", 2, "2", "default")
    assert "KeyError" in f["error"] and "k" in f["traceback"]


def test_god_reads_a_failure_from_its_fields_never_from_its_line(core: Core) -> None:
    # Given a failure whose fields say what happened, and a line that says something else
    core.put("p", [{"n": 7}])
    (g,) = core.lease("c", 1)
    line = '{"id": "p/1", "error": "what the line says", "traceback": "line tb", "payload": 0}\n'
    failed = ((g[G_LO], "KeyError", None, "KeyError: 'k'", "Traceback: fields", '{"n": 7}'),)
    ack = (g[G_PRODUCER], g[G_FIRST], g[G_LO], g[G_HI], line, failed, None)
    # When god records it
    assert core.call("ack_many", "c", [ack]).result() == 1
    # Then ``failed`` shows the fields, and the results file has the consumer's line as it came
    (f,) = core.call("failed", None).result()
    assert (f["id"], f["error"], f["traceback"], f["payload"], f["consumer"]) == (
        "p/1", "KeyError: 'k'", "Traceback: fields", {"n": 7}, "c")
    assert lines(core) == [{"id": "p/1", "error": "what the line says", "traceback": "line tb", "payload": 0}]


def test_a_failure_from_a_consumer_that_sends_three_fields_is_listed_by_its_class(core: Core) -> None:
    core.put("p", [1])
    (g,) = core.lease("c", 1)
    ack = (g[G_PRODUCER], g[G_FIRST], g[G_LO], g[G_HI], '{"id": "p/1"}\n', ((g[G_LO], "KeyError", None),), None)
    assert core.call("ack_many", "c", [ack]).result() == 1
    (f,) = core.call("failed", None).result()
    assert (f["id"], f["error"], f["traceback"], f["payload"]) == ("p/1", "KeyError", None, None)


def test_a_task_over_its_timeout_fails_with_a_line_god_writes(core: Core) -> None:
    # Given a task its consumer stopped for running too long, one that may be retried once
    core.put("p", ["slow", "next"], retry=(1, 1.0, 1.0, ("TimeoutError",)))
    core.hello("c/0", parent="c")
    core.lease("c/0", 2)
    why = "TimeoutError: timed out after 2s (--task-timeout); its worker was stopped"
    core.lost("c/0", ("p", 1, 1, 2), timed_out=why)
    # Then it waits for its retry (TimeoutError is one to retry), and the other goes back unstarted
    s = core.broker.figures.stats()
    assert (s["retried"], s["scheduled"], s["waiting"], s["running"]) == (1, 1, 1, 0)
    core.clock.t += 2
    core.broker.reap()
    core.hello("c/0", parent="c")  # its replacement
    got = core.lease("c/0", 2)
    assert [(payloads_of(g), g[G_ATTEMPT]) for g in got] == [(["slow"], 2), (["next"], 1)]
    # When it times out again, its failure is final, in a line god writes with its payload
    core.lost("c/0", ("p", 1, 1, 2), timed_out=why)
    (r,) = lines(core)
    assert (r["id"], r["ok"], r["payload"], r["error"], r["attempts"], r["consumer"]) == (
        "p/1", False, "slow", why, 2, "c")


def test_the_lines_god_writes_itself_show_a_large_payload_in_brief() -> None:
    # Given god keeping up to 100 characters of a payload in a line
    core = Core(capacity=100, lease_s=5.0, max_attempts=3, results_payload_max=100)
    try:
        big = b"\x00" * 300
        brief = {"large": "bytes", "bytes": 300, "sha256": hashlib.sha256(big).hexdigest()}
        core.put("p", [big, "small"])
        core.put("p", [("m:f", (big, 7), {"k": 1})], task="m:f()")
        core.hello("c/0", parent="c")
        core.lease("c/0", 1)
        # When the first times out and is not retried, and an operator cancels the others
        core.lost("c/0", ("p", 1, 1, 2), timed_out="TimeoutError: timed out")
        core.call("cancel", ["p/2", "p/3"], None, None).result()
        # Then each of god's lines shows the large payload (or argument) in brief, the rest whole
        got = {r["id"]: r["payload"] for r in lines(core)}
        assert got == {"p/1": brief, "p/2": "small", "p/3": {"fn": "m:f", "args": [brief, 7], "kwargs": {"k": 1}}}
    finally:
        core.close()
