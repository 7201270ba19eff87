"""A real single-node Slurm cluster for a test: munged (unless one runs already), slurmctld and
slurmd of Debian's slurm-wlm, with a configuration, state and spool of the test's own.

What works on these machines (Slurm 22.05): the munge key in /etc/munge/munge.key (0400,
owner munge) and munged run as user munge with /run/munge made for it; ``SlurmUser=root``,
``ProctrackType=proctrack/linuxproc``, ``TaskPlugin=task/none``; a ``cgroup.conf`` with
``CgroupPlugin=cgroup/v1`` and ``CgroupAutomount=no`` (22.05 has no ``disabled`` plugin, and
slurmd refuses to start without one). Each cluster has a state directory of its own, fresh
(slurmctld refuses one written under another ``ClusterName``). At the end its jobs are
cancelled and waited for before the daemons stop (a running job's slurmstepd and its
processes outlive slurmd otherwise); every daemon started here is stopped by its pid.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

from tests.support.helpers import wait_until

DAEMONS = ("munged", "slurmctld", "slurmd", "sbatch", "squeue", "scancel", "sinfo", "scontrol")
MUNGE_SOCKET = Path("/run/munge/munge.socket.2")
KILL_WAIT_S = 5  # a scancel's SIGTERM, then SIGKILL this much later


PATH = f"{os.environ.get('PATH', '/usr/bin:/bin')}:/usr/sbin:/sbin"  # the daemons are in sbin


def why_not() -> str | None:
    """Why a Slurm cluster cannot be started here, or None."""
    missing = [d for d in DAEMONS if shutil.which(d, path=PATH) is None]
    if missing:
        return f"Slurm or munge is not installed ({', '.join(missing)} missing; apt-get install slurm-wlm munge)"
    if os.geteuid() != 0:
        return "starting munged and slurmd needs root"
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Slurm:
    """A running cluster: ``env`` is what Slurm's commands need to reach it."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.env = {**os.environ, "PATH": PATH, "SLURM_CONF": str(folder / "slurm.conf")}

    def run(self, *argv: str) -> str:
        done = subprocess.run(argv, env=self.env, capture_output=True, text=True, timeout=30)
        if done.returncode != 0:
            raise AssertionError(f"{' '.join(argv)} failed ({done.returncode}): {done.stderr.strip()}")
        return done.stdout

    def jobs(self) -> dict[str, str]:
        """Jobs in the queue (array tasks one by one): id -> state (RUNNING, PENDING, COMPLETING)."""
        out = self.run("squeue", "-h", "-r", "-o", "%i %T")
        return dict(line.split() for line in out.splitlines() if line.strip())

    def job(self, job_id: str) -> dict[str, str]:
        """What scontrol says of a job (kept a while after it ended): its fields."""
        return dict(re.findall(r"(\w+)=(\S*)", self.run("scontrol", "show", "job", job_id)))


def _write_config(folder: Path, host: str) -> None:
    (folder / "state").mkdir()
    (folder / "spool").mkdir()
    (folder / "slurm.conf").write_text(f"""\
ClusterName=godtest{os.getpid()}
SlurmctldHost={host}(127.0.0.1)
SlurmctldPort={_free_port()}
SlurmdPort={_free_port()}
SlurmUser=root
AuthType=auth/munge
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
StateSaveLocation={folder}/state
SlurmdSpoolDir={folder}/spool
SlurmctldPidFile={folder}/slurmctld.pid
SlurmdPidFile={folder}/slurmd.pid
SlurmctldLogFile={folder}/slurmctld.log
SlurmdLogFile={folder}/slurmd.log
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
ReturnToService=2
MpiDefault=none
JobCompType=jobcomp/none
AccountingStorageType=accounting_storage/none
KillWait={KILL_WAIT_S}
MinJobAge=600
NodeName=node1 NodeHostname={host} NodeAddr=127.0.0.1 CPUs={os.cpu_count() or 1} RealMemory=1000 State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
""")
    (folder / "cgroup.conf").write_text("CgroupPlugin=cgroup/v1\nCgroupAutomount=no\n")


def _stop(p: subprocess.Popen[bytes]) -> None:
    for sig in (signal.SIGTERM, signal.SIGKILL):
        if p.poll() is None:
            p.send_signal(sig)
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                pass


@contextmanager
def cluster(folder: Path) -> Iterator[Slurm]:
    """Start a cluster in folder (fresh); stop all of it, and every job, at the end."""
    started: list[subprocess.Popen[bytes]] = []
    logs: list[IO[bytes]] = []

    def log(name: str) -> IO[bytes]:
        logs.append(open(folder / name, "wb"))
        return logs[-1]

    folder.mkdir(parents=True)
    slurm = Slurm(folder)
    try:
        if not MUNGE_SOCKET.exists() or subprocess.run(["pgrep", "-x", "munged"], capture_output=True).returncode:
            key = Path("/etc/munge/munge.key")
            if not key.exists():
                subprocess.run(["mungekey", "--create", "--keyfile", str(key)], env=slurm.env, check=True,
                               capture_output=True)
            shutil.chown(key, "munge", "munge")
            key.chmod(0o400)
            MUNGE_SOCKET.parent.mkdir(mode=0o755, exist_ok=True)
            shutil.chown(MUNGE_SOCKET.parent, "munge", "munge")
            started.append(subprocess.Popen(["munged", "--foreground", "--force"], env=slurm.env, user="munge", group="munge",
                                            stdout=log("munged.out"), stderr=subprocess.STDOUT))
            wait_until(MUNGE_SOCKET.exists, 10, "munged's socket")
        _write_config(folder, socket.gethostname().split(".")[0])
        conf = str(folder / "slurm.conf")
        for argv in (["slurmctld", "-D", "-f", conf], ["slurmd", "-D", "-N", "node1", "-f", conf]):
            started.append(subprocess.Popen(argv, env=slurm.env, stdout=log(f"{argv[0]}.out"),
                                            stderr=subprocess.STDOUT))
        wait_until(lambda: _idle(slurm, started), 30, "the Slurm node idle")
        yield slurm
    finally:
        if any(p.args[0] == "slurmctld" and p.poll() is None for p in started):  # type: ignore[index]
            try:
                slurm.run("scancel", "--full", "--user", "root")
                wait_until(lambda: not slurm.jobs(), KILL_WAIT_S + 30, "the cluster's jobs to end")
            except AssertionError:
                pass
        for p in reversed(started):
            _stop(p)
        for f in logs:
            f.close()


def _idle(slurm: Slurm, started: list[subprocess.Popen[bytes]]) -> bool:
    dead = [p.args for p in started if p.poll() is not None]
    if dead:
        raise AssertionError(f"{dead[0]!r} exited: see {slurm.folder}")
    done = subprocess.run(["sinfo", "-h", "-o", "%T"], env=slurm.env, capture_output=True, text=True, timeout=10)
    return done.stdout.strip() == "idle"
