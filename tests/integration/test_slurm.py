"""Consumers as Slurm jobs (scripts/slurm-consumers.sh), on a real single-node Slurm that the
test starts (tests/support/slurm.py)."""

from __future__ import annotations

import subprocess
import sys
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest

from shared import exitcodes
from tests.support.gods import God, god_stats
from tests.support.helpers import REPO, Proc, wait_for_results, wait_until, write_tasks
from tests.support.slurm import Slurm, cluster, why_not

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]

SCRIPT = str(REPO / "scripts" / "slurm-consumers.sh")


def _submit(slurm: Slurm, env: dict[str, str], *args: str, address: str) -> str:
    """Run the script as a user would, here; returns the array's job id."""
    done = subprocess.run([SCRIPT, *args], cwd=REPO, capture_output=True, text=True, timeout=30,
                          env={**slurm.env, "GOD_AUTHKEY": env["GOD_AUTHKEY"], "GOD_ADDRESS": address,
                               "GOD_CONSUMER": f"{sys.executable} -m consumer"})
    assert done.returncode == 0, done
    (line,) = done.stdout.splitlines()
    assert line.startswith("Submitted batch job "), line
    return line.rsplit(" ", 1)[1]


@pytest.mark.skipif(why_not() is not None, reason=str(why_not()))
def test_consumers_as_a_job_array_run_the_tasks_and_a_scancel_mid_task_loses_nothing(
        god: God, env: dict[str, str], spawn: Callable[..., Proc], tmp_path: Path) -> None:
    tasks = [{"n": i, "s": 1.0} for i in range(6)]
    assert spawn("producer", "--from", str(write_tasks(tmp_path / "t.jsonl", tasks)),
                 env_extra={"GOD_ADDRESS": god.address}).wait() == 0
    with cluster(tmp_path / "slurm") as slurm:
        out = f"--output={tmp_path}/job-%A_%a.out"
        array = _submit(slurm, env, "2", out, "--", "--processes", "1", "--task", "tests.support.tasks:slow", "--burst",
                        address=god.address)
        wait_until(lambda: list(slurm.jobs().values()) == ["RUNNING", "RUNNING"], 60, "both consumers' jobs running")
        # the job script execs the consumer, so that the time limit's --signal=B:TERM reaches it
        script = slurm.run("scontrol", "write", "batch_script", f"{array}_0", "-")
        assert script.splitlines()[-1].startswith(f"exec {sys.executable} -m consumer --processes 1 "), script
        wait_until(lambda: god_stats(god, env)["running"] == 2, 60, "a task running in each job")
        # a scancel of one, mid-task: SIGTERM to all of its processes, SIGKILL a KillWait later
        slurm.run("scancel", f"{array}_0")
        results = wait_for_results(god.results, 6, timeout=60)
        assert sorted(int(r["payload"]["n"]) for r in results) == list(range(6))
        assert all(r["ok"] for r in results) and set(Counter(r["id"] for r in results).values()) == {1}
        wait_until(lambda: not slurm.jobs(), 60, "the array's jobs to end")
        cancelled = (tmp_path / f"job-{array}_0.out").read_text()
        assert "SIGTERM received; finishing running tasks" in cancelled and "done 1," in cancelled, cancelled
        assert all(r["attempts"] == 1 for r in results)  # the cancelled job's task finished: nothing ran twice
        assert slurm.job(f"{array}_1")["ExitCode"] == "0:0"  # --burst: the other exits 0 once the queue is empty

        # a job that cannot reach god fails, in one line, and is not started again
        lost = _submit(slurm, env, "1", f"--output={tmp_path}/lost-%A_%a.out", "--", "--give-up-after", "1",
                       address="127.0.0.1:1")
        wait_until(lambda: not slurm.jobs(), 60, "the unreachable job to end")
        job = slurm.job(f"{lost}_0")
        assert (job["JobState"], job["ExitCode"]) == ("FAILED", f"{exitcodes.UNREACHABLE}:0"), job
        errors = [line for line in (tmp_path / f"lost-{lost}_0.out").read_text().splitlines() if "ERROR" in line]
        assert len(errors) == 1 and "127.0.0.1:1" in errors[0], errors


@pytest.mark.parametrize("args, says", [
    ([], "the first argument must be how many consumers"),
    (["0", "--", "--burst"], "a whole number from 1 (got '0')"),
    (["two"], "(got 'two')"),
])
def test_the_script_refuses_a_bad_count_in_one_line(tmp_path: Path, args: list[str], says: str) -> None:
    done = subprocess.run([SCRIPT, *args], capture_output=True, text=True, timeout=30,
                          env={"PATH": "/usr/bin:/bin", "GOD_ADDRESS": "127.0.0.1:1", "GOD_AUTHKEY": "k"})
    assert done.returncode == exitcodes.USAGE and says in done.stderr and done.stderr.count("\n") == 1, done
