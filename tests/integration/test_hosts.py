"""Across hosts: god, a producer and two consumers on hosts of their own (network namespaces).

The test makes every namespace itself: a switch (a bridge) and four hosts joined to it by
veth pairs, with addresses from 198.18.0.0/15; it starts the roles with scripts/cluster.sh
through 'ip netns exec', cuts one consumer host's link mid-run and brings it back, and
removes everything it made, also when it fails. It needs root and iproute2.
"""

from __future__ import annotations

import os
import subprocess
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from tests.support.helpers import REPO, read_results, wait_until, write_tasks
from tests.support.netns import Network, needs_namespaces

pytestmark = [
    pytest.mark.slow,
    pytest.mark.timeout(240),
    needs_namespaces,
]

N_TASKS = 2000
TASK_S = 0.01  # seconds per task: long enough that the link is cut while work is under way


def test_roles_on_four_hosts_survive_a_consumer_host_cut_off(
    net: Network, tmp_path: Path, env: dict[str, str]
) -> None:
    # Given four hosts on one switch, and a hosts file that puts a role on each
    god_ns, god_ip = net.add_host("god")
    prod_ns, _ = net.add_host("prod")
    c1_ns, _ = net.add_host("c1")
    c2_ns, _ = net.add_host("c2")
    results, tasks = tmp_path / "results.jsonl", tmp_path / "tasks.jsonl"
    write_tasks(tasks, [{"n": i, "s": TASK_S} for i in range(N_TASKS)])
    hosts = tmp_path / "cluster.hosts"
    hosts.write_text(
        f"address {god_ip}:5678\n"
        f"god {god_ns} --results {results} --journal {tmp_path / 'journal.sqlite3'} --lease-timeout 1\n"
        f"producer {prod_ns} --from {tasks}\n"
        f"consumer {c1_ns} --task tests.support.tasks:slow --processes 1\n"
        f"consumer {c2_ns} --task tests.support.tasks:slow --processes 1\n"
    )
    cluster_env = {**env, "GOD_REMOTE": "ip netns exec {host} sh -c", "GOD_CLUSTER_DIR": str(tmp_path / "cluster")}

    def cluster(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(REPO / "scripts" / "cluster.sh"), *args], env=cluster_env, capture_output=True,
                              text=True, timeout=180)

    def done() -> list[dict[str, Any]]:
        return read_results(results)

    recorded: list[list[str]] = []
    try:
        # When the cluster comes up through the launch scripts
        up = cluster("up", str(hosts))
        assert up.returncode == 0, up.stdout + up.stderr
        recorded = [line.split() for line in (tmp_path / "cluster" / "pids").read_text().splitlines()]
        c1_name = next(f"{os.uname().nodename}:{pid}" for role, host, pid, *_ in recorded if host == c1_ns)
        god_log = tmp_path / "cluster" / "logs" / f"god-{god_ns}.log"
        key = env["GOD_AUTHKEY"].encode()
        for role, host, pid, launcher, _ in recorded:  # the key travelled on stdin, not as an argument
            for p in {pid, launcher}:
                cmdline = Path(f"/proc/{p}/cmdline")
                assert not cmdline.exists() or key not in cmdline.read_bytes(), f"the key is in {role}'s command line"
        wait_until(lambda: len(done()) >= N_TASKS // 8, 60, "the first results")

        # and one consumer host loses its link mid-run
        net.link(c1_ns, up=False)
        cut_at = len(done())
        wait_until(lambda: f"consumer {c1_name} lost" in god_log.read_text(), 20, "god to give the cut-off consumer up")
        # Then the other consumer serves the work, its tasks included
        wait_until(lambda: len(done()) >= cut_at + 100, 30, "progress without the cut-off host")

        # and when the link comes back, that consumer takes work again
        net.link(c1_ns, up=True)
        back = time.time()
        wait_until(lambda: any(r["consumer"] == c1_name and r["time"] > back + 0.5 for r in done()),
                   60, "results from the consumer whose link came back")

        # and every task has exactly one result
        wait_until(lambda: len(done()) >= N_TASKS, 90, f"all {N_TASKS} results")
        lines_per_id = Counter(r["id"] for r in done())
        assert len(lines_per_id) == N_TASKS and max(lines_per_id.values()) == 1

        status = cluster("status")
        assert status.returncode == 0, status.stdout + status.stderr
        for ns in (god_ns, c1_ns, c2_ns):
            assert ns in status.stdout
        assert f"god at {god_ip}:5678" in status.stdout and f"done {N_TASKS}" in status.stdout, status.stdout
    finally:
        down = cluster("down")
    assert down.returncode == 0, down.stdout + down.stderr
    for role, host, pid, *_ in recorded:
        assert not Path(f"/proc/{pid}").exists(), f"{role} on {host} (pid {pid}) still runs after down"
