"""Tasks that wait for other tasks (god/rules/graph.py): blocked until what they wait for has a
result, then served with its values; failures, dead letters and cancels fail what waits,
transitively; outcomes kept only while a batch uses them; all of it across a restart.

On the path production uses (API, waits, broker), with a fake clock: no sockets, no sleeps."""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

from shared.calls import Awaited, value_of
from god.journal.recorder import Recorder
from god.operator.lines import status_text
from god.operator.metrics import render
from shared.records import CANCELLED, G_FIRST, G_HI, G_LO, G_PRODUCER, V_VALUE, Grant, is_packed
from tests.support.core import Core, lines, opened, payloads_of, restarted, seqs

F = "tests.support.tasks:add()"  # a call's task name; its payloads below are (fn, blob) as the executor sends them


def call(*args: Any) -> tuple[Any, ...]:
    """A call's payload whose arguments are pickled (as they are when a future is among them)."""
    return ("tests.support.tasks:add", pickle.dumps((args, {})))


def waiter(core: Core, producer: str = "p") -> None:
    core.call("hello", producer, "producer", {"host": "h", "results": True}).result()


def values_of(g: Grant) -> list[Any]:
    """The values a call's grant carries for what it waited for (one tuple per task): each as
    it is, a packed one as the Value that holds it."""
    return [tuple(v if is_packed(v) else v[V_VALUE] for v in p[2]) for p in payloads_of(g)]


def empty(core: Core) -> None:
    """Nothing of the graph is left in god: no outcome, no waiter, nothing blocked."""
    st = core.broker.state
    assert (st.graph.outcomes, st.graph.waiters, st.blocked) == ({}, {}, 0)
    assert all(q.blocked == 0 for q in st.queues.values())


def test_a_chain_runs_in_order_each_step_with_the_value_before(core: Core) -> None:
    waiter(core)
    core.put("p", [call(1)], task=F)
    core.put("p", [call(Awaited(0), 1)], task=F, after=("p/1",))
    core.put("p", [call(Awaited(0), 1)], task=F, after=("p/2",))
    assert core.broker.figures.stats()["queues"]["default"]["blocked"] == 2
    (g,) = core.lease("c", 10)
    assert seqs([g]) == [1] and core.lease("c", 10) == []  # the others wait
    core.ack("c", [g], value=10)
    (g,) = core.lease("c", 10)
    assert seqs([g]) == [2] and values_of(g) == [(10,)]
    core.ack("c", [g], value=11)
    (g,) = core.lease("c", 10)
    assert seqs([g]) == [3] and values_of(g) == [(11,)]
    core.ack("c", [g], value=12)
    assert [d["ok"] for d in lines(core)] == [True, True, True]
    empty(core)


def test_a_fan_in_waits_for_every_task_and_gets_their_values_in_order(core: Core) -> None:
    waiter(core)
    core.put("p", [call(i) for i in range(50)], task=F)  # one batch of 50
    after = tuple(f"p/{i}" for i in range(50, 0, -1))  # named last first
    core.put("p", [call([Awaited(k) for k in range(50)])], task=F, after=after)
    grants = core.lease("c", 49)
    core.ack("c", grants, value=None)  # each gives its payload back
    assert core.lease("c", 10)[0][2] == 50  # the 50th, not the fan-in yet
    assert core.broker.figures.task_state("p/51")["state"] == "blocked"
    assert core.broker.figures.task_state("p/51")["on"] == ["p/50"]


def test_a_diamond_and_values_that_are_packed(core: Core) -> None:
    waiter(core)
    core.put("p", [call(1)], task=F)  # p/1
    core.put("p", [call(Awaited(0))], task=F, after=("p/1",))  # p/2
    core.put("p", [call(Awaited(0))], task=F, after=("p/1",))  # p/3
    core.put("p", [call(Awaited(0), Awaited(1))], task=F, after=("p/2", "p/3"))  # p/4
    (g,) = core.lease("c", 10)
    core.ack("c", [g], value={1, 2})  # not a builtin one level deep: it comes back packed
    g2, g3 = core.lease("c", 10)
    (v,) = values_of(g2)[0]
    assert is_packed(v) and value_of(v) == {1, 2}
    core.ack("c", [g2], value="two")
    assert core.lease("c", 10) == []  # p/4 waits for p/3 still
    core.ack("c", [g3], value="three")
    (g4,) = core.lease("c", 10)
    assert values_of(g4) == [("two", "three")]
    core.ack("c", [g4])
    assert len(core.broker.state.graph.outcomes) == 0  # p/1's value went once p/2 and p/3 were done
    empty(core)


def test_a_failure_fails_what_waits_transitively_naming_it(core: Core) -> None:
    waiter(core)
    core.put("p", [call(1)], task=F)
    core.put("p", [call(Awaited(0))], task=F, after=("p/1",))
    core.put("p", [call(Awaited(0))], task=F, after=("p/2",))
    core.put("p", [call(Awaited(0))], task=F, after=("p/3",))
    core.put("p", [call(2)], task=F)  # p/5, waits for nothing: runs on
    g1, g5 = core.lease("c", 10)
    core.ack("c", [g1], fail={1}, raised=ZeroDivisionError("division by zero"))
    got = {d["id"]: d for d in lines(core)}
    assert got["p/1"]["error"] == "ZeroDivisionError: division by zero"
    assert got["p/2"]["error"] == "dependency p/1 failed: ZeroDivisionError: division by zero"
    assert got["p/3"]["error"] == "dependency p/2 failed: dependency p/1 failed: ZeroDivisionError: division by zero"
    assert got["p/4"]["error"] == "dependency p/3 failed: dependency p/1 failed: ZeroDivisionError: division by zero"
    assert got["p/4"]["consumer"] == "god" and not got["p/4"]["ok"]
    stats = core.broker.figures.stats()
    assert (stats["failed"], stats["queues"]["default"]["blocked"], stats["waiting"]) == (4, 0, 0)
    # the program gets the exception itself, and its traceback
    (mail,) = core.broker.intake.results_for("p", core.broker.state.run, 0, 100)[0][-1:]
    v = pickle.loads(mail[1][2])[0]
    assert v[2].startswith("dependency p/3 failed") and isinstance(pickle.loads(v[1]), ZeroDivisionError)
    core.ack("c", [g5])
    empty(core)


def test_what_waits_fails_with_the_error_in_its_dependencys_failure_fields(core: Core) -> None:
    # Given a task that waits for p/1, and p/1's failure whose line says another error
    waiter(core)
    core.put("p", [call(1)], task=F)
    core.put("p", [call(Awaited(0))], task=F, after=("p/1",))
    (g,) = core.lease("c", 10)
    failed = ((1, "OSError", None, "OSError: from the fields", "tb", "[]"),)
    ack = (g[G_PRODUCER], g[G_FIRST], g[G_LO], g[G_HI], '{"id": "p/1", "error": "from the line"}\n', failed, None)
    core.call("ack_many", "c", [ack]).result()
    # Then the task that waited fails naming the error of the fields
    assert {d["id"]: d["error"] for d in lines(core)}["p/2"] == "dependency p/1 failed: OSError: from the fields"


def test_a_retried_failure_that_then_succeeds_fails_nothing(core: Core) -> None:
    waiter(core)
    core.put("p", [call(1)], task=F, retry=(1, 0.0, 0.0, None))
    core.put("p", [call(Awaited(0))], task=F, after=("p/1",))
    (g,) = core.lease("c", 10)
    core.ack("c", [g], fail={1})
    assert lines(core) == [] and core.broker.figures.task_state("p/2")["state"] == "blocked"
    core.broker.reap()  # its retry is due
    (g,) = core.lease("c", 10)
    core.ack("c", [g], value=7)
    (g,) = core.lease("c", 10)
    assert values_of(g) == [(7,)]


def test_cancelling_a_task_cancels_what_waits_for_it(core: Core) -> None:
    waiter(core)
    core.put("p", [call(1)], task=F)
    core.put("p", [call(Awaited(0))], task=F, after=("p/1",))
    core.put("p", [call(Awaited(0))], task=F, after=("p/2",))
    assert core.call("cancel", ["p/1"], None, None).result()["waiting"] == 1
    got = {str(d["id"]): str(d["error"]) for d in lines(core)}
    assert got == {"p/1": CANCELLED, "p/2": f"dependency p/1 failed: {CANCELLED}",
                   "p/3": f"dependency p/2 failed: dependency p/1 failed: {CANCELLED}"}
    assert core.broker.figures.stats()["cancelled"] == 3
    empty(core)


def test_a_blocked_task_can_be_cancelled_and_what_it_waited_for_runs_on(core: Core) -> None:
    waiter(core)
    core.put("p", [call(1)], task=F)
    core.put("p", [call(Awaited(0))], task=F, after=("p/1",))
    assert core.call("cancel", ["p/2"], None, None).result()["waiting"] == 1
    assert core.broker.figures.stats()["queues"]["default"]["blocked"] == 0
    (g,) = core.lease("c", 10)
    core.ack("c", [g], value=1)
    assert [d["id"] for d in lines(core)] == ["p/2", "p/1"]
    empty(core)


def test_a_dead_letter_fails_what_waits_for_it(core: Core) -> None:
    waiter(core)
    core.hello("c")
    core.hello("w", parent="c")
    core.put("p", [call(1)], task=F)
    core.put("p", [call(Awaited(0))], task=F, after=("p/1",))
    for _ in range(core.broker.redelivery.max_attempts):
        (g,) = core.lease("w", 1)
        core.lost("w", ("p", 1, 1, 2))
        core.hello("w", parent="c")
    got = {str(d["id"]): str(d["error"]) for d in lines(core)}
    assert got["p/2"].startswith("dependency p/1 failed: dead letter: ")
    empty(core)


def test_waiting_for_a_task_done_before_takes_its_value_from_the_mailbox(core: Core) -> None:
    waiter(core)
    core.put("p", [call(1)], task=F)
    (g,) = core.lease("c", 10)
    core.ack("c", [g], value=5)  # its result waits in p's mailbox, not confirmed yet
    core.put("p", [call(Awaited(0))], task=F, after=("p/1",))
    (g,) = core.lease("c", 10)
    assert values_of(g) == [(5,)]


def test_what_cannot_be_waited_for_fails_at_once_saying_why(core: Core) -> None:
    waiter(core)
    core.put("p", [call(1)], task=F, first=1)
    core.put("p", [call(Awaited(0))], task=F, after=("q/9",))  # god never had it
    core.put("p", [call(2)], task=F)  # p/3
    g1, g3 = core.lease("c", 10)
    core.ack("c", [g1], fail={1})
    run = core.broker.state.run
    core.broker.intake.results_for("p", run, 0, 100)
    core.broker.intake.results_for("p", run, 100, 100)  # confirmed: god keeps the values no more
    core.ack("c", [g3], value=3)
    core.broker.intake.results_for("p", run, 100, 100)
    core.put("p", [call(Awaited(0))], task=F, after=("p/1",))  # failed before
    core.put("p", [call(Awaited(0))], task=F, after=("p/3",))  # done, value let go
    core.put("p", [9], after=("p/3",))  # not a call: it needs no value, so it runs
    got = {str(d["id"]): str(d["error"]) for d in lines(core)}
    assert got["p/2"].startswith("dependency q/9: god never had this task")
    assert got["p/4"] == "dependency p/1 failed: ValueError: no"
    assert got["p/5"].startswith("dependency p/3 finished before this task came, and god no longer has its value")
    (g,) = core.lease("c", 10)
    assert payloads_of(g) == [9]
    core.ack("c", [g])
    empty(core)


def test_a_put_that_waits_that_is_not_a_call_keeps_its_payload(core: Core) -> None:
    core.put("a", ["x", "y"])
    core.put("b", ["first", "second"], after=("a/1", "a/2"))
    core.ack("c", core.lease("c", 1))
    (g,) = core.lease("c", 10)
    assert seqs([g]) == [2] and core.broker.figures.stats()["blocked"] == 2  # b waits for a/2 still
    core.ack("c", [g])
    (g,) = core.lease("c", 10)
    assert seqs([g]) == [1, 2] and payloads_of(g) == ["first", "second"]


def test_blocked_tasks_count_against_capacity() -> None:
    small = Core(capacity=3)
    small.put("p", [1])
    assert small.put("p", [2, 3], after=("p/1",)).result() == 2
    assert small.put("p", [4]).result() == 0  # full: one waits, two are blocked
    small.close()


def test_the_graph_survives_a_restart(tmp_path: Path) -> None:
    j, _, core = opened(tmp_path / "j.sqlite3")
    waiter(core)
    core.settle(core.put("p", [call(1)], task=F))
    core.settle(core.put("p", [call(Awaited(0))], task=F, after=("p/1",)))
    core.settle(core.put("p", [call(Awaited(0), Awaited(1))], task=F, after=("p/2", "p/1")))
    (g,) = core.lease("c", 10)
    core.ack("c", [g], value=4)
    Recorder(core.broker, results_path=None, journal=j).take()  # journals p/1 as done
    j, r, core = restarted(j)
    assert r.outcomes.keys() == {"p/1"}
    (g,) = core.lease("c", 10)
    assert seqs([g]) == [2] and values_of(g) == [(4,)]
    core.ack("c", [g], value=5)
    (g,) = core.lease("c", 10)
    assert values_of(g) == [(5, 4)]
    core.ack("c", [g], value=6)
    empty(core)
    Recorder(core.broker, results_path=None, journal=j).take()
    j, r, core = restarted(j)
    assert r.outcomes == {}  # let go with the last task that used them
    j.close()


def test_values_are_let_go_as_the_graph_finishes() -> None:
    core = Core(capacity=10_000)
    waiter(core)
    for k in range(100):  # a hundred fan-ins of ten
        first = 1 + k * 11
        core.put("p", [call(i) for i in range(10)], task=F, first=first)
        core.put("p", [call(*[Awaited(i) for i in range(10)])], task=F, first=first + 10,
                 after=tuple(f"p/{first + i}" for i in range(10)))
    assert core.broker.figures.stats()["blocked"] == 100
    while grants := core.lease("c", 50):
        core.ack("c", grants, value=1)
    assert len(lines(core)) == 1100
    empty(core)
    assert not core.broker.state.batches
    core.close()


def test_blocked_tasks_are_shown_in_status_metrics_and_god_task(core: Core) -> None:
    core.put("p", [1])
    core.put("p", [2, 3], after=("p/1",), queue="q")
    stats = core.broker.figures.stats()
    assert any(line.startswith("  queue q:") and "blocked 2" in line for line in status_text("here", stats).splitlines())
    text = render(stats, 0.0)
    assert 'god_tasks{state="blocked"} 2' in text and 'god_queue_tasks{queue="q",state="blocked"} 2' in text
    assert core.broker.figures.task_state("p/3") == {"id": "p/3", "queue": "q", "task": None, "priority": 0,
                                                    "after": ["p/1"], "state": "blocked", "on": ["p/1"]}


def test_tasks_put_after_others_wait_again_after_a_restart_and_a_failure_still_fails_them(tmp_path: Path) -> None:
    j, _, core = opened(tmp_path / "j.sqlite3")
    core.settle(core.put("a", ["x", "y"]))
    core.settle(core.put("b", ["one"], after=("a/1",)))
    core.settle(core.put("c", ["two"], after=("a/2",)))
    g = core.lease("w", 10)
    core.ack("w", g, fail={2}, only=(1, 3))  # a/1 done, a/2 failed
    # When god restarts before their results lines are written (so a/1 and a/2 run again)
    j, _, core = restarted(j)
    # Then b, whose a/1 has its outcome journaled, is served (a/1's second result changes nothing
    # for it: at least once), and c waits for a/2 again, which fails it again
    assert core.broker.figures.stats()["blocked"] == 1
    g = core.lease("w", 10)
    assert [(x[0], x[2]) for x in g] == [("a", 1), ("b", 1)] and payloads_of(g[1]) == ["one"]
    core.ack("w", g, fail={2})
    got = {str(d["id"]): d for d in lines(core)}
    assert got["c/1"]["error"] == "dependency a/2 failed: ValueError: no" and got["b/1"]["ok"]
    empty(core)
    j.close()
