"""Helpers for tests that run real god, producer and consumer processes."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
POLL_S = 0.02


def wait_until(pred: Callable[[], Any], timeout: float, what: str = "condition") -> Any:
    """Poll pred until it returns something truthy; fail the test after timeout seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = pred()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(POLL_S)


class Proc:
    """A role running as a real process, its output collected by reader threads."""

    def __init__(self, args: list[str], env: dict[str, str], *, stdin: Any = subprocess.DEVNULL,
                 new_session: bool = False, program: str | None = None, cwd: Path | None = None) -> None:
        """Run ``python ARGS`` (a role: ``["-m", "god", ...]``), or ``program ARGS``; in the
        repository, or in cwd."""
        self.args = args
        self.env = env
        self.name = Path(program).name if program else args[1] if args[0] == "-m" else Path(args[0]).name
        self.new_session = new_session
        self.popen = subprocess.Popen(
            [program or sys.executable, *args], cwd=cwd or REPO, env=env, stdin=stdin, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, text=True, start_new_session=new_session,
        )
        self.out: list[str] = []
        self.err: list[str] = []
        self._readers = [
            threading.Thread(target=self._read, args=(self.popen.stdout, self.out), daemon=True),
            threading.Thread(target=self._read, args=(self.popen.stderr, self.err), daemon=True),
        ]
        for t in self._readers:
            t.start()

    @staticmethod
    def _read(stream: Any, into: list[str]) -> None:
        with stream:
            for line in stream:
                into.append(line.rstrip("\n"))

    @property
    def pid(self) -> int:
        return self.popen.pid

    def wait_for(self, pattern: str, timeout: float = 15, stream: str = "out") -> re.Match[str]:
        """Wait for a line matching pattern on stdout (or stderr); returns the match."""
        lines = self.out if stream == "out" else self.err
        rx = re.compile(pattern)

        def found() -> re.Match[str] | None:
            for line in list(lines):
                m = rx.search(line)
                if m:
                    return m
            if self.popen.poll() is not None:
                self.drain()
                raise AssertionError(f"{self.name} exited {self.popen.returncode} before {pattern!r}:\n{self.text()}")
            return None

        return wait_until(found, timeout, f"{pattern!r} from {self.name}")  # type: ignore[no-any-return]

    def drain(self) -> None:
        """Let the reader threads collect what the process wrote before it exited."""
        for t in self._readers:
            t.join(5)

    def wait(self, timeout: float = 30) -> int:
        """Wait for exit; returns the exit code with all output collected."""
        code = self.popen.wait(timeout)
        self.drain()
        return code

    def text(self) -> str:
        return "\n".join(self.out + self.err)

    def _own_group(self) -> bool:
        return bool(self.new_session)

    def signal(self, sig: int) -> None:
        if self.popen.poll() is None:
            os.kill(self.popen.pid, sig)

    def stop(self, *, asked: bool = False) -> None:
        """Terminate, wait, kill: used in teardown, also when the test failed. ``asked``: it was
        sent SIGTERM already (a second one would be a cold stop)."""
        # A process started in its own session may have left workers behind: end the group.
        group = self._own_group()
        for sig in (signal.SIGTERM, signal.SIGKILL):
            if self.popen.poll() is None:
                if not (asked and sig == signal.SIGTERM):
                    self.popen.send_signal(sig)
                try:
                    self.popen.wait(5)
                except subprocess.TimeoutExpired:
                    sys.stderr.write(f"DEBUG {self.args} did not stop on {sig}\n{self.text()}\n")
        if group:
            try:
                os.killpg(self.popen.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.drain()


def read_results(path: Path) -> list[dict[str, Any]]:
    """The results file as a list of records (empty when it does not exist yet)."""
    if not path.exists():
        return []
    text = path.read_text()
    text = text[: text.rfind("\n") + 1]  # a line god is writing right now is not whole yet
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def wait_for_results(path: Path, n: int, timeout: float = 30, *, distinct: bool = True) -> list[dict[str, Any]]:
    """Wait until the results file holds n results (for n distinct task ids); returns all records."""

    def enough() -> list[dict[str, Any]] | None:
        records = read_results(path)
        count = len({r["id"] for r in records}) if distinct else len(records)
        return records if count >= n else None

    return wait_until(enough, timeout, f"results for {n} tasks in {path.name}")  # type: ignore[no-any-return]


def write_tasks(path: Path, payloads: list[Any]) -> Path:
    """Write payloads as a JSON-lines task file for ``producer --from``; returns the path."""
    path.write_text("".join(json.dumps(p) + "\n" for p in payloads))
    return path


def assert_clean_failure(p: Proc, code: int, says: str) -> None:
    """p exits with code, saying says, without a traceback."""
    assert p.wait() == code, p.text()
    text = p.text()
    assert says in text, text
    assert "Traceback" not in text, text


def proc_status(pid: int) -> dict[str, int]:
    """VmRSS (kB) and Threads of a process, from /proc."""
    fields = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines())
    return {"rss_kb": int(fields["VmRSS"].split()[0]), "threads": int(fields["Threads"])}


def puts_and_results(master: Proc) -> tuple[list[int], list[str]]:
    """The numbers the tutorial's master put, and the results it printed."""
    puts = [int(m.group(1)) for line in master.out if (m := re.match(r"Put task (\d+)", line))]
    results = [line.removeprefix("Result: ") for line in master.out if line.startswith("Result: ")]
    return puts, results
