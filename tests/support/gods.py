"""A god a test started, and a client of the test's own to it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from shared.client import GodClient
from shared.config import Settings
from shared.stats import Stats
from tests.support.helpers import Proc


class God:
    """A running god: its process, the address it listens on, and its results file."""

    def __init__(self, proc: Proc, address: str, results: Path) -> None:
        self.proc, self.address, self.results = proc, address, results


def settings_for(g: God, env: dict[str, str]) -> Settings:
    """Settings for a client of this test's own, to god g."""
    host, port = g.address.rsplit(":", 1)
    return Settings((host, int(port)), env["GOD_AUTHKEY"].encode(), "test", give_up_after=20)


def god_stats(g: God, env: dict[str, str]) -> Stats:
    """God's figures, asked by a client of the test's own."""
    client = GodClient(settings_for(g, env), name="test-observer", role="observer")
    try:
        return client.stats()
    finally:
        client.close()


def addr_env(g: God) -> dict[str, str]:
    return {"GOD_ADDRESS": g.address}


def executor_on(g: God, env: dict[str, str], monkeypatch: Any, **kw: Any) -> Any:
    """A program's Executor on god with the test's key (``monkeypatch``: pytest's, for the key)."""
    from producer import Executor

    monkeypatch.setenv("GOD_AUTHKEY", env["GOD_AUTHKEY"])
    return Executor(g.address, give_up_after=10, **kw)
