"""Across hosts, secure by default: god beyond its machine speaks TLS with a certificate of
its own, clients trust exactly that certificate from god's connection file, and plain TCP
beyond a machine is only there when asked for by name.

Every host is a network namespace the test makes (tests/support/netns.py); traffic stays in
them. Needs root and iproute2, as CI has.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from god.transport.identity import identity
from shared import exitcodes
from tests.support.helpers import Proc, read_results, wait_until
from tests.support.netns import Network, needs_namespaces

pytestmark = [pytest.mark.timeout(120), needs_namespaces]

PORT = 5678


def _god(spawn: Callable[..., Proc], ns: str, *args: str) -> Proc:
    god = spawn("god", "--address", f"0.0.0.0:{PORT}", "--no-journal", "--plain", *args, netns=ns)
    god.wait_for("^listening on")
    return god


def _copied(path: Path, to: Path) -> Path:
    """The connection file as another host gets it: a copy of its own, mode 600."""
    shutil.copyfile(path, to)
    to.chmod(0o600)
    return to


def _keyless(env: dict[str, str], **more: str) -> dict[str, str]:
    """A client's environment without the key: what it knows, it knows from what it is given."""
    return {**{k: v for k, v in env.items() if k != "GOD_AUTHKEY"}, **more}


def test_a_default_god_elsewhere_serves_over_tls_what_its_connection_file_lets_in(
    net: Network, spawn: Callable[..., Proc], env: dict[str, str], tmp_path: Path
) -> None:
    # Given god on one host, started as the README says, and a client host
    god_ns, god_ip = net.add_host("god")
    client_ns, _ = net.add_host("client")
    results = tmp_path / "results.jsonl"
    god = _god(spawn, god_ns, "--results", str(results))
    # Then god wrote one connection file: its address, its key and its own certificate, for its owner only
    written = Path(god.wait_for(r"^connection file: (\S+)").group(1))
    assert written.stat().st_mode & 0o777 == 0o600
    content = json.loads(written.read_text())
    assert content["address"].endswith(f":{PORT}") and "BEGIN CERTIFICATE" in content["certificate"]
    wait_until(lambda: "with TLS beyond this machine" in god.text(), 10, "god to say it serves TLS")
    conn = _copied(written, tmp_path / "god.conn")

    # When a consumer and a producer there are given the file (and no key) and god's address
    there = _keyless(env, GOD_CONNECTION=str(conn), GOD_ADDRESS=f"{god_ip}:{PORT}")
    spawn("consumer", "--processes", "1", netns=client_ns, environment=there)
    producer = spawn("producer", "--rounds", "2", netns=client_ns, environment=there)
    # Then they are served: every task has its result
    assert producer.wait(30) == 0, producer.text()
    wait_until(lambda: len(read_results(results)) >= 20, 30, "20 results")

    # And a client with no certificate of god's will not send in plain: one line, at once
    t0 = time.monotonic()
    bare = spawn("producer", "--rounds", "1", netns=client_ns,
                 environment={**env, "GOD_ADDRESS": f"{god_ip}:{PORT}"})
    assert bare.wait(30) == exitcodes.CONFIG
    assert "beyond this machine and we have no certificate of god's" in bare.text()
    assert time.monotonic() - t0 < 10, "it retried"
    # and one that asks for plain by name is told that god speaks TLS
    plain = spawn("producer", "--rounds", "1", "--insecure-plain-tcp", netns=client_ns,
                  environment={**env, "GOD_ADDRESS": f"{god_ip}:{PORT}"})
    assert plain.wait(30) == exitcodes.CONFIG
    assert "requires TLS" in plain.text()


def test_an_impostor_gets_no_session_from_a_client_set_up_as_the_readme_says(
    net: Network, spawn: Callable[..., Proc], env: dict[str, str], tmp_path: Path
) -> None:
    # Given god on one host, and an impostor on another that passes the key's challenge
    # from god to the clients that reach it, and their answers back
    god_ns, god_ip = net.add_host("god")
    client_ns, _ = net.add_host("client")
    impostor_ns, impostor_ip = net.add_host("impostor")
    god = _god(spawn, god_ns)
    conn = _copied(Path(god.wait_for(r"^connection file: (\S+)").group(1)), tmp_path / "god.conn")
    own = identity(tmp_path / "impostor")  # a certificate of its own, made as god makes one
    impostor = spawn("tests/support/impostor.py", "7777", god_ip, str(PORT), str(own.cert), str(own.key),
                     netns=impostor_ns)
    impostor.wait_for("impostor listening")
    wrong = f"{impostor_ip}:7777"

    # When a client set up with god's connection file is sent to the impostor
    fooled = spawn("producer", "--rounds", "1", "--give-up-after", "5", netns=client_ns,
                   environment=_keyless(env, GOD_CONNECTION=str(conn), GOD_ADDRESS=wrong))
    # Then it refuses the impostor's certificate, and the impostor gets nothing
    assert fooled.wait(30) == exitcodes.CONFIG, fooled.text()
    assert "not the one we trust" in fooled.text()
    impostor.wait_for(r"NO SESSION")
    assert not any(line == "SESSION" for line in impostor.out)

    # And the same with plain asked for by name: the impostor holds a session on god
    # (what the README says --insecure-plain-tcp costs; it shows the attack is real)
    spawn("producer", "--rounds", "1", "--give-up-after", "3", "--insecure-plain-tcp", netns=client_ns,
          environment={**env, "GOD_ADDRESS": wrong})
    impostor.wait_for(r"^SESSION$")


def test_tutorial_clients_on_other_hosts_need_plain_asked_for_by_name(
    net: Network, spawn: Callable[..., Proc], env: dict[str, str]
) -> None:
    # Given a tutorial worker and master (the stock BaseManager, no TLS) on another host
    god_ns, god_ip = net.add_host("god")
    client_ns, _ = net.add_host("client")
    tutorial_env = {**env, "GOD_ADDRESS": f"{god_ip}:{PORT}"}
    args = ("tests/support/tutorial_clients.py", "master", "get_task_queue", "get_result_queue")
    # When god is started as the README says, they are told that god speaks only TLS
    god = _god(spawn, god_ns)
    refused = spawn(*args, netns=client_ns, environment=tutorial_env)
    assert refused.wait(30) != 0
    assert "TLS-REQUIRED" in refused.text()
    god.stop()
    # and with god started --insecure-plain-tcp, they are served as on one machine
    _god(spawn, god_ns, "--insecure-plain-tcp")
    master = spawn(*args, netns=client_ns, environment=tutorial_env)
    master.wait_for("Try get results")
    spawn("tests/support/tutorial_clients.py", "worker", "get_task_queue", "get_result_queue", netns=client_ns,
          environment=tutorial_env)
    assert master.wait(30) == 0, master.text()
    assert sum(line.startswith("Result: ") for line in master.out) == 10
