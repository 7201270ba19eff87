"""God's handshakes, every new connection's on one thread: TLS, the authkey's challenge both
ways, then the first request, each connection a small state machine a selector drives.

A connection costs no thread before it is authenticated, and has one deadline for all of it
(--handshake-timeout, from its connecting), however slowly its bytes come; the door gives
connections that shake hands a budget of their own (god/transport/door.py). Once through,
our clients' connections go to the hub (their first request asks for it); a tutorial
client's proxy gets a thread of its own, as the stock manager server gives it.

The challenge is the standard library's (``multiprocessing.connection.deliver_challenge`` and
``answer_challenge``), written out here so that it can wait without a thread: HMAC-MD5 over a
20-byte message on Python 3.10 and 3.11; from 3.12 a ``{sha256}``-prefixed message, checked
and answered by the library's own ``_verify_challenge`` and ``_create_response`` (which accept
a client of an earlier Python's MD5 as the library does).
"""

from __future__ import annotations

import hmac
import os
import pickle
import selectors
import socket
import ssl
import struct
import threading
import time
from collections.abc import Callable, Generator, Sequence
from dataclasses import dataclass
from multiprocessing import AuthenticationError, connection
from typing import Any

from god.transport.door import Door, peer_of
from god.transport.rights import Principal
from shared import transport
from shared.data import load_data
from shared.log import logger
from shared.manager import ACCEPT_BROKER

READ, WRITE = selectors.EVENT_READ, selectors.EVENT_WRITE
_HEADER = struct.Struct("!i")
_CHALLENGE, _WELCOME, _FAILURE = b"#CHALLENGE#", b"#WELCOME#", b"#FAILURE#"
_NEW = hasattr(connection, "_verify_challenge")  # Python 3.12 and later
MAX_HANDSHAKE_FRAME = 256  # bytes of a challenge or an answer (the library's bound)

#: What a step of a handshake waits for: READ or WRITE.
Steps = Generator[int, None, None]


class _Late(Exception):
    """A wait inside a handshake ran past its own time (not the handshake's deadline)."""


@dataclass(eq=False)
class _Shake:
    conn: connection.Connection
    sock: socket.socket  # non-blocking: the TLS socket, or a duplicate of the plain descriptor
    deadline: float
    steps: Steps | None = None
    wants: int = 0  # what it waits for now
    wake_at: float | None = None  # a wait of its own ends then (the TLS probe)
    first: Any = None  # its first request, once read


class Handshakes:
    """Every connection's handshakes, on one thread; thread-safe ``add``."""

    def __init__(self, door: Door, principals: Callable[[], Sequence[Principal]], *,
                 adopt: Callable[[connection.Connection], None],
                 serve: Callable[[connection.Connection, Any], None]) -> None:
        """``principals``: who may connect, each with its key (the table as it is now);
        ``adopt``: a connection whose first request asks the hub to serve it; ``serve``: any
        other, with that request (it is given a thread)."""
        self.door = door
        self.principals = principals
        self._adopt, self._serve = adopt, serve
        self._sel = selectors.DefaultSelector()
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._sel.register(self._wake_r, READ, None)
        self._lock = threading.Lock()
        self._new: list[connection.Connection] = []
        self._shakes: dict[int, _Shake] = {}  # by file descriptor
        self._log = logger.bind(role="god")

    def start(self) -> None:
        threading.Thread(target=self._run, name="god-handshakes", daemon=True).start()

    def add(self, conn: connection.Connection) -> None:
        """A connection the door admitted: its handshakes start."""
        with self._lock:
            self._new.append(conn)
        try:
            self._wake_w.send(b"\0")
        except OSError:
            pass

    def __len__(self) -> int:
        return len(self._shakes)

    # -- the thread ----------------------------------------------------------------------------

    def _run(self) -> None:
        while True:
            try:
                self._round()
            except Exception:  # a bug must not stop god from letting anyone in: say it, go on
                self._log.exception("handshakes: unexpected error, going on")

    def _round(self) -> None:
        now = time.monotonic()
        due = [t for s in self._shakes.values() for t in (s.deadline, s.wake_at) if t is not None]
        timeout = max(0.0, min(due) - now) if due else None
        for key, _ in self._sel.select(timeout):
            if key.data is None:
                self._take_new()
            else:
                self._step(key.data)
        now = time.monotonic()
        for s in list(self._shakes.values()):
            if now > s.deadline:
                self.door.log.warning("handshake", "dropped {}: handshakes not done within {:g}s (see "
                                      "--handshake-timeout)", peer_of(s.conn), self.door.handshake_s)
                self._end(s)
            elif s.wake_at is not None and now >= s.wake_at:
                s.wake_at = None
                self._step(s, late=True)

    def _take_new(self) -> None:
        try:
            while self._wake_r.recv(4096):
                pass
        except BlockingIOError:
            pass
        with self._lock:
            new, self._new = self._new, []
        for conn in new:
            try:
                if isinstance(conn, transport.TlsConnection):
                    sock: socket.socket = conn.tls_socket
                else:
                    sock = socket.socket(fileno=os.dup(conn.fileno()))
                sock.setblocking(False)
            except OSError:
                self._close(conn, None)
                continue
            s = _Shake(conn, sock, deadline=time.monotonic() + self.door.handshake_s)
            s.steps = self._handshake(s)
            self._shakes[sock.fileno()] = s
            self._step(s)

    def _step(self, s: _Shake, late: bool = False) -> None:
        """Go on with a handshake as far as it can without waiting."""
        assert s.steps is not None
        try:
            wants = s.steps.throw(_Late()) if late else next(s.steps)
        except StopIteration:
            self._through(s)
            return
        except AuthenticationError as e:
            self.door.wrong_key(s.conn, f"wrong authkey ({e})")
            self._end(s)
            return
        except (OSError, EOFError, ValueError, AssertionError, _Late) as e:
            # Went away, not TLS, or not the manager protocol: nothing to answer.
            self.door.log.warning("handshake", "dropped {}: no handshake ({})", peer_of(s.conn), _why(e))
            self._end(s)
            return
        if wants != s.wants:
            if s.wants:
                self._sel.modify(s.sock, wants, s)
            else:
                self._sel.register(s.sock, wants, s)
            s.wants = wants

    def _through(self, s: _Shake) -> None:
        """Handshakes done and the first request read: to the hub, or to a thread of its own."""
        self._forget(s)
        conn, first = s.conn, s.first
        s.sock.setblocking(True)  # (a plain descriptor's mode is shared with the connection's)
        if not isinstance(conn, transport.TlsConnection):
            s.sock.close()  # (our duplicate of it)
        try:
            if first[1] == ACCEPT_BROKER:
                self._adopt(conn)
            else:
                threading.Thread(target=self._serve, args=(conn, first), daemon=True).start()
        except Exception as e:
            self._log.warning("closing {}: {}", peer_of(conn), e)
            self._close(conn, None)

    def _end(self, s: _Shake) -> None:
        self._forget(s)
        self._close(s.conn, s.sock)

    def _forget(self, s: _Shake) -> None:
        self._shakes.pop(s.sock.fileno(), None)
        if s.wants:
            try:
                self._sel.unregister(s.sock)
            except (KeyError, ValueError):
                pass
            s.wants = 0

    def _close(self, conn: connection.Connection, sock: socket.socket | None) -> None:
        for end in (sock, conn):
            if end is not None:
                try:
                    end.close()
                except OSError:
                    pass
        self.door.left(conn)

    # -- one connection's handshakes, as steps ---------------------------------------------

    def _handshake(self, s: _Shake) -> Steps:
        conn, sock = s.conn, s.sock
        if isinstance(conn, transport.TlsConnection) and not conn._handshaken:
            # A TLS client speaks first (its ClientHello, a record of type 22); a plain one
            # waits for the challenge: tell it, in plain, that god speaks only TLS.
            s.wake_at = time.monotonic() + transport.PLAIN_WAIT_S
            try:
                first = b""
                while not first:
                    try:
                        first = socket.socket.recv(sock, 1, socket.MSG_PEEK)
                    except BlockingIOError:
                        yield READ
                        continue
                    if not first:
                        raise EOFError
            except _Late:
                first = b""
            s.wake_at = None
            if first != b"\x16":
                socket.socket.send(sock, _HEADER.pack(len(transport.TLS_REQUIRED)) + transport.TLS_REQUIRED)
                raise ValueError("it does not speak TLS (told it so)")
            while True:
                try:
                    sock.do_handshake()  # type: ignore[attr-defined]
                    break
                except ssl.SSLWantReadError:
                    yield READ
                except ssl.SSLWantWriteError:
                    yield WRITE
            conn._handshaken = True
        # deliver_challenge
        if _NEW:
            message = b"{sha256}" + os.urandom(connection.MESSAGE_LENGTH)  # type: ignore[attr-defined]
        else:
            message = os.urandom(connection.MESSAGE_LENGTH)  # type: ignore[attr-defined]
        yield from _send_frame(sock, _CHALLENGE + message)
        response = yield from _recv_frame(sock, MAX_HANDSHAKE_FRAME)
        principal = next((p for p in self.principals() if _verified(p.key, message, response)), None)
        if principal is None:
            yield from _send_frame(sock, _FAILURE)
            raise AuthenticationError("digest received was wrong")
        conn.principal = principal  # type: ignore[attr-defined]  # what it may call (god/transport/rights.py)
        yield from _send_frame(sock, _WELCOME)
        # answer_challenge
        challenge = yield from _recv_frame(sock, MAX_HANDSHAKE_FRAME)
        if challenge[: len(_CHALLENGE)] != _CHALLENGE:
            raise AssertionError(f"message = {challenge[:40]!r}")
        yield from _send_frame(sock, _response(principal.key, challenge[len(_CHALLENGE):]))
        if (yield from _recv_frame(sock, MAX_HANDSHAKE_FRAME)) != _WELCOME:
            raise AuthenticationError("digest sent was rejected")
        if not self.door.shaken(conn):
            raise ValueError("turned away at the connection limit")
        s.deadline = time.monotonic() + self.door.idle_s  # (the first request: as idle as any)
        body = yield from _recv_frame(sock, self.door.max_frame)
        try:
            first = load_data(body)
            if not (type(first) is tuple and len(first) == 4 and type(first[1]) is str):
                raise ValueError("not a manager request")
        except Exception as e:
            yield from _send_frame(sock, _pickled(self.door.not_data(conn, e)))
            raise ValueError("its first request was refused") from None
        if first[1] == ACCEPT_BROKER:
            yield from _send_frame(sock, _pickled(("#RETURN", None)))
        s.first = first


def _pickled(msg: Any) -> bytes:
    return pickle.dumps(msg, pickle.HIGHEST_PROTOCOL)


def _verified(authkey: bytes, message: bytes, response: bytes) -> bool:
    if _NEW:
        try:
            connection._verify_challenge(authkey, message, response)  # type: ignore[attr-defined]
            return True
        except AuthenticationError:
            return False
    return hmac.compare_digest(response, hmac.new(authkey, message, "md5").digest())


def _response(authkey: bytes, message: bytes) -> bytes:
    if _NEW:
        return bytes(connection._create_response(authkey, message))  # type: ignore[attr-defined]
    return hmac.new(authkey, message, "md5").digest()


def _send_frame(sock: socket.socket, body: bytes) -> Steps:
    data = memoryview(_HEADER.pack(len(body)) + body)
    while data:
        try:
            n = sock.send(data)
        except (BlockingIOError, ssl.SSLWantWriteError):
            yield WRITE
            continue
        except ssl.SSLWantReadError:
            yield READ
            continue
        data = data[n:]


def _recv_exact(sock: socket.socket, n: int) -> Generator[int, None, bytes]:
    buf = bytearray()
    while len(buf) < n:
        try:
            chunk = sock.recv(n - len(buf))
        except (BlockingIOError, ssl.SSLWantReadError):
            yield READ
            continue
        except ssl.SSLWantWriteError:
            yield WRITE
            continue
        if not chunk:
            raise EOFError
        buf += chunk
    return bytes(buf)


def _recv_frame(sock: socket.socket, limit: int) -> Generator[int, None, bytes]:
    (n,) = _HEADER.unpack((yield from _recv_exact(sock, 4)))
    if n == -1:
        (n,) = struct.unpack("!Q", (yield from _recv_exact(sock, 8)))
    if n < 0 or n > limit:
        raise ValueError(f"a message of {n:,} bytes, over {limit:,}")
    return (yield from _recv_exact(sock, n))


def _why(e: BaseException) -> str:
    if isinstance(e, EOFError):
        return "closed"
    if isinstance(e, _Late):
        return "timed out"
    return str(e) or type(e).__name__
