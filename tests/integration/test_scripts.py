"""The launch scripts on this machine, and god's status command."""

from __future__ import annotations

import json
import os
import pty
import re
import signal
import socket
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from shared import exitcodes
from tests.support.gods import God, addr_env
from tests.support.helpers import REPO, Proc, wait_for_results, wait_until

pytestmark = pytest.mark.timeout(60)


def test_role_scripts_exec_the_role_so_signals_reach_it(spawn: Callable[..., Proc], tmp_path: Path) -> None:
    results = tmp_path / "r.jsonl"
    g = spawn("god", "--address", "127.0.0.1:0", "--results", str(results), "--no-journal", script=True)
    address = g.wait_for(r"listening on (\S+:\d+)").group(1)
    env = {"GOD_ADDRESS": address}
    assert spawn("producer", "--rounds", "1", "--per-round", "3", env_extra=env, script=True).wait() == 0
    c = spawn("consumer", "--processes", "1", env_extra=env, script=True)
    wait_for_results(results, 3)
    # Each script's own pid is its role's: one SIGTERM drains the consumer and stops god cleanly
    for p in (c, g):
        p.signal(signal.SIGTERM)
        assert p.wait() == 0, p.text()
    assert "stopping on SIGTERM" in g.text()


def test_status_prints_gods_counts_and_json(god: God, spawn: Callable[..., Proc]) -> None:
    env = addr_env(god)
    # a producer that put its first round and waits for the next: god lists it while it runs
    producer = spawn("producer", "--rounds", "2", "--per-round", "4", "--interval", "60", env_extra=env)
    producer.wait_for(r"round 1/2: put 4 tasks", stream="err")
    text = spawn("god", "status", env_extra=env)
    assert text.wait() == 0, text.text()
    assert f"god at {god.address}" in text.text() and "waiting 4" in text.text()
    assert "producer " in text.text() and "put 4" in text.text()
    producer.signal(signal.SIGINT)
    assert producer.wait() == exitcodes.INTERRUPTED
    as_json = spawn("god", "status", "--json", env_extra=env)
    assert as_json.wait() == 0
    stats = json.loads("\n".join(as_json.out))
    assert (stats["waiting"], stats["running"], stats["done"]) == (4, 0, 0)
    spawn("consumer", "--burst", "--processes", "1", env_extra=env).wait()
    wait_for_results(god.results, 4)


def test_status_of_an_unreachable_god_says_so(spawn: Callable[..., Proc]) -> None:
    p = spawn("god", "status", "--give-up-after", "0.5", env_extra={"GOD_ADDRESS": "127.0.0.1:1"})
    assert p.wait() == exitcodes.UNREACHABLE
    assert "god not reachable at 127.0.0.1:1" in p.text() and "Traceback" not in p.text()


def test_status_watch_refreshes_until_ctrl_c(god: God, spawn: Callable[..., Proc]) -> None:
    env = addr_env(god)
    w = spawn("god", "status", "--watch", "--interval", "0.2", env_extra=env)
    w.wait_for(rf"god at {god.address}, up")
    assert spawn("producer", "--rounds", "1", "--per-round", "7", env_extra=env).wait() == 0
    w.wait_for(r"waiting 7 ")  # a later refresh shows the new tasks
    w.signal(signal.SIGINT)
    assert w.wait() == 0, w.text()


def test_the_producer_shows_a_progress_bar_on_a_terminal(god: God, env: dict[str, str], tmp_path: Path) -> None:
    # Given a producer whose stderr is a terminal (a pseudo-terminal here)
    src = tmp_path / "t.jsonl"
    src.write_text("".join(f"{i}\n" for i in range(3000)))
    leader, follower = pty.openpty()
    p = subprocess.Popen([sys.executable, "-m", "producer", "--from", str(src)], cwd=REPO,
                         env={**env, **addr_env(god), "COLUMNS": "100"}, stdin=subprocess.DEVNULL,
                         stdout=subprocess.DEVNULL, stderr=follower)
    os.close(follower)
    out = b""
    try:
        while True:  # read until the producer closes its end
            try:
                chunk = os.read(leader, 65536)
            except OSError:
                break
            if not chunk:
                break
            out += chunk
        assert p.wait(30) == 0
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
        os.close(leader)
    text = re.sub(rb"\x1b\[[0-9;?]*[a-zA-Z]", b"", out).decode(errors="replace")
    # Then it drew a bar that reached the end, with the count of tasks put, and logged above it
    assert "putting the file" in text and "100%" in text and "3,000 tasks put" in text, text[-2000:]
    assert "done: god accepted all 3000 tasks" in text


def test_god_shows_the_live_view_on_a_terminal(env: dict[str, str], spawn: Callable[..., Proc]) -> None:
    # Given god with its output on a terminal (a pseudo-terminal here)
    leader, follower = pty.openpty()
    g = subprocess.Popen([sys.executable, "-m", "god", "--address", "127.0.0.1:0", "--no-journal"], cwd=REPO,
                         env={**env, "COLUMNS": "120", "LINES": "40"}, stdin=subprocess.DEVNULL, stdout=follower,
                         stderr=follower)
    os.close(follower)
    out = bytearray()

    def screen() -> str:
        try:
            out.extend(os.read(leader, 65536))
        except OSError:
            pass
        return re.sub(r"\x1b\[[0-9;?]*[a-zA-Z]", "", out.decode(errors="replace"))

    consumer = None
    try:
        os.set_blocking(leader, False)
        address = wait_until(lambda: re.search(r"listening on (\S+:\d+)", screen()), 15, "god to listen").group(1)
        env_god = {"GOD_ADDRESS": address}
        assert spawn("producer", "--rounds", "1", "--per-round", "5", env_extra=env_god).wait() == 0
        consumer = spawn("consumer", "--processes", "1", env_extra=env_god)
        # Then the view shows the totals, a row for the consumer, and results scroll above it
        # (all of it polled for: a refresh read in the middle has only part of a frame)
        shown = (f"god {address}", "done 5", "consumers (1 alive)", "producers")
        text = wait_until(lambda: all(s in (t := screen()) for s in shown) and t, 20, "the live view to show the work")
        assert re.search(r"\d+ \* \d+ = \d+", text)  # a result, printed the tutorial's way
    finally:
        if consumer is not None:  # before god: its goodbye is heard, not tried for seconds
            consumer.stop()
        g.terminate()
        try:
            g.wait(15)
        except subprocess.TimeoutExpired:
            g.kill()
            g.wait()
        os.close(leader)


@pytest.mark.timeout(180)
def test_the_demo_runs_everything_and_leaves_nothing_behind(env: dict[str, str]) -> None:
    # When the README's first command runs (its own key and a free port; the venv is there)
    demo = subprocess.Popen([str(REPO / "scripts" / "demo.sh")], cwd=REPO, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        out, err = demo.communicate(timeout=150)
    finally:  # a demo that hangs or fails leaves nothing running
        try:
            os.killpg(demo.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    # Then it shows 15 results, stops what it started, and removes its folder
    assert demo.returncode == 0, out + err
    assert "== done: 15 results" in out, out
    assert re.search(r"^== dashboard: http://127\.0\.0\.1:\d+/login#token=[0-9a-f]{40}$", out, re.M), out
    work = re.search(r"results: (\S+)/results\.jsonl", out)
    assert work is not None, out
    assert not Path(work.group(1)).exists()


def test_cluster_status_gives_each_ended_process_its_exit_code(env: dict[str, str], tmp_path: Path) -> None:
    # Given a cluster on this machine: god, a producer that finishes, one that fails on a missing file
    port = free_port()
    hosts = tmp_path / "cluster.hosts"
    hosts.write_text(f"address 127.0.0.1:{port}\n"
                     f"god local --results {tmp_path / 'r.jsonl'} --no-journal\n"
                     "producer local --rounds 1 --per-round 2\n"
                     f"producer local --from {tmp_path / 'missing.jsonl'}\n")
    cluster_env = {**env, "GOD_CLUSTER_DIR": str(tmp_path / "cluster")}

    def cluster(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(REPO / "scripts" / "cluster.sh"), *args], env=cluster_env, capture_output=True,
                              text=True, timeout=60)

    try:
        up = cluster("up", str(hosts))
        assert up.returncode == 0, up.stdout + up.stderr
        # When both producers have ended
        def ended() -> subprocess.CompletedProcess[str] | None:
            s = cluster("status")
            return s if s.stdout.count("exited, code") == 2 else None

        status = wait_until(ended, 30, "both producers to end")
        # Then status shows each one's code, and says by its own that one failed
        assert re.search(r"producer\s+local\s+\d+\s+exited, code 0\n", status.stdout), status.stdout
        assert re.search(r"producer\s+local\s+\d+\s+exited, code 3\n", status.stdout), status.stdout
        assert re.search(r"god\s+local\s+\d+\s+running\n", status.stdout), status.stdout
        assert status.returncode == 1
    finally:
        down = cluster("down")
    assert down.returncode == 0, down.stdout + down.stderr


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
