"""Fixtures of the integration tests that use the executor."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from producer import Executor
from tests.conftest import God, addr_env
from tests.helpers import Proc


@pytest.fixture
def executor(god: God, spawn: Callable[..., Proc], env: dict[str, str],
             monkeypatch: pytest.MonkeyPatch) -> Iterator[Executor]:
    """An executor on god, with a consumer that runs up to 8 calls at once."""
    spawn("consumer", "--processes", "1", "--concurrency", "8", env_extra=addr_env(god))
    monkeypatch.setenv("GOD_AUTHKEY", env["GOD_AUTHKEY"])
    ex = Executor(god.address, give_up_after=10)
    yield ex
    ex.shutdown(wait=True, cancel_futures=True)
