"""Soak: many consumers connect, take work and are killed; god's connections, threads and memory stay flat."""

from __future__ import annotations

import os
import signal
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import God, addr_env, settings_for
from shared.client import GodClient
from tests.helpers import Proc, wait_until

WARMUP = 4  # cycles before the baseline: first connections allocate for good
CYCLES = 16  # cycles measured, two consumers each
RSS_SLACK_KB = 6 * 1024  # allocator noise; a leak of one connection's buffers per cycle is far more


def proc_status(pid: int) -> dict[str, int]:
    """VmRSS (kB) and Threads of a process, from /proc."""
    fields = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines())
    return {"rss_kb": int(fields["VmRSS"].split()[0]), "threads": int(fields["Threads"])}


@pytest.mark.timeout(150)
def test_consumer_connect_and_kill_cycles_leave_god_flat(
    god: God, spawn: Callable[..., Proc], env: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    env_god = addr_env(god)
    producer = spawn("producer", "--interval", "0.05", "--per-round", "20", env_extra=env_god)  # work to hold
    producer.wait_for(r"round 2: put", stream="err")
    idle_threads = proc_status(god.proc.pid)["threads"]
    observer = GodClient(settings_for(god, env), name="soak-observer", role="status")
    idle_connections = observer.stats()["connections"]  # the producer's and this one

    def cycle() -> None:
        pair = [spawn("consumer", "--processes", "1", env_extra=env_god, new_session=True) for _ in range(2)]
        for c in pair:
            c.wait_for(r"consumer \S+ running", stream="err")
        for c in pair:
            os.killpg(c.pid, signal.SIGKILL)
            c.wait()

    def settled() -> dict[str, int] | None:
        # Killed consumers' connections end in god within a moment (each was a thread for its
        # handshakes); the producer and the observer keep theirs.
        s = {**proc_status(god.proc.pid), "connections": observer.stats()["connections"]}
        return s if s["connections"] <= idle_connections and s["threads"] <= idle_threads else None

    try:
        for _ in range(WARMUP):
            cycle()
        base = wait_until(settled, 15, "god to close the killed consumers' connections")
        for _ in range(CYCLES):
            cycle()
        end = wait_until(settled, 15, "god to close the killed consumers' connections")
    finally:
        observer.close()
    with capsys.disabled():
        print(f"\nsoak: god after {WARMUP} consumer kill cycles: {base}; after {WARMUP + CYCLES}: {end}")
    assert end["rss_kb"] - base["rss_kb"] < RSS_SLACK_KB, (base, end)
