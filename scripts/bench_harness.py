"""What scripts/bench.py's sections run on: god and its roles started with this run's key on a
free loopback port, the CPU seconds of processes, files of numbers, a relay for far links,
percentiles."""

from __future__ import annotations

import json
import os
import secrets
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from shared.client import GodClient  # noqa: E402
from shared.config import Settings  # noqa: E402
from tests.support.relay import Relay  # noqa: E402  (a TCP relay that can hold bytes, as a far link does)

KEY = secrets.token_hex(16)
WARMUP = 10  # round trips not counted: the worker starting and connecting, caches filling
PY = sys.executable


class God:
    """God, started with this run's key on a free loopback port; its consumers and producers."""

    def __init__(self, work: Path, *args: str, env: dict[str, str] | None = None, principals: bool = False) -> None:
        """``principals``: god has a table of principals (god --keys): producers and consumers
        are started with keys of their own roles (this run's key is an operator's)."""
        self.work = work
        self.results = work / f"results-{secrets.token_hex(3)}.jsonl"
        self.env = {**os.environ, "GOD_AUTHKEY": KEY, "XDG_STATE_HOME": str(work / "state"), "PYTHONPATH": str(REPO),
                    **(env or {})}
        self.procs: list[subprocess.Popen[bytes]] = []
        self.keys: dict[str, str] = {}  # role -> its key, with a table
        if principals:
            self.keys = {"producer": secrets.token_hex(16), "consumer": secrets.token_hex(16)}
            table = self.results.with_suffix(".keys.json")
            table.write_text(json.dumps({"principals": [
                {"name": "bench", "key": KEY, "roles": ["operator", "viewer"]},
                *({"name": f"bench-{role}", "key": key, "roles": [role]} for role, key in self.keys.items())]}))
            table.chmod(0o600)
            args = ("--keys", str(table), *args)
        if "--no-journal" not in args and "--journal" not in args:
            # Its own: on port 0 every god of the run would take the same default journal, and
            # recover what the god before it left (the far rows' puts, say, into the io rows)
            args = ("--journal", str(self.results.with_suffix(".journal")), *args)
        self.proc = self.spawn("god", "--address", "127.0.0.1:0", "--quiet", "--plain", "--results",
                               str(self.results), *args, stdout=subprocess.PIPE)
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline().decode()
        self.address = line.split()[2]
        self.env["GOD_ADDRESS"] = self.address
        host, port = self.address.rsplit(":", 1)
        self.settings = Settings((host, int(port)), KEY.encode(), "bench", give_up_after=30)

    def spawn(self, role: str, *args: str, stdout: Any = subprocess.DEVNULL) -> subprocess.Popen[bytes]:
        env = {**self.env, "GOD_AUTHKEY": self.keys[role]} if role in self.keys else self.env
        p = subprocess.Popen([PY, "-m", role, *args], cwd=REPO, env=env, stdout=stdout,
                             stderr=subprocess.DEVNULL)
        self.procs.append(p)
        return p

    def stats(self) -> dict[str, Any]:
        c = GodClient(self.settings, name="bench", role="status")
        try:
            return dict(c.stats())
        finally:
            c.close()

    def wait_consumers(self, n: int) -> None:
        """Wait until n consumers are connected and every process started here has settled
        (64 workers importing on 2 cores take seconds of CPU: not part of a run)."""
        _until(lambda: self.stats()["consumers_alive"] >= n, 120, f"{n} consumers")
        last = _tree_cpu(os.getpid())
        for _ in range(600):
            time.sleep(0.25)
            now = _tree_cpu(os.getpid())
            if now - last < 3:  # clock ticks in a quarter second, all processes together
                return
            last = now

    def rss_kb(self) -> dict[str, int]:
        fields = dict(line.split(":", 1) for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines())
        return {"rss_kb": int(fields["VmRSS"].split()[0]), "peak_kb": int(fields["VmHWM"].split()[0])}

    def close(self) -> None:
        # Newest first, each gone before the next: consumers drain while god still answers
        # (stopped together, a consumer's last ack waited 10 s for a god already gone).
        for p in reversed(self.procs):
            if p.poll() is None:
                p.terminate()
            try:
                p.wait(15)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()


@contextmanager
def god(work: Path, *args: str, env: dict[str, str] | None = None, principals: bool = False) -> Iterator[God]:
    """God with args (and env, for it and every role it spawns; ``principals``: as God's),
    stopped afterwards."""
    g = God(work, *args, env=env, principals=principals)
    try:
        yield g
    finally:
        g.close()


def _tree_cpu(root: int) -> int:
    """CPU clock ticks used so far by every process under root."""
    parent: dict[int, int] = {}
    ticks: dict[int, int] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        pid = int(stat.parent.name)
        parent[pid], ticks[pid] = int(fields[1]), int(fields[11]) + int(fields[12])
    total, todo = 0, [root]
    children: dict[int, list[int]] = {}
    for pid, ppid in parent.items():
        children.setdefault(ppid, []).append(pid)
    while todo:
        pid = todo.pop()
        for child in children.get(pid, ()):
            total += ticks.get(child, 0)
            todo.append(child)
    return total


def _children(root: int) -> list[int]:
    """Every process under root."""
    kids: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            ppid = int(stat.read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        kids.setdefault(ppid, []).append(int(stat.parent.name))
    out, todo = [], [root]
    while todo:
        for child in kids.get(todo.pop(), ()):
            out.append(child)
            todo.append(child)
    return out


def cpu_s(pids: list[int]) -> float:
    """Seconds on a CPU so far of these processes, every thread (schedstat: nanoseconds)."""
    total = 0
    for pid in pids:
        for task in Path(f"/proc/{pid}/task").glob("*"):
            try:
                total += int((task / "schedstat").read_text().split()[0])
            except (OSError, IndexError, ValueError):
                pass
    return total / 1e9


def wait_cpu_s(p: subprocess.Popen[bytes]) -> float:
    """Wait for a process to exit; the CPU seconds it used (its own, children excluded)."""
    _, status, usage = os.wait4(p.pid, 0)
    p.returncode = os.waitstatus_to_exitcode(status)
    return usage.ru_utime + usage.ru_stime


def _until(pred: Callable[[], Any], timeout: float, what: str, poll: float = 0.02) -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            raise SystemExit(f"bench: timed out waiting for {what}")
        time.sleep(poll)


class LineCounter:
    """Counts the lines of a growing file, reading only what is new."""

    def __init__(self, path: Path) -> None:
        self.path, self.count, self._pos = path, 0, 0
        self.first: tuple[float, int] | None = None  # (when, count) lines were first seen

    def __call__(self) -> int:
        if self.path.exists():
            with open(self.path, "rb") as f:
                f.seek(self._pos)
                chunk = f.read()
            self._pos += len(chunk)
            self.count += chunk.count(b"\n")
            if self.first is None and self.count:
                self.first = (time.perf_counter(), self.count)
        return self.count


def _numbers(work: Path, n: int) -> Path:
    """A file of the numbers 0..n-1 as JSON lines (made once per run)."""
    src = work / f"tasks-{n}.jsonl"
    if not src.exists():
        src.write_text("".join(f"{i}\n" for i in range(n)))
    return src


@contextmanager
def relayed(g: God, rtt_s: float) -> Iterator[str]:
    """The address of a relay to g that holds every byte rtt_s/2 each way (none with 0)."""
    host, port = g.address.rsplit(":", 1)
    relay = Relay((host, int(port)), delay_s=rtt_s / 2)
    try:
        yield relay.address
    finally:
        relay.close()


def _percentiles(samples: list[float]) -> dict[str, float]:
    qs = statistics.quantiles(samples, n=100)
    return {"n": len(samples), "p50_ms": statistics.median(samples) * 1e3, "p99_ms": qs[98] * 1e3}



