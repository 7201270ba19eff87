"""God's own certificate and its connection file; a client that trusts exactly that certificate."""

from __future__ import annotations

import socket
import ssl
import stat
import threading
from pathlib import Path

import pytest

from god.transport.identity import connection_path, identity, write_connection
from shared import config, transport

pytestmark = pytest.mark.timeout(30)


def _handshake(server: ssl.SSLContext, client: ssl.SSLContext) -> None:
    """A TLS handshake over a real connection on loopback; raises what the client's side raises."""
    listener = socket.create_server(("127.0.0.1", 0))
    errors: list[BaseException] = []

    def serve() -> None:
        conn, _ = listener.accept()
        try:
            with server.wrap_socket(conn, server_side=True) as tls:
                tls.recv(1)
        except (OSError, ssl.SSLError) as e:
            errors.append(e)

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    try:
        with socket.create_connection(listener.getsockname(), timeout=10) as raw:
            with client.wrap_socket(raw, server_hostname="any-name-at-all") as tls:
                tls.sendall(b"x")
    finally:
        t.join(10)
        listener.close()


def test_god_makes_its_certificate_once_and_a_client_trusts_that_one_only(tmp_path: Path) -> None:
    own = identity(tmp_path / "god")
    assert own.cert is not None and own.key is not None
    assert stat.S_IMODE(own.key.stat().st_mode) == 0o600
    pem = own.cert.read_text()
    assert identity(tmp_path / "god").cert.read_text() == pem  # type: ignore[union-attr]  # kept, not made anew
    # A client with that certificate finishes a handshake with god, whatever name it used
    _handshake(transport.server_context(own), transport.pinned_context(pem))
    # and refuses anyone else, who has a certificate of its own made the same way
    other = identity(tmp_path / "impostor")
    with pytest.raises(ssl.SSLCertVerificationError):
        _handshake(transport.server_context(other), transport.pinned_context(pem))


def test_the_connection_file_is_what_a_client_reads(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    own = identity(tmp_path)
    path = connection_path(5678, tmp_path)
    write_connection(path, "coord:5678", b"the-key", own.cert)  # type: ignore[arg-type]
    assert stat.S_IMODE(path.stat().st_mode) == 0o600 and len(path.read_text().splitlines()) == 1
    write_connection(path, "coord:5678", b"the-key", own.cert)  # type: ignore[arg-type]  # replaced at each start
    monkeypatch.delenv("GOD_AUTHKEY", raising=False)
    monkeypatch.delenv("GOD_ADDRESS", raising=False)
    s = config.client_settings(connection=str(path))
    assert (s.address, s.authkey, s.pin) == (("coord", 5678), b"the-key", own.cert.read_text())  # type: ignore[union-attr]
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temporary file left


def test_gods_key_open_to_others_is_refused(tmp_path: Path) -> None:
    own = identity(tmp_path)
    own.key.chmod(0o644)  # type: ignore[union-attr]
    with pytest.raises(config.ConfigError, match=r"god's TLS key .* is open to others"):
        identity(tmp_path)
