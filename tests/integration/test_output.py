"""A task's output comes home: what it writes to stdout and stderr, its logging records and
warnings reach the program that submitted it (and no other), per task, in order, while it
runs; god keeps the last part for ``god task ID --output``; a flood is cut with a note."""

from __future__ import annotations

import io
import re
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.support.gods import God, addr_env, executor_on
from tests.support.helpers import Proc, wait_until, write_tasks
from tests.support.tasks import chatter, report_until, speak, speak_in_turns, speak_in_turns_async, speak_until

pytestmark = pytest.mark.timeout(90)

MARK = re.compile(r"^\((\w+) (\S+/\d+) on (\S+)\)( \[note\])? (.*)$")


class Lines(io.StringIO):
    """An output= file that tests can read while the executor writes (from its thread)."""

    def __init__(self) -> None:
        super().__init__()
        self.lock = threading.Lock()

    def write(self, s: str) -> int:
        with self.lock:
            return super().write(s)

    def parsed(self) -> list[tuple[str, str, str, bool, str]]:
        with self.lock:
            text = self.getvalue()
        out = []
        for line in text.splitlines():
            m = MARK.match(line)
            assert m is not None, line
            out.append((m[1], m[2], m[3], bool(m[4]), m[5]))
        return out

    def of(self, tid: str) -> list[str]:
        return [text for _, t, _, _, text in self.parsed() if t == tid]


def test_every_kind_of_output_comes_home_marked_and_in_order(
    god: God, spawn: Callable[..., Proc], env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    spawn("consumer", "--processes", "1", env_extra=addr_env(god))
    lines = Lines()
    with executor_on(god, env, monkeypatch, output=lines) as ex:
        futures = [ex.submit(speak, n) for n in range(3)]
        assert [f.result(timeout=30) for f in futures] == [0, 1, 2]
        # (a task's lines come before its result: they are there once the result is)
        for n, f in enumerate(futures):
            got = lines.of(f.task_id)
            assert got[0] == f"out {n} a" and got[1] == f"err {n}"
            assert "log " + str(n) in got[2]  # logging's record, as the worker's logging writes it
            assert f"UserWarning: warn {n}" in got[3]
            assert got[4] == f"out {n} b, in two writes"
            assert len(got) == 5
    assert {p[0] for p in lines.parsed()} == {"speak"}  # marked with the function ...
    assert len({p[2] for p in lines.parsed()}) == 1  # ... and the consumer


@pytest.mark.parametrize("fn", [speak_in_turns, speak_in_turns_async], ids=["threads", "coroutines"])
def test_tasks_side_by_side_in_one_worker_have_their_own_lines(
    god: God, spawn: Callable[..., Proc], env: dict[str, str], monkeypatch: pytest.MonkeyPatch,
    fn: Callable[[int], int]
) -> None:
    spawn("consumer", "--processes", "1", "--concurrency", "8", env_extra=addr_env(god))
    lines = Lines()
    with executor_on(god, env, monkeypatch, output=lines) as ex:
        futures = [ex.submit(fn, n) for n in range(8)]
        assert sorted(f.result(timeout=30) for f in futures) == list(range(8))
    for n, f in enumerate(futures):
        assert lines.of(f.task_id) == [f"{n}:{i}" for i in range(5)]


def test_a_long_task_s_lines_come_while_it_runs(
    god: God, spawn: Callable[..., Proc], env: dict[str, str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    spawn("consumer", "--processes", "1", env_extra=addr_env(god))
    lines = Lines()
    gate = tmp_path / "gate"
    with executor_on(god, env, monkeypatch, output=lines) as ex:
        f = ex.submit(speak_until, str(gate))
        wait_until(lambda: lines.of(f.task_id or "") == ["started"], 30, "the running task's first line")
        assert not f.done()
        gate.touch()
        assert f.result(timeout=30) == str(gate)
        assert lines.of(f.task_id or "") == ["started", "ended"]


def test_only_the_program_that_owns_a_task_sees_its_lines(
    god: God, spawn: Callable[..., Proc], env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    spawn("consumer", "--processes", "2", env_extra=addr_env(god))
    mine, theirs = Lines(), Lines()
    with executor_on(god, env, monkeypatch, output=mine) as a, executor_on(god, env, monkeypatch, output=theirs) as b:
        fa = [a.submit(speak, n) for n in range(5)]
        fb = [b.submit(speak_in_turns, n) for n in range(5)]
        for f in fa + fb:
            f.result(timeout=30)
    assert {p[1] for p in mine.parsed()} == {f.task_id for f in fa}
    assert {p[1] for p in theirs.parsed()} == {f.task_id for f in fb}


def test_a_flood_is_cut_with_a_note_and_god_keeps_the_last_part_after_the_program_is_gone(
    god: God, spawn: Callable[..., Proc], env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    spawn("consumer", "--processes", "1", env_extra=addr_env(god))
    lines = Lines()
    with executor_on(god, env, monkeypatch, output=lines) as ex:
        f = ex.submit(chatter, 20_000)
        assert f.result(timeout=30) == 20_000
    got = [p for p in lines.parsed() if p[1] == f.task_id]
    shown = [text for *_, note, text in got if not note]
    assert 1000 <= len(shown) < 5000  # the first thousand at once, then a hundred a second
    assert shown[:1000] == [f"line {i}" for i in range(1000)]
    notes = [text for *_, note, text in got if note]
    assert len(notes) == 1 and re.match(r"[\d,]+ lines dropped: the task wrote more than 1,000 at once", notes[0])
    assert int(notes[0].split()[0].replace(",", "")) + len(shown) == 20_000
    # The program is gone; god still has the task's last lines, the note among them
    cli = spawn("god", "task", f.task_id or "", "--output", env_extra=addr_env(god))
    assert cli.wait() == 0, cli.text()
    kept = "\n".join(cli.out)
    assert re.search(rf"output on \S+ \({len(shown) + 1} lines\):", kept), kept
    assert cli.out.index("  line 0") < cli.out.index(f"  {shown[-1]}") and any(line.startswith("  [note] ") for line in cli.out)


def test_no_capture_leaves_output_in_the_consumer_s_log(
    god: God, spawn: Callable[..., Proc], env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    consumer = spawn("consumer", "--processes", "1", "--no-capture", env_extra=addr_env(god))
    lines = Lines()
    with executor_on(god, env, monkeypatch, output=lines) as ex:
        assert ex.submit(speak, 7).result(timeout=30) == 7
    assert lines.parsed() == []
    wait_until(lambda: "out 7 a" in consumer.text(), 30, "the line in the consumer's own output")


def test_a_task_s_report_reaches_its_future_the_progress_line_and_god(
    god: God, spawn: Callable[..., Proc], env: dict[str, str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    spawn("consumer", "--processes", "2", env_extra=addr_env(god))
    gate, line = tmp_path / "gate", Lines()
    with executor_on(god, env, monkeypatch) as ex:
        f = ex.submit(report_until, str(gate))
        wait_until(lambda: f.progress == (1.0, 4.0), 30, "the running task's report on its future")
        cli = spawn("god", "task", f.task_id or "", env_extra=addr_env(god))
        assert cli.wait() == 0 and re.search(r": running on \S+ .*; reported 1 of 4$", cli.out[0]), cli.text()
        mapped = threading.Thread(target=lambda: list(ex.map(report_until, [str(gate)], progress=line)))
        mapped.start()
        wait_until(lambda: "1 says 25% through" in line.getvalue(), 30, "the report in the map's progress line")
        gate.touch()
        mapped.join(30)
        assert f.result(timeout=30) == str(gate)
    assert f.progress == (3.0, 4.0)


def test_a_cli_producer_that_waits_shows_its_tasks_lines(
    god: God, spawn: Callable[..., Proc], tmp_path: Path
) -> None:
    e = addr_env(god)
    spawn("consumer", "--processes", "1", "--task", "tests.support.tasks:speak", env_extra=e)
    p = spawn("producer", "--from", str(write_tasks(tmp_path / "t.jsonl", [5, 6])), "--wait", env_extra=e)
    assert p.wait(30) == 0, p.text()
    marked = [MARK.match(line) for line in p.err]
    got = {(m[2].rpartition("/")[2], m[5]) for m in marked if m is not None and m[1] == "task"}  # (the consumer's own task: unnamed here)
    assert {("1", "out 5 a"), ("1", "err 5"), ("2", "out 6 a"), ("2", "out 6 b, in two writes")} <= got
