"""The systemd units (scripts/systemd/): systemd's own check of each, and each unit's command
run as systemd would run it, from the installed wheel (tests/support/units.py; PID 1 here is not
systemd, so the units themselves are not started)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from shared import exitcodes
from tests.support.gods import God, god_stats
from tests.support.helpers import Proc, wait_for_results, wait_until, write_tasks
from tests.support.installed import installed_bin
from tests.support.units import UNITS, start, unit_text

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]  # the wheel's venv, made once a run (tests/support/installed.py)

HERE = f"{sys.version_info[0]}.{sys.version_info[1]}"
UNIT_NAMES = ("god.service", "consumer@images.service", r"consumer@pages\x2cimages.service")


@pytest.fixture
def venv(install_base: Path) -> Path:
    """The venv the units' /opt/god-tasks stands for: the wheel installed."""
    return installed_bin(install_base, HERE).parent


def _root(tmp_path: Path, key: str) -> Path:
    root = tmp_path / "root"
    (root / "etc" / "god").mkdir(parents=True)
    keyfile = root / "etc" / "god" / "authkey"
    keyfile.write_text(key + "\n")
    keyfile.chmod(0o600)
    return root


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed")
@pytest.mark.parametrize("name", UNIT_NAMES)
def test_systemd_finds_nothing_to_say_of_each_unit(venv: Path, tmp_path: Path, name: str) -> None:
    assert {p.name for p in UNITS.glob("*.service")} == {"god.service", "consumer@.service"}
    path = tmp_path / name
    path.write_text(unit_text(name, installed=venv))  # (it checks that the command exists)
    done = subprocess.run(["systemd-analyze", "verify", str(path)], capture_output=True, text=True, timeout=60)
    # it exits 0 for a setting it does not know or cannot parse, and says so: nothing may be said
    assert done.returncode == 0 and done.stdout + done.stderr == "", done


def test_god_and_consumers_run_as_their_units_start_them_and_a_stop_drains(
        venv: Path, tmp_path: Path, env: dict[str, str], spawn: Callable[..., Proc]) -> None:
    root = _root(tmp_path, env["GOD_AUTHKEY"])
    # god listening beyond its machine, as on a real coordinator (clients here reach it on loopback)
    (root / "etc" / "god" / "god.env").write_text("GOD_ADDRESS=0.0.0.0:0\nGOD_OPTS=--lease-timeout 5\n")
    g = start("god.service", root, installed=venv)
    assert "GOD_AUTHKEY" not in g.env and g.env["GOD_AUTHKEY_FILE"].endswith("/credentials/god.service/authkey")
    god = spawn(Path(g.argv[0]).name, *g.argv[1:], installed=Path(g.argv[0]).parent, environment=g.env, cwd=g.cwd)
    port = god.wait_for(r"listening on \S+:(\d+)").group(1)
    address = f"127.0.0.1:{port}"
    state = root / "var" / "lib" / "god"
    assert [p.name for p in state.glob("journal-*.sqlite3")] == ["journal-0.sqlite3"]  # under StateDirectory=
    # its connection file, under StateDirectory= too, is what a compute host is given: the one file copied
    written = state / f"connection-{port}.json"
    assert god.wait_for(r"^connection file: (\S+)").group(1) == str(written)
    shutil.copy(written, root / "etc" / "god" / "connection")
    (root / "etc" / "god" / "consumer.env").write_text(f"GOD_ADDRESS={address}\n")
    (root / "etc" / "god" / "consumer-images.env").write_text('CONSUMER_OPTS="--processes 2 --task time:sleep"\n')
    c = start("consumer@images.service", root, installed=venv)
    assert "GOD_AUTHKEY" not in c.env and "GOD_AUTHKEY_FILE" not in c.env
    assert c.env["GOD_CONNECTION"].endswith("/credentials/consumer@images.service/connection")
    assert c.argv[1:] == ["--queues", "images", "--log-json", "--no-by-value", "--allow", "consumer.tasks:*", "--processes",
                          "2", "--task", "time:sleep"]
    consumer = spawn("consumer", *c.argv[1:], installed=venv / "bin", environment=c.env, cwd=c.cwd)
    # a second instance, of two queues (its name escaped as systemd-escape does)
    c2 = start(r"consumer@pages\x2cimages.service", root, installed=venv)
    assert c2.argv[1:4] == ["--queues", "pages,images", "--log-json"] and c2.cwd.name == r"pages\x2cimages"
    second = spawn("consumer", *c2.argv[1:], installed=venv / "bin", environment=c2.env, cwd=c2.cwd)

    producer = spawn("producer", "--queue", "images", "--from", str(write_tasks(tmp_path / "t.jsonl", [0.01] * 6)),
                     env_extra={"GOD_ADDRESS": address})
    assert producer.wait() == 0, producer.text()
    results = wait_for_results(state / "results.jsonl", 6)  # the results file the unit names
    assert all(r["ok"] for r in results)
    # logs are JSON lines (the service's journal)
    logged = [json.loads(line) for line in consumer.err if line.startswith("{")]
    assert any("running time:sleep" in e["message"] for e in logged), consumer.text()

    # a stop (SIGTERM to the consumer alone: KillMode=mixed) lets the running tasks finish
    assert c.get("KillMode") == ["mixed"] and c.get("KillSignal") == ["SIGTERM"]
    os.kill(second.pid, signal.SIGTERM)
    assert second.wait(30) == exitcodes.OK, second.text()
    slow = spawn("producer", "--queue", "images", "--from", str(write_tasks(tmp_path / "s.jsonl", [1.5] * 2)),
                 env_extra={"GOD_ADDRESS": address})
    assert slow.wait() == 0
    observed = God(god, address, state / "results.jsonl")
    wait_until(lambda: god_stats(observed, env)["running"] == 2, 20, "both slow tasks running")
    os.kill(consumer.pid, signal.SIGTERM)
    assert consumer.wait(60) == exitcodes.OK, consumer.text()
    # what ran finished; what a worker held unstarted (prefetched) went back to wait, unlost
    done = [r for r in wait_for_results(state / "results.jsonl", 7) if r["payload"] == 1.5]
    assert all(r["ok"] for r in done), done
    assert god_stats(observed, env)["waiting"] == 2 - len(done), done
    os.kill(god.pid, signal.SIGTERM)
    assert god.wait(30) == exitcodes.OK, god.text()


@pytest.mark.parametrize("unit", ["god.service", "consumer@images.service"])
@pytest.mark.parametrize("fault", ["missing", "open to others"])
def test_a_units_key_or_connection_missing_or_open_to_others_fails_in_one_line_not_restarted(
        venv: Path, tmp_path: Path, spawn: Callable[..., Proc], unit: str, fault: str) -> None:
    root = _root(tmp_path, "k" * 64)
    connection = root / "etc" / "god" / "connection"
    connection.write_text('{"address": "127.0.0.1:1", "authkey_base64": "aw==", "certificate": '
                          '"-----BEGIN CERTIFICATE-----"}\n')
    connection.chmod(0o600)
    u = start(unit, root, installed=venv)
    key = Path(u.env["GOD_AUTHKEY_FILE"] if unit == "god.service" else u.env["GOD_CONNECTION"])
    if fault == "missing":
        key.unlink()  # as with a key kept in an EnvironmentFile's GOD_AUTHKEY_FILE that is not there
    else:
        key.chmod(0o644)
    p = spawn(Path(u.argv[0]).name, *u.argv[1:], installed=Path(u.argv[0]).parent, environment=u.env, cwd=u.cwd)
    code = p.wait(30)
    assert code == exitcodes.CONFIG, p.text()
    (line,) = p.err  # one line: a JSON log line, as the unit logs
    says = "does not exist" if fault == "missing" else "is open to others (mode 0644)"
    assert says in json.loads(line)["message"], line
    # the service manager shows the failure instead of starting it again and again
    assert str(code) in u.get("RestartPreventExitStatus")[0].split()
