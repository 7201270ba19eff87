"""The progress line (producer/progress_line.py): its figures, and where it is drawn."""

from __future__ import annotations

import io
import sys
import types
from typing import Any

import pytest

from producer.progress_line import ProgressLine

pytestmark = pytest.mark.timeout(10)


def test_the_line_says_done_failed_in_flight_not_sent_rate_and_time_left() -> None:
    clock = [0.0]
    out = io.StringIO()
    line = ProgressLine("map of m:f", 100, out, now=lambda: clock[0])
    line.add(sent=40)
    clock[0] = 2.0
    line.add(done=18, failed=2)
    assert line.line() == ("map of m:f: 20/100, 18 done, 2 failed, 20 in flight, 60 not sent, 10/s, 0:00:08 left, "
                           "0:00:02 in")
    line.draw(last=True)
    assert out.getvalue().endswith("0:00:02 in\x1b[K\n") and out.getvalue().startswith("\r")


def test_what_calls_in_flight_report_is_shown_on_average() -> None:
    reports: list[tuple[float, float | None]] = [(1, 4), (3, 4), (7, None)]  # a count without a total: not a share
    line = ProgressLine("map of m:f", 10, io.StringIO(), now=lambda: 1.0, reports=lambda: reports)
    line.add(sent=3)
    assert "3 in flight (2 say 50% through)" in line.line()
    reports[:] = [(9, 10)]
    assert "3 in flight (1 says 90% through)" in line.line()
    reports.clear()
    assert "3 in flight," in line.line()


def test_in_a_notebook_it_is_one_text_output_updated_in_place(monkeypatch: pytest.MonkeyPatch) -> None:
    shown: list[Any] = []

    class Handle:
        def update(self, text: str) -> None:
            shown.append(("update", text))

    def display(text: str, display_id: bool) -> Handle:
        shown.append(("display", text))
        return Handle()

    ipython = types.ModuleType("IPython")
    ipython_display = types.ModuleType("IPython.display")
    ipython_display.display = display  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "ipykernel", types.ModuleType("ipykernel"))
    monkeypatch.setitem(sys.modules, "IPython", ipython)
    monkeypatch.setitem(sys.modules, "IPython.display", ipython_display)
    line = ProgressLine("calls", 2, None, now=lambda: 1.0)
    line.add(sent=2, done=2)
    line.draw(last=True)
    assert [kind for kind, _ in shown] == ["display", "update", "update"]
    assert shown[-1][1].startswith("calls: 2/2, 2 done") and all("\r" not in text for _, text in shown)
