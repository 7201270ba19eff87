"""The socket layer under multiprocessing.managers: TCP_NODELAY, keepalive, timeouts, TLS.

``multiprocessing.managers.listener_client`` maps a serializer name to a (Listener, Client)
pair; registering ours under SERIALIZER is the supported hook for changing how connections
are made while keeping the stock wire format, so tutorial clients still talk to god.

TLS wraps the same byte stream: the stock Connection reads and writes its descriptor with
os.read/os.write, which would bypass the TLS layer, so TlsConnection sends and receives
through the SSLSocket instead. The authkey handshake then runs inside TLS as before.
"""

from __future__ import annotations

import io
import os
import pickle
import select
import socket
import ssl
import struct
from dataclasses import dataclass
from multiprocessing import AuthenticationError, connection, managers
from pathlib import Path
from typing import Any

from shared.config import ENV_CONNECTION, ENV_PLAIN, Address, Settings, Tls, format_address, loopback
from shared.data import load_data
from shared.errors import ConfigError

SERIALIZER = "god"
CONNECT_TIMEOUT_S = 5.0  # seconds for TCP connect and the TLS and authkey handshakes
READ_CHUNK = 1 << 20  # bytes asked of a TLS socket per read
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


class HandshakeTimeout(OSError):
    """God accepted the connection but sent no authkey challenge in time."""


class TlsConnection(connection.Connection):
    """A manager Connection over TLS: the same framing, read and written through an SSLSocket."""

    def __init__(self, sock: ssl.SSLSocket, *, handshaken: bool) -> None:
        super().__init__(sock.fileno())
        self.tls_socket = sock
        self._handshaken = handshaken

    def _handshake(self) -> None:
        # God's side defers the TLS handshake to the connection's own thread, so a peer
        # that never completes it holds up no one (the accepting thread least of all).
        if not self._handshaken:
            self.tls_socket.do_handshake()
            self._handshaken = True

    def _send(self, buf: Any, write: Any = None) -> None:
        self._handshake()
        self.tls_socket.sendall(buf)

    def _recv(self, size: int, read: Any = None) -> io.BytesIO:
        self._handshake()
        buf = io.BytesIO()
        remaining = size
        while remaining > 0:
            chunk = self.tls_socket.recv(min(remaining, READ_CHUNK))
            if not chunk:
                if remaining == size:
                    raise EOFError
                raise OSError("got end of file during message")
            buf.write(chunk)
            remaining -= len(chunk)
        return buf

    def _poll(self, timeout: float) -> bool:
        # Bytes TLS has read and decrypted ahead are not on the socket any more.
        return bool(self.tls_socket.pending()) or bool(super()._poll(timeout))  # type: ignore[misc]

    def _close(self, _close: Any = None) -> None:
        self.tls_socket.close()


class Readable:
    """Whether a connection has something to read, for a loop that asks often: one poll(2)
    on a poller made once (Connection.poll makes a selector each time, 8 us)."""

    def __init__(self, conn: connection.Connection) -> None:
        self.conn = conn
        self._poller = select.poll()
        self._poller.register(conn.fileno(), select.POLLIN)

    def __call__(self, timeout: float) -> bool:
        conn = self.conn
        if isinstance(conn, TlsConnection) and conn.tls_socket.pending():
            return True
        return bool(self._poller.poll(max(0, int(timeout * 1000))))


#: The manager's framing: a signed 4-byte length (-1, then an 8-byte length, for 2 GiB and
#: over), then the pickled message; what Connection.send_bytes and recv_bytes read and write.
_HEADER = struct.Struct("!i")
_LONG = struct.Struct("!Q")
SPLIT_AT = 16 * 1024  # frames bigger than this go out as header and body (as the stock Connection)


def send(conn: connection.Connection, msg: Any, held: bytes = b"") -> None:
    """Send a message on a Connection, framed as frame() frames it (Connection.send makes a
    ForkingPickler for each message: 1.2 us more than this for a call's few fields), after
    ``held``: frames kept back to go out in the same write."""
    pieces = frame(msg)
    if len(pieces) == 1:
        write(conn, held + pieces[0])
        return
    if held:
        write(conn, held)
    for piece in pieces:
        write(conn, piece)


def write(conn: connection.Connection, data: bytes) -> None:
    """Write bytes already framed (``frame``) on a Connection, whole."""
    conn._send(data)  # type: ignore[attr-defined]  # (TlsConnection's own, under TLS)


def frame(msg: Any) -> list[bytes]:
    """A message as the manager frames it: one piece, or header and body for a big one."""
    data = pickle.dumps(msg, pickle.HIGHEST_PROTOCOL)
    n = len(data)
    header = _HEADER.pack(n) if n <= 0x7FFFFFFF else _HEADER.pack(-1) + _LONG.pack(n)
    return [header, data] if n > SPLIT_AT else [header + data]


class TooLarge(ValueError):
    """A request that says it is bigger than god takes (its header says so: it is not read)."""


def unframe(buf: bytearray, limit: int) -> tuple[bool, Any]:
    """Take the first whole message off the front of buf: (True, message), or (False, None)
    while it has not all come. God's: the message is loaded as data only (shared/data.py).

    Raises:
        TooLarge: its header says it is over limit bytes.
        NotData, or what unpickling raises: the message is not data (it is taken off all the same).
    """
    if len(buf) < 4:
        return False, None
    (n,) = _HEADER.unpack_from(buf)
    start = 4
    if n == -1:
        if len(buf) < 12:
            return False, None
        (n,) = _LONG.unpack_from(buf, 4)
        start = 12
    if n > limit:
        raise TooLarge(too_large(n, limit))
    if len(buf) < start + n:
        return False, None
    try:
        with memoryview(buf) as view, view[start : start + n] as body:
            msg = load_data(body)
    finally:
        del buf[: start + n]
    return True, msg


def too_large(n: int, limit: int) -> str:
    return f"it is {n:,} bytes, over god's limit of {limit:,} (--max-payload and the record around it)"


def set_timeout(conn: connection.Connection, seconds: float | None) -> None:
    """Bound every later read on a connection (None: no bound), plain or TLS."""
    if isinstance(conn, TlsConnection):
        conn.tls_socket.settimeout(seconds)
        return
    with socket.socket(fileno=os.dup(conn.fileno())) as s:
        set_recv_timeout(s, seconds)


def shutdown(conn: connection.Connection) -> None:
    """End a connection from another thread: a read blocked on it returns end of file."""
    try:
        with socket.socket(fileno=os.dup(conn.fileno())) as s:
            s.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass  # closed already


def server_context(tls: Tls) -> ssl.SSLContext:
    """God's TLS context: its certificate, and with ``tls.ca`` client certificates required.

    Raises:
        ConfigError: a file is missing or not what it should be.
    """
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    _load(ctx, tls, server=True)
    if tls.ca is not None:
        ctx.verify_mode = ssl.CERT_REQUIRED
    return ctx


def client_context(tls: Tls) -> ssl.SSLContext:
    """A client's TLS context: god's certificate checked against ``tls.ca``, ours presented if given."""
    ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
    _load(ctx, tls, server=False)
    return ctx


def pinned_context(pem: str) -> ssl.SSLContext:
    """A client's TLS context that trusts god's own certificate (from a connection file) and
    nothing else. God's name is not checked: whoever finishes the handshake holds that
    certificate's key, and only god does; the name a client reaches it by may be any.

    Raises:
        ConfigError: the certificate is not one.
    """
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_REQUIRED
    try:
        ctx.load_verify_locations(cadata=pem)
    except (ssl.SSLError, ValueError) as e:
        raise ConfigError(f"the connection file's certificate cannot be used ({e})") from None
    return ctx


@dataclass(frozen=True)
class Route:
    """How a client reaches god: the TLS it speaks, where, and whether plain may leave this machine.

    ``everywhere``: TLS on loopback too (god was given a certificate, --tls-ca here); False,
    beyond this machine only (god's own certificate, from a connection file: god speaks plain
    on loopback, as it does without one). Whether a connection is on loopback is read from the
    connected socket, the address god has, as god reads it from the socket it accepted.
    """

    tls: ssl.SSLContext | None = None
    everywhere: bool = True
    plain_ok: bool = False  # --insecure-plain-tcp

    @classmethod
    def of(cls, settings: Settings) -> Route:
        """The route a client's settings give (ConfigError: TLS files that cannot be used)."""
        if settings.tls is not None:
            return cls(client_context(settings.tls), everywhere=True, plain_ok=settings.plain)
        if settings.pin is not None:
            return cls(pinned_context(settings.pin), everywhere=False, plain_ok=settings.plain)
        return cls(plain_ok=settings.plain)


class NotProtected(ConfigError):
    """A connection would cross the network in plain, and nobody said it may."""


def _unprotected(address: Address) -> NotProtected:
    return NotProtected(
        f"god at {format_address(address)} is beyond this machine and we have no certificate of god's to check "
        f"it by: set {ENV_CONNECTION} (or --connection) to god's connection file (god says where it wrote it as "
        f"it starts), or, to send in plain, --insecure-plain-tcp ({ENV_PLAIN}=1): then whoever is on the path "
        "can read everything, and whoever answers in god's place can run code on god")


def _load(ctx: ssl.SSLContext, tls: Tls, *, server: bool) -> None:
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    if tls.cert is not None:
        try:
            ctx.load_cert_chain(tls.cert, tls.key)
        except OSError as e:  # ssl.SSLError too
            raise ConfigError(_cert_problem(tls.cert, tls.key, e)) from None
    if tls.ca is not None:
        try:
            ctx.load_verify_locations(tls.ca)
        except OSError as e:
            if isinstance(e, ssl.SSLError) or not e.strerror:
                signed = "the clients' certificates" if server else "god's certificate"
                raise ConfigError(f"--tls-ca {tls.ca} holds no PEM certificate: give the certificate of the CA that "
                                  f"signed {signed} (-----BEGIN CERTIFICATE-----)") from None
            raise ConfigError(f"cannot use --tls-ca {tls.ca}: {e.strerror}") from None


def _cert_problem(cert: Path, key: Path | None, e: OSError) -> str:
    """One line on a certificate and key that do not load: which file, and what it should hold
    (OpenSSL says 'PEM lib' for most of it)."""
    if not isinstance(e, ssl.SSLError) and e.strerror:
        flag, path = ("--tls-key", key) if key is not None and cert.exists() else ("--tls-cert", cert)
        return f"cannot use {flag} {path}: {e.strerror}"
    if getattr(e, "reason", None) == "KEY_VALUES_MISMATCH":
        return f"the private key in {key or cert} is not the key of the certificate in {cert}: give --tls-key its own key"

    def text(path: Path) -> str:
        try:
            with open(path, encoding="ascii", errors="replace") as f:
                return f.read(1 << 20)
        except OSError:
            return ""

    if "-----BEGIN CERTIFICATE-----" not in text(cert):
        return f"--tls-cert {cert} holds no PEM certificate (-----BEGIN CERTIFICATE-----)"
    if "PRIVATE KEY-----" not in text(key or cert):
        return (f"no private key in {key or cert}: give --tls-key the certificate's key (PEM, "
                "-----BEGIN PRIVATE KEY-----)" + ("" if key else ", or a --tls-cert file that holds both"))
    return f"cannot use --tls-cert {cert} with --tls-key {key or cert}: {e}"


#: God's TLS context while it serves over TLS; the Listener reads it (the stock Server
#: makes the Listener itself, so it cannot be handed over).
server_tls: ssl.SSLContext | None = None
#: Whether god speaks TLS to peers on this machine too (False: its own certificate, which it
#: speaks beyond this machine only; loopback is plain, as without TLS).
tls_on_loopback: bool = True


#: What a TLS god says, in plain, to a client that does not speak TLS: framed as the authkey
#: challenge would be, so such a client reads it where it waits for the challenge.
TLS_REQUIRED = b"#TLS-REQUIRED#"
PLAIN_WAIT_S = 1.0  # seconds a TLS god waits for a client's first bytes before taking it for a plain one


def tls_required(e: BaseException) -> bool:
    """Whether a failed authkey handshake was god saying it speaks only TLS."""
    return TLS_REQUIRED.decode() in str(e)


class GodListener(connection.Listener):
    """A Listener whose accepted connections are tuned like ours."""

    def __init__(
        self, address: Any = None, family: str | None = None, backlog: int = 1, authkey: bytes | None = None
    ) -> None:
        super().__init__(address, family, max(backlog, BACKLOG), authkey)

    def accept(self) -> connection.Connection:
        """Accept one connection, tune its socket, and wrap it in TLS when god serves TLS.

        The connection gets a ``peer`` attribute: the address it came from, for god's logs.
        """
        c = super().accept()
        peer = self.last_accepted
        if server_tls is not None and (tls_on_loopback or not (peer and loopback(str(peer[0])))):
            sock = socket.socket(fileno=c.fileno())
            c._handle = None  # type: ignore[attr-defined]  # the socket owns the descriptor now
            tune_socket(sock)
            c = TlsConnection(server_tls.wrap_socket(sock, server_side=True, do_handshake_on_connect=False),
                              handshaken=False)
        else:
            with socket.socket(fileno=os.dup(c.fileno())) as s:
                tune_socket(s)
        c.peer = peer  # type: ignore[attr-defined]
        return c


def connect(
    address: Address, authkey: bytes | None = None, *, recv_timeout: float | None = None,
    route: Route = Route(),
) -> connection.Connection:
    """Open a tuned connection to god (over TLS where the route says) and do the authkey handshake.

    Args:
        address: (host, port) of god.
        authkey: the shared key; None skips the handshake (the stock Client's behaviour).
        recv_timeout: bound on every later read, so a god that stops answering is noticed.
        route: TLS and where; by default plain, to this machine only.

    Raises:
        OSError: the connection could not be made (refused, unreachable, timed out);
            HandshakeTimeout if god sent no challenge in time; ssl.SSLError if TLS failed.
        NotProtected: god is beyond this machine and the route has neither TLS nor plain for it.
        multiprocessing.AuthenticationError: the peer rejected our key, or we rejected its.
    """
    sock = socket.create_connection(address, timeout=CONNECT_TIMEOUT_S)
    try:
        tune_socket(sock)
        here = loopback(str(sock.getpeername()[0]))
        tls = route.tls if route.everywhere or not here else None
        if tls is None and not here and not route.plain_ok:
            raise _unprotected(address)
        if tls is not None:
            tls_sock = tls.wrap_socket(sock, server_hostname=address[0])  # handshakes, bounded by the timeout
            conn: connection.Connection = TlsConnection(tls_sock, handshaken=True)
        else:
            # The handshake must not hang on a peer that accepted and then went silent.
            set_recv_timeout(sock, CONNECT_TIMEOUT_S)
            sock.setblocking(True)
            conn = connection.Connection(sock.detach())
    finally:
        sock.close()  # detached into the connection (or the TLS socket) by now, unless it failed
    try:
        if authkey is not None:
            try:
                connection.answer_challenge(conn, authkey)
                connection.deliver_challenge(conn, authkey)
            except AssertionError as e:  # 3.11 asserts on a malformed challenge (3.12 raises AuthenticationError)
                if tls_required(e):
                    raise AuthenticationError(f"{TLS_REQUIRED.decode()}: god speaks only TLS") from None
                raise AuthenticationError("the peer does not speak the manager handshake") from None
            except (BlockingIOError, TimeoutError):
                raise HandshakeTimeout(f"no authkey challenge within {CONNECT_TIMEOUT_S:g}s") from None
        set_timeout(conn, recv_timeout)
    except BaseException:
        conn.close()
        raise
    return conn


def _client(address: Address, authkey: bytes | None = None) -> connection.Connection:
    """The Client of our serializer pair, as the stock proxies call it."""
    return connect(tuple(address), authkey)  # type: ignore[arg-type]


managers.listener_client[SERIALIZER] = (GodListener, _client)  # type: ignore[attr-defined]
