"""God's door: refused keys logged, slow or silent connections bounded, TLS on the wire."""

from __future__ import annotations

import json
import socket
import struct
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from shared import exitcodes
from shared.client import GodClient
from tests.support.certs import Certs, make_certs
from tests.support.gods import God, addr_env, settings_for
from tests.support.helpers import Proc, wait_for_results, wait_until
from tests.support.helpers import assert_clean_failure
from tests.support.helpers import proc_status
from tests.support.relay import Relay

pytestmark = pytest.mark.timeout(60)



def test_a_peer_with_a_wrong_key_is_logged_by_god(god: God, spawn: Callable[..., Proc]) -> None:
    p = spawn("producer", "--rounds", "1", env_extra={**addr_env(god), "GOD_AUTHKEY": "not-the-key"})
    assert p.wait() == exitcodes.AUTH
    god.proc.wait_for(r"refused 127\.0\.0\.1:\d+: wrong authkey", stream="err")
    status = spawn("god", "status", "--json", env_extra=addr_env(god))
    assert status.wait() == 0
    assert json.loads("\n".join(status.out))["refused"] == 1  # counted, for status and metrics


def test_silent_connections_are_dropped_and_a_flood_is_bounded(
    start_god: Callable[..., God], spawn: Callable[..., Proc]
) -> None:
    # Given a god that gives each connection 1 s to shake hands
    g = start_god("--max-connections", "4", "--handshake-timeout", "1")
    host, port = g.address.rsplit(":", 1)
    base = proc_status(g.proc.pid)["threads"]
    # When 30 connections from one address open and never say a word
    flood = [socket.create_connection((host, int(port))) for _ in range(30)]
    try:
        # Then god turns away those over the handshakes' budget of one address, says so, and
        # none of them costs it a thread
        g.proc.wait_for(r"turned away 127\.0\.0\.1:\d+: 16 connections from 127\.0\.0\.1 shake hands already",
                        stream="err")
        assert proc_status(g.proc.pid)["threads"] <= base
        # and drops the silent ones when their time is up, so a real client gets in
        g.proc.wait_for(r"dropped 127\.0\.0\.1:\d+: handshakes not done within 1s", stream="err")
        assert spawn("producer", "--rounds", "1", env_extra=addr_env(g)).wait() == 0
    finally:
        for s in flood:
            s.close()


def test_thousands_of_silent_and_trickling_sockets_do_not_keep_a_client_out(
    god: God, env: dict[str, str]
) -> None:
    # Given 1,100 silent sockets and 1,100 that trickle a byte of their answer every 0.3 s,
    # from 200 addresses (each under the budget of one address), held open
    host, port = god.address.rsplit(":", 1)
    base = proc_status(god.proc.pid)["threads"]
    socks: list[socket.socket] = []
    stop = threading.Event()
    try:
        for i in range(2200):
            s = socket.socket()
            s.bind((f"127.1.{i % 200}.1", 0))
            s.settimeout(5)
            s.connect((host, int(port)))
            socks.append(s)
        trickling = socks[1::2]
        for s in trickling:
            try:
                s.sendall(struct.pack("!i", 200))  # an answer of 200 bytes announced, then a byte at a time
            except OSError:
                pass

        def trickle() -> None:
            while not stop.wait(0.3):
                for s in trickling:
                    try:
                        s.send(b"x")
                    except OSError:
                        pass

        threading.Thread(target=trickle, daemon=True).start()
        # When a real client connects and calls
        started = time.monotonic()
        c = GodClient(settings_for(god, env), name="real", role="status")
        try:
            assert c.stats()["waiting"] == 0
        finally:
            c.close()
        # Then it is served within a second, and god held no thread for any of them
        assert time.monotonic() - started < 1.0
        assert proc_status(god.proc.pid)["threads"] <= base
    finally:
        stop.set()
        for s in socks:
            s.close()


def test_a_handshake_has_one_deadline_however_slowly_bytes_trickle_in(
    start_god: Callable[..., God], spawn: Callable[..., Proc]
) -> None:
    # Given a god that gives a connection 1 s for its handshakes
    g = start_god("--handshake-timeout", "1")
    host, port = g.address.rsplit(":", 1)
    # When a peer answers its challenge a byte at a time, each well within a read's timeout (an
    # answer announced as 200 bytes long, at most what god reads of one: it would take a minute)
    with socket.create_connection((host, int(port)), timeout=10) as s:
        s.recv(4096)  # the challenge
        s.sendall(struct.pack("!i", 200))
        started = time.monotonic()

        def dropped() -> bool:
            try:
                s.sendall(b"x")
                s.setblocking(False)
                try:
                    return s.recv(4096) == b""
                except BlockingIOError:
                    return False
                finally:
                    s.setblocking(True)
            except OSError:  # reset: god closed it
                return True

        # Then god drops it when the handshake's time is up, not at the peer's pace
        wait_until(lambda: dropped() or time.sleep(0.3), 10, "god to drop the trickling peer")
        assert time.monotonic() - started < 5
    g.proc.wait_for(r"dropped 127\.0\.0\.1:\d+: handshakes not done within 1s", stream="err")
    assert spawn("producer", "--rounds", "1", env_extra=addr_env(g)).wait() == 0  # and god serves on


def test_an_idle_connection_is_closed_and_our_client_reconnects_unnoticed(
    start_god: Callable[..., God], env: dict[str, str]
) -> None:
    g = start_god("--idle-timeout", "0.5")

    def open_connections() -> int:
        """God's count, asked over a connection of its own (counted too, so one more)."""
        c = GodClient(settings_for(g, env), name="counter", role="status")
        try:
            return int(c.stats()["connections"]) - 1
        finally:
            c.close()

    client = GodClient(settings_for(g, env), name="idler", role="producer")
    try:
        assert client.stats()["connections"] == 1  # its own
        wait_until(lambda: open_connections() == 0, 10, "god to close the idle connection")
        assert client.stats()["waiting"] == 0  # a new connection, made without a word
    finally:
        client.close()


@pytest.mark.parametrize("host, warned", [("0.0.0.0", True), ("127.0.0.1", False)])
def test_a_short_key_on_a_reachable_address_draws_a_warning(
    spawn: Callable[..., Proc], host: str, warned: bool
) -> None:
    g = spawn("god", "--address", f"{host}:0", "--no-journal", env_extra={"GOD_AUTHKEY": "short"})
    g.wait_for("listening on")
    g.wait_for(r"authkey from", stream="err")
    assert ("the authkey is only 5 bytes" in g.text()) is warned


# -- TLS -------------------------------------------------------------------------------------

MARKER = "PLAINTEXT-MARKER-7f3a9c"


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    return make_certs(tmp_path_factory.mktemp("certs"))


@pytest.fixture
def relay() -> Iterator[Relay]:
    r = Relay(("127.0.0.1", 1), record=True)
    yield r
    r.close()


def tls_god(start_god: Callable[..., God], certs: Certs, *extra: str) -> God:
    return start_god("--tls-cert", str(certs.god_cert), "--tls-key", str(certs.god_key), *extra)


@pytest.mark.parametrize("tls", [True, False], ids=["tls", "plain (control)"])
def test_with_tls_no_payload_or_result_crosses_the_wire_in_clear(
    start_god: Callable[..., God], spawn: Callable[..., Proc], certs: Certs, relay: Relay, tmp_path: Path, tls: bool
) -> None:
    g = tls_god(start_god, certs) if tls else start_god()
    host, port = g.address.rsplit(":", 1)
    relay.target = (host, int(port))
    env = {"GOD_ADDRESS": relay.address, **({"GOD_TLS_CA": str(certs.ca)} if tls else {})}
    src = tmp_path / "t.jsonl"
    src.write_text("".join(json.dumps({"secret": f"{MARKER}-{i}"}) + "\n" for i in range(5)))
    assert spawn("producer", "--from", str(src), env_extra=env).wait() == 0
    c = spawn("consumer", "--task", "tests.support.tasks:echo", "--processes", "1", "--burst", env_extra=env)
    assert c.wait() == 0, c.text()
    results = wait_for_results(g.results, 5)
    assert all(r["value"]["secret"].startswith(MARKER) for r in results)
    assert len(relay.seen) > 1000
    assert (MARKER.encode() in relay.seen) is not tls


def test_a_plain_client_against_a_tls_god_is_told_why(
    start_god: Callable[..., God], spawn: Callable[..., Proc], certs: Certs
) -> None:
    # Given a TLS god, and clients without --tls-ca that would retry for the default 180 s
    g = tls_god(start_god, certs)
    for role, args in (("producer", ("--rounds", "1")), ("consumer", ()), ("god", ("status",))):
        p = spawn(role, *args, env_extra=addr_env(g))
        # Then god tells each at once, and each says so in one line (before, the producer gave
        # up after --give-up-after, saying "if god serves TLS, give --tls-ca")
        assert_clean_failure(p, exitcodes.CONFIG, f"god at {g.address} requires TLS: give GOD_CONNECTION (or "
                                                  "--connection) god's connection file, or --tls-ca")


def test_a_tls_client_against_a_plain_god_is_told_why(god: God, spawn: Callable[..., Proc], certs: Certs) -> None:
    p = spawn("consumer", env_extra={**addr_env(god), "GOD_TLS_CA": str(certs.ca)})
    assert_clean_failure(p, exitcodes.CONFIG, "does not speak TLS (WRONG_VERSION_NUMBER)")


def test_a_god_certificate_from_another_ca_is_refused(
    start_god: Callable[..., God], spawn: Callable[..., Proc], certs: Certs
) -> None:
    g = tls_god(start_god, certs)
    p = spawn("producer", "--rounds", "1", env_extra={**addr_env(g), "GOD_TLS_CA": str(certs.other_ca)})
    assert_clean_failure(p, exitcodes.CONFIG, "its TLS certificate is not the one we trust")


def test_mutual_tls_lets_in_only_clients_with_a_certificate(
    start_god: Callable[..., God], spawn: Callable[..., Proc], certs: Certs
) -> None:
    g = tls_god(start_god, certs, "--tls-ca", str(certs.ca))
    env = {**addr_env(g), "GOD_TLS_CA": str(certs.ca)}
    without = spawn("producer", "--rounds", "1", env_extra=env)
    assert_clean_failure(without, exitcodes.CONFIG, "refused our TLS certificate")
    with_cert = spawn("producer", "--rounds", "1", "--per-round", "3", env_extra={
        **env, "GOD_TLS_CERT": str(certs.client_cert), "GOD_TLS_KEY": str(certs.client_key)})
    assert with_cert.wait() == 0, with_cert.text()


@pytest.mark.parametrize(("flags", "says"), [
    (("--tls-cert", "{tmp}/nope.pem"), "--tls-cert {tmp}/nope.pem: no such file"),
    (("--tls-cert", "{god_cert}", "--tls-key", "{tmp}/nokey.pem"), "--tls-key {tmp}/nokey.pem: no such file"),
    (("--tls-ca", "{ca}"), "god's --tls-ca (require client certificates) needs --tls-cert"),
    # OpenSSL says "[SSL] PEM lib" for each of these three, and names no file
    (("--tls-cert", "{god_cert}"), "no private key in {god_cert}: give --tls-key the certificate's key"),
    (("--tls-cert", "{god_cert}", "--tls-key", "{client_key}"),
     "the private key in {client_key} is not the key of the certificate in {god_cert}"),
    (("--tls-cert", "{junk}", "--tls-key", "{god_key}"), "--tls-cert {junk} holds no PEM certificate"),
    # and "[X509: NO_CERTIFICATE_OR_CRL_FOUND]" for this one
    (("--tls-cert", "{god_cert}", "--tls-key", "{god_key}", "--tls-ca", "{junk}"),
     "--tls-ca {junk} holds no PEM certificate: give the certificate of the CA that signed the clients'"),
])
def test_tls_files_that_do_not_fit_are_named(
    spawn: Callable[..., Proc], tmp_path: Path, certs: Certs, flags: tuple[str, ...], says: str
) -> None:
    junk = tmp_path / "junk.txt"
    junk.write_text("not a certificate\n")
    names = {"tmp": tmp_path, "god_cert": certs.god_cert, "god_key": certs.god_key, "client_key": certs.client_key,
             "ca": certs.ca, "junk": junk}
    p = spawn("god", "--address", "127.0.0.1:0", *(f.format(**names) for f in flags))
    assert_clean_failure(p, exitcodes.CONFIG, says.format(**names))
