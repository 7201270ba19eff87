"""Resources across real processes: a consumer says what it has (consumer --resources), a call
what it needs (Executor.options(resources=...)); each GPU call's worker sees only its own
GPUs, and a call that fits no consumer says so in god task ID and status while the rest run."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import pytest

from producer import Executor
from tests.support.gods import God, addr_env
from tests.support.helpers import Proc, wait_until
from tests.support.tasks import gpus_seen

pytestmark = pytest.mark.timeout(90)


def test_gpu_calls_see_their_own_gpus_and_one_that_fits_nowhere_says_so(
    god: God, spawn: Callable[..., Proc], env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    spawn("consumer", "--processes", "3", "--resources", "gpu=2,mem=1G", env_extra=addr_env(god))
    monkeypatch.setenv("GOD_AUTHKEY", env["GOD_AUTHKEY"])
    with Executor(god.address, give_up_after=10) as ex:
        one, four = ex.options(resources={"gpu": 1}), ex.options(resources={"gpu": 4})
        too_big = four.submit(gpus_seen, 0.0)
        try:
            _the_rest(spawn, god, ex, one, too_big)
        finally:
            too_big.cancel()


def _the_rest(spawn: Callable[..., Proc], god: God, ex: Executor, one: Any, too_big: Any) -> None:
    wait_until(lambda: _god_task(spawn, god, too_big.task_id or "").endswith(
        "fits nowhere: needs gpu=4; the largest has gpu=2"), 30, "god task saying it fits nowhere")
    status = spawn("god", "status", env_extra=addr_env(god))
    assert status.wait() == 0 and re.search(r"queue default: .*; 1 fits nowhere: needs gpu=4", status.text())
    # The calls behind it run: three workers, two GPUs: at most two GPU calls at once, each on its own
    seen = [f.result(timeout=60) for f in [one.submit(gpus_seen, 0.3) for _ in range(4)]]
    assert sorted(set(seen)) == ["0", "1"], seen
    assert ex.options(resources={"mem": 1 << 20}).submit(gpus_seen, 0.0).result(timeout=60) == ""  # no GPU asked: none
    assert ex.submit(gpus_seen, 0.0).result(timeout=60) is None  # nothing said: as the worker started (unset here)
    assert ex.options(resources={"gpu": 2, "mem": 512 << 20}).submit(gpus_seen, 0.0).result(timeout=60) == "0,1"
    assert not too_big.done()


def _god_task(spawn: Callable[..., Proc], god: God, tid: str) -> str:
    cli = spawn("god", "task", tid, env_extra=addr_env(god))
    cli.wait()
    return cli.text().strip()


def test_resources_that_do_not_parse_are_refused_in_one_line(spawn: Callable[..., Proc], god: God) -> None:
    for role, arg in (("consumer", "gpu"), ("producer", "gpu=many")):
        p = spawn(role, "--resources", arg, env_extra=addr_env(god))
        assert p.wait() != 0
        assert "is not NAME=AMOUNT" in p.text() and "Traceback" not in p.text(), p.text()
