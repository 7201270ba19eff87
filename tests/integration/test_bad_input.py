"""Every mistake a user can make gets one clear line and a non-zero exit, never a traceback."""

from __future__ import annotations

import signal
import socket
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from shared import exitcodes
from tests.support.gods import God, addr_env, god_stats
from tests.support.helpers import assert_clean_failure, Proc, wait_for_results

pytestmark = pytest.mark.timeout(60)


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.parametrize("role", ["producer", "consumer"])
def test_wrong_authkey_is_refused_clearly(god: God, spawn: Callable[..., Proc], role: str) -> None:
    p = spawn(role, "--rounds", "1", env_extra={**addr_env(god), "GOD_AUTHKEY": "not-the-key"}) if role == "producer" \
        else spawn(role, env_extra={**addr_env(god), "GOD_AUTHKEY": "not-the-key"})
    assert_clean_failure(p, exitcodes.AUTH, f"god at {god.address} refused our authkey")


@pytest.mark.parametrize("role", ["producer", "consumer"])
def test_unreachable_god_is_named_after_a_bounded_wait(spawn: Callable[..., Proc], role: str) -> None:
    port = closed_port()
    p = spawn(role, "--give-up-after", "1", env_extra={"GOD_ADDRESS": f"127.0.0.1:{port}"})
    assert_clean_failure(p, exitcodes.UNREACHABLE, f"god not reachable at 127.0.0.1:{port} after 1s")


@pytest.mark.parametrize("role", ["god", "producer", "consumer"])
@pytest.mark.parametrize(("address", "says"), [
    ("somehost:http", "port 'http' is not a number"),
    ("not an address", "'not an address' cannot be a host name"),  # it retried DNS for 180 s
    ("http://127.0.0.1:5678", "is a URL: give HOST:PORT"),
])
def test_an_address_that_does_not_parse(spawn: Callable[..., Proc], role: str, address: str, says: str) -> None:
    p = spawn(role, "--address", address)
    assert_clean_failure(p, exitcodes.CONFIG, says)


NO_SUCH_HOST = "nosuchhost.invalid"  # .invalid never resolves (RFC 2606)


def _resolver_says_no_such_host() -> bool:
    try:
        socket.getaddrinfo(NO_SUCH_HOST, 5678)
    except socket.gaierror as e:
        return e.errno in (getattr(socket, "EAI_NONAME", None), getattr(socket, "EAI_NODATA", None))
    return False


@pytest.mark.parametrize("role", ["producer", "consumer", "god status"])
def test_a_host_name_that_does_not_exist_is_named_at_once(spawn: Callable[..., Proc], role: str) -> None:
    if not _resolver_says_no_such_host():
        pytest.skip(f"this machine's resolver does not say {NO_SUCH_HOST} does not exist (it may be down: then "
                    "clients wait, as for a god that is starting)")
    # (it retried for 180 s, as if god were starting)
    p = spawn(*role.split(), env_extra={"GOD_ADDRESS": f"{NO_SUCH_HOST}:5678"})
    assert_clean_failure(p, exitcodes.CONFIG, f"god's address {NO_SUCH_HOST}:5678: no such host")
    assert "retry" not in p.text(), p.text()


def test_port_already_in_use(god: God, spawn: Callable[..., Proc]) -> None:
    p = spawn("god", "--address", god.address)
    assert_clean_failure(p, exitcodes.ADDRESS_IN_USE, f"cannot listen on {god.address}: the port is already in use")


@pytest.mark.parametrize("spec,says", [
    ("no_such_module_xyz:run", "cannot import module 'no_such_module_xyz'"),
    ("consumer.tasks:nope", "has no attribute 'nope'"),
    ("square", "is not of the form module:function"),
    ("tests.support.tasks:a_generator", "is a generator function; a task returns one value"),
])
def test_a_task_that_does_not_import_fails_before_connecting(spawn: Callable[..., Proc], spec: str, says: str) -> None:
    # No god runs: the task is checked first, so the error comes at once.
    p = spawn("consumer", "--task", spec, env_extra={"GOD_ADDRESS": f"127.0.0.1:{closed_port()}"})
    assert_clean_failure(p, exitcodes.CONFIG, says)


def test_a_bad_json_line_is_named_and_the_lines_before_it_are_kept(
    god: God, spawn: Callable[..., Proc], tmp_path: Path, env: dict[str, str]
) -> None:
    src = tmp_path / "tasks.jsonl"
    src.write_text("1\n2\n{oops\n4\n")
    p = spawn("producer", "--from", str(src), env_extra=addr_env(god))
    assert_clean_failure(p, exitcodes.CONFIG, f"{src}:3: not valid JSON")
    # the lines before it are put, and god holds them, before the producer exits
    assert "(2 tasks put before it)" in p.text()
    assert god_stats(god, env)["accepted"] == 2
    spawn("consumer", "--burst", "--processes", "1", env_extra=addr_env(god))
    assert sorted(r["payload"] for r in wait_for_results(god.results, 2)) == [1, 2]


@pytest.mark.parametrize("god_args, line3, says", [
    ((), "[" * 600 + "]" * 600, "the payload cannot be pickled (RecursionError"),
    (("--max-payload", "1000"), '"' + "x" * 2000 + '"', "the payload is 2,0"),
])
def test_a_payload_god_cannot_take_is_named_and_the_lines_before_it_are_kept(
    start_god: Callable[..., God], spawn: Callable[..., Proc], tmp_path: Path,
    god_args: tuple[str, ...], line3: str, says: str,
) -> None:
    g = start_god(*god_args)
    src = tmp_path / "tasks.jsonl"
    src.write_text(f"1\n2\n{line3}\n4\n")
    p = spawn("producer", "--from", str(src), env_extra=addr_env(g))
    assert_clean_failure(p, exitcodes.CONFIG, f"{src}:3: {says}")
    if god_args:
        assert "over god's --max-payload of 1,000" in p.text()
    spawn("consumer", "--burst", "--processes", "1", env_extra=addr_env(g))
    assert sorted(r["payload"] for r in wait_for_results(g.results, 2)) == [1, 2]


def test_a_results_file_god_cannot_open_is_named(spawn: Callable[..., Proc]) -> None:
    p = spawn("god", "--address", "127.0.0.1:0", "--results", "/sys/god-results.jsonl")
    assert_clean_failure(p, exitcodes.CONFIG, "cannot open results file /sys/god-results.jsonl")


def test_a_missing_key_file_and_a_client_without_any_key(spawn: Callable[..., Proc], tmp_path: Path) -> None:
    p = spawn("consumer", "--authkey-file", str(tmp_path / "nope"))
    assert_clean_failure(p, exitcodes.CONFIG, f"authkey file {tmp_path / 'nope'} does not exist")
    p = spawn("producer", env_extra={"GOD_AUTHKEY": ""})
    assert_clean_failure(p, exitcodes.CONFIG, "GOD_AUTHKEY is set but empty")


def test_the_key_never_shows_in_output(god: God, spawn: Callable[..., Proc], env: dict[str, str]) -> None:
    assert spawn("producer", "--rounds", "1", env_extra=addr_env(god)).wait() == 0
    c = spawn("consumer", "--burst", "--processes", "1", "--log-level", "DEBUG", env_extra=addr_env(god))
    assert c.wait() == 0
    wait_for_results(god.results, 10)
    for p in (god.proc, c):
        assert env["GOD_AUTHKEY"] not in p.text()
    assert env["GOD_AUTHKEY"] not in god.results.read_text()


def test_a_port_where_no_god_speaks_is_named(spawn: Callable[..., Proc]) -> None:
    # Given a listener that answers the handshake with something else
    with socket.socket() as srv:
        srv.bind(("127.0.0.1", 0))
        srv.listen()
        port = srv.getsockname()[1]

        def answer_garbage() -> None:
            conn, _ = srv.accept()
            with conn:
                conn.sendall(b"\x00\x00\x00\x10HTTP/1.1 400 Bad")
                conn.recv(100)

        t = threading.Thread(target=answer_garbage, daemon=True)
        t.start()
        p = spawn("producer", "--give-up-after", "2", env_extra={"GOD_ADDRESS": f"127.0.0.1:{port}"})
        assert_clean_failure(p, exitcodes.AUTH, "does not speak the manager handshake")


def test_a_results_file_on_a_full_disk_is_reported_and_god_keeps_serving(spawn: Callable[..., Proc]) -> None:
    # Given a god whose results file is /dev/full (every write fails with ENOSPC)
    p = spawn("god", "--address", "127.0.0.1:0", "--results", "/dev/full")
    address = p.wait_for(r"listening on (\S+:\d+)").group(1)
    env = {"GOD_ADDRESS": address}
    # When tasks run
    assert spawn("producer", "--rounds", "1", "--per-round", "3", env_extra=env).wait() == 0
    assert spawn("consumer", "--burst", "--processes", "1", env_extra=env).wait() == 0
    # Then god says so once, still prints the results, and exits non-zero naming what was not written
    p.wait_for(r"cannot write results file /dev/full: No space left on device", stream="err")
    p.wait_for(r"^\d+ \* \d+ = \d+$")
    p.signal(signal.SIGTERM)
    assert p.wait() == exitcodes.FAILED
    assert "3 results could not be written to /dev/full" in p.text()
    assert "Traceback" not in p.text()


@pytest.mark.parametrize("role, args, says", [
    ("producer", ("--delay", "soon"), "producer: Invalid value for '--delay'"),
    ("producer", ("--retry-backoff", "x"), "producer: Invalid value for '--retry-backoff'"),
    ("producer", ("--rounds", "0"), "producer: Invalid value for '--rounds'"),
    ("consumer", ("--processes", "none"), "consumer: Invalid value for '--processes'"),
    ("consumer", ("--concurrency", "0"), "consumer: Invalid value for '--concurrency'"),
    ("god", ("--capacity", "many"), "god: Invalid value for '--capacity'"),
    ("god", ("--no-such-flag",), "god: No such option: --no-such-flag"),
])
def test_a_flag_the_parser_refuses_is_one_line(
    spawn: Callable[..., Proc], role: str, args: tuple[str, ...], says: str
) -> None:
    p = spawn(role, *args)
    assert p.wait(20) == exitcodes.USAGE, p.text()
    assert p.out == [] and len(p.err) == 1 and p.err[0].startswith(says), p.text()


def test_a_metrics_port_in_use_fails_before_god_says_it_listens(spawn: Callable[..., Proc]) -> None:
    # Given a port some other program holds
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        # When god is asked to serve metrics there
        p = spawn("god", "--address", "127.0.0.1:0", "--metrics-port", str(port))
        # Then it fails with one line, and never said it listens (scripts wait for that line)
        assert_clean_failure(p, exitcodes.ADDRESS_IN_USE, f"--metrics-port: cannot listen on 127.0.0.1:{port}")
        assert not any("listening on" in line for line in p.out), p.text()


def test_a_producer_stopped_by_ctrl_c_says_so_and_does_not_claim_success(god: God, spawn: Callable[..., Proc]) -> None:
    # Given a producer putting a round a second
    p = spawn("producer", "--rounds", "100", "--per-round", "2", "--interval", "1", env_extra=addr_env(god))
    p.wait_for(r"round 1/100: put 2 tasks", stream="err")
    # When it gets one Ctrl-C
    p.signal(signal.SIGINT)
    # Then it stops after what it sent is confirmed, says how far it got, and exits 130, not 0
    assert p.wait() == exitcodes.INTERRUPTED, p.text()
    assert "stopped by SIGINT: god accepted" in p.text() and "done" not in p.text(), p.text()
