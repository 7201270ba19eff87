"""Fixtures of the integration tests: an executor with a consumer, and the directory installs share."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from producer import Executor
from tests.support.gods import God, addr_env
from tests.support.helpers import Proc
from tests.support.netns import Network


@pytest.fixture
def executor(god: God, spawn: Callable[..., Proc], env: dict[str, str],
             monkeypatch: pytest.MonkeyPatch) -> Iterator[Executor]:
    """An executor on god, with a consumer that runs up to 8 calls at once."""
    spawn("consumer", "--processes", "1", "--concurrency", "8", env_extra=addr_env(god))
    monkeypatch.setenv("GOD_AUTHKEY", env["GOD_AUTHKEY"])
    ex = Executor(god.address, give_up_after=10)
    ex.submit(abs, 0).result(timeout=30)  # a worker is up: tests that time calls do not time its start
    yield ex
    ex.shutdown(wait=True, cancel_futures=True)


@pytest.fixture
def net() -> Iterator[Network]:
    """Hosts of the test's own (network namespaces), removed with every process in them after it."""
    n = Network()
    try:
        yield n
    finally:
        n.remove()


@pytest.fixture(scope="session")
def install_base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A directory every xdist worker of this run shares, where the wheel and the venvs made
    from it are made once (tests/support/installed.py)."""
    base = tmp_path_factory.getbasetemp()
    return base.parent if "PYTEST_XDIST_WORKER" in os.environ else base
