"""Consumers that follow the backlog on Slurm: ``scripts/slurm-consumers.sh --adapt MIN:MAX
[SBATCH OPTIONS] [-- CONSUMER OPTIONS]`` runs this beside god until stopped.

Every EVERY_S it reads god's figures and its own jobs (``squeue --name``), and submits
consumer jobs when the queues its consumers serve want more workers than serve them and its
pending jobs will bring (god's ``wanted_workers``: god/rules/wanted.py, which weighs each task
by its measured time), up to MAX jobs, and PENDING_MAX pending in Slurm at once. It never
cancels a job: each consumer it starts runs with ``--idle-exit`` and ends once it has had
nothing to do for a while; MIN jobs run without it and stay. It finds its jobs by name, so a
restart does not double them, and says each decision in one line. Ctrl-C or SIGTERM: it
leaves its jobs to drain, says so, and exits 0.
"""

from __future__ import annotations

import math
import os
import re
import signal
import subprocess
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from shared import exitcodes
from shared.client import GodClient
from shared.config import client_settings, hostname
from shared.errors import ConfigError, GodError
from shared.log import count, logger, setup_logging
from shared.records import DEFAULT_QUEUE

EVERY_S = float(os.environ.get("GOD_ADAPT_EVERY_S", "5"))  # seconds between looks
PENDING_MAX = int(os.environ.get("GOD_ADAPT_PENDING", "4"))  # jobs pending in Slurm at once, at most
IDLE_S = 120.0  # a job's consumer exits after this long without a task, unless its options say
NAME = os.environ.get("GOD_ADAPT_NAME", "god-consumer-adapt")  # its jobs' name (MIN ones: NAME-min)
SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "slurm-consumers.sh"
_ACTIVE = {"PENDING": "pending", "CONFIGURING": "running", "RUNNING": "running", "RESIZING": "running",
           "SUSPENDED": "running", "REQUEUED": "pending"}


@dataclass
class Plan:
    """What the scaler was told: MIN:MAX jobs, their sbatch and consumer options."""

    low: int
    high: int
    sbatch: list[str]
    consumer: list[str]
    queues: tuple[str, ...]
    per_job: int  # workers a job's consumer runs (--processes x --concurrency)


def parse(argv: list[str]) -> Plan:
    """``MIN:MAX [SBATCH OPTIONS] [-- CONSUMER OPTIONS]``.

    Raises:
        ConfigError: naming what is wrong.
    """
    m = re.fullmatch(r"(\d+):(\d+)", argv[0]) if argv else None
    if m is None or int(m[2]) < 1 or int(m[1]) > int(m[2]):
        raise ConfigError(f"--adapt takes MIN:MAX, whole numbers with 0 <= MIN <= MAX and MAX >= 1 (got "
                          f"{argv[0] if argv else 'nothing'!r})")
    rest = argv[1:]
    cut = rest.index("--") if "--" in rest else len(rest)
    sbatch, consumer = rest[:cut], rest[cut + 1:]
    for option in sbatch:
        if option.startswith(("--array", "-a", "--job-name", "-J")):
            raise ConfigError(f"--adapt sets the jobs' {option.split('=')[0]} itself: leave it out")
    queues = _option(consumer, "--queues")
    processes = _option(consumer, "--processes")
    concurrency = _option(consumer, "--concurrency")
    if processes is None:
        raise ConfigError("--adapt needs the consumers' --processes N (to count the workers a job brings)")
    if _option(consumer, "--idle-exit") is None:
        consumer = [*consumer, "--idle-exit", f"{IDLE_S:g}"]
    return Plan(int(m[1]), int(m[2]), sbatch, consumer,
                tuple(q.strip() for q in queues.split(",")) if queues else (DEFAULT_QUEUE,),
                int(processes) * int(concurrency or 1))


def _option(args: list[str], name: str) -> str | None:
    for i, a in enumerate(args):
        if a == name and i + 1 < len(args):
            return args[i + 1]
        if a.startswith(name + "="):
            return a.split("=", 1)[1]
    return None


def jobs(name: str) -> dict[str, str]:
    """Our jobs in Slurm's queue (array tasks one by one): id -> "pending" or "running"."""
    done = subprocess.run(["squeue", "-h", "-r", "--name", f"{name},{name}-min", "-o", "%i %j %T"],
                          capture_output=True, text=True, timeout=20)
    if done.returncode != 0:
        raise GodError(f"squeue failed: {done.stderr.strip()}")
    out = {}
    for line in done.stdout.splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[2] in _ACTIVE:
            out[f"{parts[1]}:{parts[0]}"] = _ACTIVE[parts[2]]
    return out


def decide(plan: Plan, stats: dict[str, Any], ours: dict[str, str]) -> tuple[int, bool, str] | None:
    """How many jobs to submit now, whether they are MIN ones (no --idle-exit), and why; None: none."""
    queues = [stats["queues"].get(q) for q in plan.queues]
    waiting = sum(q["waiting"] for q in queues if q)
    want = sum(q.get("wanted_workers", 0) for q in queues if q)
    serving = sum(c["processes"] * c.get("concurrency", 1) for c in stats["consumers"]
                  if c["alive"] and set(c["queues"]) & set(plan.queues))
    running = sum(1 for s in ours.values() if s == "running")
    pending = len(ours) - running
    minimum = sum(1 for k in ours if k.startswith(f"{NAME}-min:"))
    if minimum < plan.low and len(ours) < plan.high:
        k = min(plan.low - minimum, plan.high - len(ours))
        return k, True, f"keeping {plan.low} jobs up (--adapt {plan.low}:{plan.high}); {minimum} were"
    if not waiting:
        return None
    measured = [q["task_s"] for q in queues if q and q.get("task_s") is not None]
    if serving and not measured:
        return None  # (consumers run its first tasks: their time says what the backlog is worth)
    supply = max(serving, running * plan.per_job) + pending * plan.per_job
    if want <= supply:
        return None
    k = min(math.ceil((want - supply) / plan.per_job), plan.high - len(ours), PENDING_MAX - pending)
    each = f"{measured[0]:.3g} s a task" if measured else "no task finished yet"
    why = (f"{count(waiting, 'task')} wait on {','.join(plan.queues)} ({each}): they want "
           f"{count(want, 'worker')}; {serving} serve them, {count(pending, 'job')} pending")
    if k <= 0:
        return 0, False, why + (f"; at --adapt's {plan.high} jobs" if len(ours) >= plan.high else
                                f"; {pending} pending already (at most {PENDING_MAX})")
    return k, False, why + f"; jobs {len(ours) + k} of at most {plan.high}"


def submit(plan: Plan, k: int, minimum: bool) -> str:
    """Submit k consumer jobs (one array) through slurm-consumers.sh; their array's id."""
    name = f"{NAME}-min" if minimum else NAME
    consumer = plan.consumer
    if minimum:  # (MIN jobs stay)
        consumer = [a for i, a in enumerate(consumer) if a != "--idle-exit" and not a.startswith("--idle-exit=")
                    and (i == 0 or consumer[i - 1] != "--idle-exit")]
    done = subprocess.run([str(SCRIPT), str(k), f"--job-name={name}", *plan.sbatch, "--", *consumer],
                          capture_output=True, text=True, timeout=60)
    if done.returncode != 0:
        raise GodError(f"submitting consumers failed: {(done.stderr or done.stdout).strip()}")
    return done.stdout.strip().rsplit(" ", 1)[-1]


def run(plan: Plan) -> int:
    log = logger.bind(role="adapt")
    stop = threading.Event()
    said: list[str] = []

    def on_signal(signum: int, frame: Any) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    client = GodClient(client_settings(None, None), name=f"adapt-{hostname()}-{os.getpid()}", role="observer")
    log.info("following the backlog of {} with {} to {} jobs of {} (every {:g}s)", ",".join(plan.queues), plan.low,
             plan.high, count(plan.per_job, "worker"), EVERY_S)
    while not stop.is_set():
        try:
            ours = jobs(NAME)
            decision = decide(plan, client.stats(), ours)  # type: ignore[arg-type]
            if decision is not None:
                k, minimum, why = decision
                if k > 0:
                    log.info("submitted {} (array {}): {}", count(k, "job"), submit(plan, k, minimum), why)
                    said.clear()
                elif why not in said:  # (a limit reached: said once)
                    log.info("no job submitted: {}", why)
                    said[:] = [why]
        except (GodError, OSError, subprocess.SubprocessError) as e:  # (god or Slurm away a while)
            log.warning("{}; trying again in {:g}s", e, EVERY_S)
        stop.wait(EVERY_S)
    try:
        left = len(jobs(NAME))
    except (GodError, OSError, subprocess.SubprocessError):
        left = 0
    log.info("stopping: {} left to drain (each ends once idle; MIN ones run on: scancel them)", count(left, "job"))
    client.close()
    return 0


def main() -> None:
    setup_logging("adapt")
    try:
        plan = parse(sys.argv[1:])
    except ConfigError as e:
        print(f"slurm-consumers.sh: {e}", file=sys.stderr)
        sys.exit(exitcodes.USAGE)
    sys.exit(run(plan))


if __name__ == "__main__":
    main()
