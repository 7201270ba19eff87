"""Consumers that follow the backlog (scripts/slurm-consumers.sh --adapt, consumer/adapt.py) on
a real single-node Slurm that the test starts (tests/support/slurm.py)."""

from __future__ import annotations

import signal
import sys
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.support.gods import God, god_stats
from tests.support.helpers import Proc, wait_for_results, wait_until, write_tasks
from tests.support.slurm import Slurm, cluster, why_not

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]


class Watch:
    """The most jobs the cluster held at once, looked at every 0.1 s in a thread."""

    def __init__(self, slurm: Slurm) -> None:
        self.slurm, self.most, self._stop = slurm, 0, threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(0.1):
            try:
                self.most = max(self.most, len(self.slurm.jobs()))
            except AssertionError:
                pass

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)


@pytest.mark.skipif(why_not() is not None, reason=str(why_not()))
def test_jobs_follow_the_backlog_up_to_max_and_end_when_idle(
        god: God, env: dict[str, str], spawn: Callable[..., Proc], tmp_path: Path) -> None:
    def put(name: str, tasks: list[dict[str, float]]) -> None:
        assert spawn("producer", "--from", str(write_tasks(tmp_path / f"{name}.jsonl", tasks)),
                     env_extra={"GOD_ADDRESS": god.address}).wait() == 0

    with cluster(tmp_path / "slurm") as slurm:
        scaler_env = {**slurm.env, "GOD_AUTHKEY": env["GOD_AUTHKEY"], "GOD_ADDRESS": god.address,
                      "GOD_CONSUMER": f"{sys.executable} -m consumer", "GOD_PYTHON": sys.executable,
                      "GOD_ADAPT_EVERY_S": "0.3", "XDG_CACHE_HOME": str(tmp_path / "cache")}

        scalers: list[Proc] = []

        def scaler() -> Proc:
            scalers.append(spawn("slurm-consumers", "--adapt", "0:3", f"--output={tmp_path}/job-%A_%a.out", "--",
                                 "--processes", "1", "--task", "tests.support.tasks:slow", "--idle-exit", "2",
                                 script=True, environment=scaler_env))
            return scalers[-1]

        watch = Watch(slurm)
        try:
            # A burst of tiny tasks with a consumer up: it is enough, and no job is submitted
            here = spawn("consumer", "--processes", "1", "--task", "tests.support.tasks:slow",
                         env_extra={"GOD_ADDRESS": god.address})
            wait_until(lambda: god_stats(god, env)["consumers_alive"] == 1, 30, "the consumer up")
            first = scaler()
            put("tiny", [{"n": i, "s": 0.0} for i in range(500)])
            wait_for_results(god.results, 500, timeout=60)
            here.signal(signal.SIGTERM)
            assert here.wait() == 0 and watch.most == 0 and "submitted" not in first.text(), first.text()
            # 100 tasks of 0.2 s and no consumer: jobs come; the scaler killed and started again
            # mid-burst finds its jobs and does not double them
            put("slow", [{"n": i, "s": 0.2} for i in range(60)])
            wait_until(lambda: slurm.jobs(), 30, "a consumer job submitted")
            first.signal(signal.SIGKILL)
            first.wait()
            second = scaler()
            results = wait_for_results(god.results, 560, timeout=120)
            assert all(r["ok"] for r in results) and len({r["id"] for r in results}) == 560
            assert 1 <= watch.most <= 3, watch.most
            assert "submitted" not in second.text(), second.text()  # it found the job the first one submitted
            # Idle, each job ends (--idle-exit 2), and a second burst brings one back
            wait_until(lambda: not slurm.jobs(), 20, "the jobs to end once idle")
            put("again", [{"n": i, "s": 0.1} for i in range(10)])
            wait_for_results(god.results, 570, timeout=60)
            assert "submitted 1 job" in second.text(), second.text()
            second.signal(signal.SIGTERM)
            assert second.wait() == 0 and "stopping:" in second.text(), second.text()
        finally:
            watch.stop()
            for p in scalers:  # (before the cluster stops: they ask it)
                p.signal(signal.SIGTERM)
                p.wait()
