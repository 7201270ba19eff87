"""Fixtures: an isolated environment per test, and real role processes cleaned up afterwards."""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.support.gods import God
from tests.support.helpers import REPO, Proc

# A shell without job control starts a command put in the background (`scripts/test.sh &`)
# with SIGINT ignored, and every process started from it would inherit that: the tests of
# what Ctrl-C does would then wait in vain. Children of a process with a handler get the default.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    """A fresh random authkey, and state and cache dirs of this test's own (no stray key files,
    no values cached for another test)."""
    e = {k: v for k, v in os.environ.items() if not k.startswith("GOD_")}
    e.update(GOD_AUTHKEY=os.urandom(32).hex(), XDG_STATE_HOME=str(tmp_path / "state"),
             XDG_CACHE_HOME=str(tmp_path / "cache"), PYTHONUNBUFFERED="1")
    return e


@pytest.fixture
def spawn(env: dict[str, str]) -> Iterator[Callable[..., Proc]]:
    """Start role processes (``spawn("consumer", "--burst")``); every one is stopped at teardown."""
    procs: list[Proc] = []

    def start(role: str, *args: str, env_extra: dict[str, str] | None = None, script: bool = False,
              installed: Path | None = None, environment: dict[str, str] | None = None, netns: str | None = None,
              **kw: object) -> Proc:
        # script=True runs scripts/ROLE.sh instead of python -m ROLE; installed=BIN runs the
        # installed command BIN/ROLE; a ROLE ending in .py is a Python script in the repository,
        # run with this Python. environment: exactly this one, not the test's (no key in it).
        # netns: on that host (tests/support/netns.py; 'ip netns exec' becomes the process)
        program = str(REPO / "scripts" / f"{role}.sh") if script else str(installed / role) if installed else None
        argv = [*args] if program else [str(REPO / role), *args] if role.endswith(".py") else ["-m", role, *args]
        if netns is not None:
            argv, program = ["netns", "exec", netns, program or sys.executable, *argv], "ip"
        p = Proc(argv, environment if environment is not None else {**env, **(env_extra or {})}, program=program,
                 **kw)  # type: ignore[arg-type]
        if netns is not None:
            p.name = role
        procs.append(p)
        return p

    yield start
    # Clients before god (a god started again comes after some of them), so none is left
    # waiting for a god already gone; each group told at once, so their drains overlap.
    gods = [p for p in procs if p.name == "god"]
    for group in ([p for p in reversed(procs) if p not in gods], gods[::-1]):
        for p in group:
            p.signal(signal.SIGTERM)
        for p in group:
            p.stop(asked=True)


@pytest.fixture
def start_god(spawn: Callable[..., Proc], tmp_path: Path) -> Callable[..., God]:
    """Start god on 127.0.0.1 and a free port; returns once it says it listens."""

    def start(*args: str, port: int = 0) -> God:
        results = tmp_path / "results.jsonl"
        p = spawn("god", "--address", f"127.0.0.1:{port}", "--results", str(results), *args)
        m = p.wait_for(r"listening on (\S+:\d+)")
        return God(p, m.group(1), results)

    return start


@pytest.fixture
def god(start_god: Callable[..., God]) -> God:
    """A god with default settings but a short lease, so lost consumers are noticed quickly."""
    return start_god("--lease-timeout", "1")
