"""A worker's capture of its tasks' output (consumer/output.py), with a fake clock: lines per
task, partial lines, carriage returns, long lines, the flood limit and its note, what a
running task sends, and report()."""

from __future__ import annotations

import pytest

from consumer.output import BURST, RATE, Capture, Key
from shared import output
from shared.output import LINE_MAX


class Clock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


@pytest.fixture
def cap() -> tuple[Capture, Clock, list[Key | None]]:
    clock, who = Clock(), [("p", 1)]
    return Capture(lambda: who[0], clock), clock, who


def test_each_task_has_its_own_lines_in_order_and_writes_outside_tasks_pass(cap) -> None:
    c, _, who = cap
    assert c.write("out", "a1\na2")
    who[0] = ("p", 2)
    assert c.write("err", "b1\n")
    who[0] = ("p", 1)
    assert c.write("out", " more\n") and c.write("err", "a3\n")
    who[0] = None
    assert not c.write("out", "nobody's\n")
    assert c.take() == [("p", 1, [("out", "a1\na2 more\n"), ("err", "a3\n")], None),
                        ("p", 2, [("err", "b1\n")], None)]
    assert c.take() == [] and not c.pending


def test_take_sends_whole_lines_of_running_tasks_and_the_rest_at_their_end(cap) -> None:
    c, _, who = cap
    c.write("out", "whole\npart")
    assert c.take(running=lambda k: True) == [("p", 1, [("out", "whole\n")], None)]
    c.write("out", "ial")
    assert c.take(running=lambda k: True) == []
    assert c.take(running=lambda k: False) == [("p", 1, [("out", "partial\n")], None)]
    assert not c.pending


def test_the_streamer_takes_only_lines_that_waited(cap) -> None:
    c, clock, _ = cap
    c.write("out", "x\n")
    assert c.take(older_than=0.5) == []
    clock.t += 0.6
    assert c.take(older_than=0.5) == [("p", 1, [("out", "x\n")], None)]


def test_a_carriage_return_keeps_what_follows_it_and_a_long_line_is_cut(cap) -> None:
    c, _, _ = cap
    c.write("err", "10%\r50%\r100%\n")
    c.write("out", "y" * (LINE_MAX + 10) + "\n")
    (item,) = c.take()
    assert item[2][0] == ("err", "100%\n")
    assert item[2][1] == ("out", "y" * LINE_MAX + "... (10 characters cut)\n")


def test_a_flood_is_cut_and_counted_with_one_note_at_the_end(cap) -> None:
    c, clock, _ = cap
    c.write("out", "".join(f"{i}\n" for i in range(BURST + 500)))
    clock.t += 2  # room for 2 * RATE more
    c.write("out", "".join(f"late {i}\n" for i in range(500)))
    (item,) = c.take()
    text = "".join(t for s, t in item[2] if s == "out")
    assert text.count("\n") == BURST + 2 * RATE
    assert item[2][-1] == ("note", f"{500 + 500 - int(2 * RATE):,} lines dropped: the task wrote more than "
                                   f"{BURST:,} at once or {RATE:g} a second\n")


def test_report_goes_with_the_task_s_lines_and_nowhere_outside_a_task(cap) -> None:
    c, _, who = cap
    output.set_reporter(c.report)
    try:
        output.report(3, 10)
        output.report(4, 10)
        assert c.take() == [("p", 1, [], (4.0, 10.0))]
        who[0] = None
        output.report(5)
        assert c.take() == []
        with pytest.raises(ValueError, match="done is a number"):
            output.report(float("nan"))
    finally:
        output.set_reporter(None)
