"""The socket layer under multiprocessing.managers: TCP_NODELAY, keepalive and timeouts.

``multiprocessing.managers.listener_client`` maps a serializer name to a (Listener, Client)
pair; registering ours under SERIALIZER is the supported hook for changing how connections
are made while keeping the stock wire format, so tutorial clients still talk to god.
"""

from __future__ import annotations

import os
import socket
import struct
from multiprocessing import AuthenticationError, connection, managers
from typing import Any

from shared.config import Address

SERIALIZER = "god"
CONNECT_TIMEOUT_S = 5.0  # seconds for TCP connect and the authkey handshake
BACKLOG = 128  # the stock Server asks for 16, too few for a cluster starting at once
KEEPALIVE_IDLE_S = 5  # seconds of silence before the kernel probes a peer
KEEPALIVE_INTERVAL_S = 2  # seconds between probes
KEEPALIVE_COUNT = 3  # unanswered probes before the connection is declared dead


def tune_socket(sock: socket.socket) -> None:
    """Turn off Nagle and turn on keepalive.

    Without TCP_NODELAY a request that spans two segments (anything over ~16 KiB on
    loopback) waits ~40 ms for the peer's delayed ACK. Keepalive lets a blocked read notice
    a peer whose host vanished (cable cut, power loss) within ~11 s instead of hours.
    """
    if sock.family in (socket.AF_INET, socket.AF_INET6):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        if hasattr(socket, "TCP_KEEPIDLE"):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE, KEEPALIVE_IDLE_S)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL, KEEPALIVE_INTERVAL_S)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT, KEEPALIVE_COUNT)


def set_recv_timeout(sock: socket.socket, seconds: float | None) -> None:
    """Bound every blocking read with SO_RCVTIMEO: it then fails with EAGAIN (an OSError).

    ``multiprocessing.connection`` reads with os.read on a blocking descriptor, so a socket
    timeout set with settimeout() would not apply; the kernel option does.
    """
    secs = int(seconds or 0)
    usecs = int(((seconds or 0) - secs) * 1_000_000)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, struct.pack("ll", secs, usecs))


class GodListener(connection.Listener):
    """A Listener whose accepted connections are tuned like ours."""

    def __init__(
        self, address: Any = None, family: str | None = None, backlog: int = 1, authkey: bytes | None = None
    ) -> None:
        super().__init__(address, family, max(backlog, BACKLOG), authkey)

    def accept(self) -> connection.Connection:
        """Accept one connection and tune its socket before anything is read from it."""
        c = super().accept()
        with socket.socket(fileno=os.dup(c.fileno())) as s:
            tune_socket(s)
        return c


def connect(
    address: Address, authkey: bytes | None = None, *, recv_timeout: float | None = None
) -> connection.Connection:
    """Open a tuned connection to god and do the authkey handshake.

    Args:
        address: (host, port) of god.
        authkey: the shared key; None skips the handshake (the stock Client's behaviour).
        recv_timeout: bound on every later read, so a god that stops answering is noticed.

    Raises:
        OSError: the connection could not be made (refused, unreachable, timed out).
        multiprocessing.AuthenticationError: the peer rejected our key, or we rejected its.
    """
    sock = socket.create_connection(address, timeout=CONNECT_TIMEOUT_S)
    try:
        tune_socket(sock)
        # The handshake must not hang on a peer that accepted and then went silent.
        set_recv_timeout(sock, CONNECT_TIMEOUT_S)
        sock.setblocking(True)
        conn = connection.Connection(sock.detach())
    finally:
        sock.close()
    try:
        if authkey is not None:
            try:
                connection.answer_challenge(conn, authkey)
                connection.deliver_challenge(conn, authkey)
            except AssertionError:  # 3.11 asserts on a malformed challenge
                raise AuthenticationError("the peer does not speak the manager handshake") from None
        with socket.socket(fileno=os.dup(conn.fileno())) as s:
            set_recv_timeout(s, recv_timeout)
    except BaseException:
        conn.close()
        raise
    return conn


def _client(address: Address, authkey: bytes | None = None) -> connection.Connection:
    """The Client of our serializer pair, as the stock proxies call it."""
    return connect(tuple(address), authkey)  # type: ignore[arg-type]


managers.listener_client[SERIALIZER] = (GodListener, _client)  # type: ignore[attr-defined]
