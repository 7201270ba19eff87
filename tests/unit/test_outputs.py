"""Tasks' output at god (god/rules/outputs.py, god/store/outputs.py), on the path production
uses (API, waits, broker) with a fake clock: kept per task (its last part) and in all, handed
to the owning program only, before the task's result, bounded while the program is slow;
with a table of principals, from the lease holder only."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from god.store.outputs import Outputs
from tests.support.core import Core


@pytest.fixture
def core() -> Iterator[Core]:
    c = Core(capacity=100, lease_s=5.0, max_attempts=3)
    yield c
    c.close()


def producer_hello(core: Core, name: str, output: bool = True) -> str:
    return str(core.call("hello", name, "producer", {"results": True, "output": output}).result()["run"])


def test_lines_reach_the_owning_program_before_the_result_and_no_other(core: Core) -> None:
    run = producer_hello(core, "p")
    producer_hello(core, "q")
    core.put("p", [1, 2]).result()
    grants = core.lease("c", 2)
    assert core.call("output", "c", [("p", 1, [("out", "one\n")], None), ("p", 2, [("err", "two\n")], (1.0, 2.0))]
                     ).result() == 2
    core.ack("c", grants)
    posted, gone, lines = core.call("results_for", "p", run, 0, 10, 0.0, None, 0).result()
    assert [item for _, item in lines] == [(1, "c", [("out", "one\n")], None), (2, "c", [("err", "two\n")], (1.0, 2.0))]
    assert [p[1][:2] for p in posted] == [(1, 3)]
    # confirmed lines are not handed over again; the other program gets none
    assert core.call("results_for", "p", run, 1, 10, 0.0, None, lines[-1][0]).result()[2] == []
    assert core.call("results_for", "q", run, 0, 10, 0.0, None, 0).result()[2] == []
    # a program that did not ask for lines gets the results as before
    assert len(core.call("results_for", "p", run, 1, 10).result()) == 2


def test_a_fetch_that_waits_is_answered_by_lines(core: Core) -> None:
    run = producer_hello(core, "p")
    core.put("p", [1]).result()
    core.lease("c", 1)
    waiting = core.call("results_for", "p", run, 0, 10, 5.0, None, 0)
    core.step()
    assert not waiting.done
    core.call("output", "c", [("p", 1, [("out", "hi\n")], None)]).result()
    core.step()
    assert waiting.done and [item[2] for _, item in waiting.result()[2]] == [[("out", "hi\n")]]


def test_god_keeps_each_task_s_last_part_and_bounds_them_all() -> None:
    o = Outputs(task_keep=20, all_keep=50)
    o.keep("p", 1, "c", [("out", "".join(f"line{i}\n" for i in range(10)))], None)
    t = o.tail("p", 1)
    assert t is not None and t["lines"] == [["out", "line7"], ["out", "line8"], ["out", "line9"]]
    assert t["cut"] == 60 - 18 and t["consumer"] == "c"
    for seq in range(2, 6):
        o.keep("p", seq, "c", [("out", "x" * 9 + "\n")], (seq, 10.0))
    assert o.tail("p", 1) is None  # the least recently written let go first
    assert o.tail("p", 5) == {"lines": [["out", "x" * 9]], "cut": 0, "progress": [5, 10.0], "consumer": "c"}


def test_a_slow_program_gets_a_note_of_the_lines_dropped_for_it() -> None:
    o = Outputs(box_keep=200)
    o.open("p")
    assert o.post("p", (1, "c", [("out", "a" * 99 + "\n")], None))
    assert not o.post("p", (2, "c", [("out", "b\n" * 60)], None))  # over: dropped, counted
    taken, more = o.take("p", 0)
    assert len(taken) == 1 and not more
    o.take("p", taken[-1][0])  # confirmed: room again
    assert o.post("p", (3, "c", [("out", "c\n")], None))
    (_, item), = o.take("p", taken[-1][0])[0]
    assert item[2][0] == ("note", "60 lines dropped at god: the program took them more slowly than its tasks "
                                  "wrote them\n")
    assert not o.post("q", (1, "c", [("out", "x\n")], None))  # a program that did not ask: none kept for it


def test_with_a_table_lines_count_only_from_the_lease_holder() -> None:
    core = Core(capacity=100, lease_s=5.0, max_attempts=3, leased_only=True)
    try:
        run = producer_hello(core, "p")
        core.put("p", [1]).result()
        core.lease("a", 1)
        assert core.call("output", "b", [("p", 1, [("out", "forged\n")], None)]).result() == 0
        assert core.call("output", "a", [("p", 1, [("out", "real\n")], None)]).result() == 1
        lines = core.call("results_for", "p", run, 0, 10, 0.0, None, 0).result()[2]
        assert [item[1:3] for _, item in lines] == [("a", [("out", "real\n")])]
        assert core.broker.figures.stats()["unleased"] == 1
        assert core.broker.figures.task_state("p/1")["output"]["lines"] == [["out", "real"]]
    finally:
        core.close()


def test_bad_output_items_are_refused(core: Core) -> None:
    for bad in ([("p", "1", [], None)], [("p", 1, [("stdin", "x\n")], None)], [("p", 1, [], (1, "x"))], "x"):
        with pytest.raises(ValueError, match="output"):
            core.call("output", "c", bad).result()
