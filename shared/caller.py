"""The reconnecting connection producers and consumers call god's broker over.

One Caller (a GodClient, shared/client.py) is one connection, for one thread. It talks to the broker object that god
registers under the fixed id ``broker``: connect, handshake, ``accept_broker`` (god's hub
serves the connection from then on), then calls, one round trip each (the stock proxy needs
four connections before its first call).

A call that fails between send and reply leaves a connection out of step (the next call
would read the old reply), so after any such failure the connection is thrown away and a
new one is made; what was not confirmed is sent again, which the broker makes safe (task
ids dedupe puts, lease sequence numbers make a retried lease return the same tasks, a
re-sent result is a counted duplicate).
"""

from __future__ import annotations

import random
import socket
import ssl
import time
from collections import deque
from collections.abc import Callable
from multiprocessing import AuthenticationError, connection
from multiprocessing.managers import convert_to_error  # type: ignore[attr-defined]
from typing import Any

from shared import hops, transport
from shared.config import ENV_CONNECTION, Settings, format_address
from shared.errors import AuthError, ConfigError, Interrupted, NotAllowed, UnreachableError
from shared.log import logger
from shared.manager import ACCEPT_BROKER, BROKER
from shared.records import describe
from shared.version import PYTHON, VERSION, other_version

BACKOFF_FIRST_S = 0.1  # first wait after a failure
BACKOFF_MAX_S = 5.0  # longest wait between attempts
#: Bound on any one reply. Broker calls that wait (lease, put_many) are asked to return
#: well within it, so hitting it means god (or the path to it) stopped answering.
REPLY_TIMEOUT_S = 30.0
LEAVE_TIMEOUT_S = 2.0  # longest wait for god's answer to a goodbye
STOP_CHECK_S = 0.1  # how often a retry wait looks at the stop flag


class Caller:
    """A reconnecting connection to god's broker, for one thread: ``call``, or ``send`` now and
    ``reply`` later (pipelined); ``GodClient`` (shared/client.py) types each call."""

    def __init__(
        self,
        settings: Settings,
        *,
        name: str,
        role: str,
        info: dict[str, Any] | None = None,
        should_stop: Callable[[], bool] | None = None,
    ) -> None:
        self.settings = settings
        self.name = name
        self.role = role
        self.info = {**(info or {}), "python": PYTHON, "version": VERSION}  # god shows and checks them
        self.server_info: dict[str, Any] = {}
        self._warned_version = False
        self._should_stop = should_stop or (lambda: False)
        self._conn: connection.Connection | None = None
        # Calls sent whose replies are not read yet, oldest first, with the connection each went on.
        self._sent: deque[tuple[str, tuple[Any, ...], connection.Connection | None]] = deque()
        self._readable: transport.Readable | None = None  # for ready(), made for each connection
        self._held = b""  # frames of calls sent with hold=True, not written yet
        self.round_trip_s: float | None = None  # the last call that went through at once, on an open connection
        self._where = format_address(settings.address)
        self._route = transport.Route.of(settings)
        self._log = logger.bind(role=role)

    # -- connection management ------------------------------------------------------------

    def _open(self) -> connection.Connection:
        conn = transport.connect(self.settings.address, self.settings.authkey, recv_timeout=REPLY_TIMEOUT_S,
                                 route=self._route)
        try:
            self._exchange(conn, None, ACCEPT_BROKER, (self.name,))
            self.server_info = self._exchange(conn, BROKER, "hello", (self.name, self.role, self.info))
            note = other_version(f"god at {self._where}", self.server_info.get("version"))
            if note is not None and not self._warned_version:
                self._warned_version = True
                self._log.warning(note)
        except BaseException:
            conn.close()
            raise
        self._conn = conn
        return conn

    def _drop(self) -> None:
        # Calls sent on it are made anew by reply(), in order.
        self._held = b""
        if self._conn is not None:
            try:
                self._conn.close()
            except OSError:
                pass
            self._conn = None

    def close(self) -> None:
        """Close the connection; the next call opens a new one."""
        self._drop()

    @staticmethod
    def _exchange(conn: connection.Connection, ident: str | None, method: str, args: tuple[Any, ...]) -> Any:
        transport.send(conn, (ident, method, args, {}))
        kind, result = conn.recv()
        if kind == "#RETURN":
            return result
        raise _error(kind, result)

    def call(self, method: str, *args: Any) -> Any:
        """Call a broker method, reconnecting and re-sending until god answers or we give up.

        Raises:
            AuthError: god refused our key (not retried: it will not change by waiting).
            ConfigError: TLS set up so that it cannot work (not retried either).
            UnreachableError: no answer for ``settings.give_up_after`` seconds.
            Interrupted: the stop event was set while we waited to retry.
        """
        # (reply() makes calls anew through here, the one it reads first; any other call must
        # wait for the replies of those sent, or it would read one of theirs)
        assert not self._sent or self._sent[0][2] is not self._conn or self._conn is None, "calls in flight"
        assert not self._held, "calls held back"
        failing_since: float | None = None
        attempt = 0
        while True:
            try:
                was_open = self._conn is not None
                conn = self._conn if self._conn is not None else self._open()
                try:
                    t0 = time.monotonic()
                    if hops.ON:
                        hops.hop(f"sends {method}")
                    transport.send(conn, (BROKER, method, args, {}))
                    kind, result = conn.recv()
                    if hops.ON:
                        hops.hop(f"got {method}")
                    if was_open and failing_since is None:
                        self.round_trip_s = time.monotonic() - t0
                except BaseException:
                    self._drop()  # out of step now, whatever happened
                    raise
            except AuthenticationError as e:
                if transport.tls_required(e):
                    raise ConfigError(f"god at {self._where} requires TLS: give {ENV_CONNECTION} (or --connection) "
                                      "god's connection file, or --tls-ca (GOD_TLS_CA) the certificate of the CA "
                                      "that signed god's") from None
                raise AuthError(
                    f"god at {self._where} refused our authkey ({self.settings.authkey_source}); "
                    f"check that every role uses the same key, and that god runs there ({e})"
                ) from None
            except (OSError, EOFError) as e:
                if isinstance(e, ssl.SSLError) and not isinstance(e, _TLS_TRANSIENT):
                    raise ConfigError(_tls_problem(self._where, e)) from None  # waiting will not fix it
                if isinstance(e, socket.gaierror) and e.errno in _NO_SUCH_HOST and not self.server_info:
                    # never reached: a name DNS says does not exist is a typo, not a god starting
                    # (a temporary failure of DNS, EAI_AGAIN, is waited out as any other)
                    raise ConfigError(f"god's address {self._where}: no such host ({e.strerror}); check "
                                      "--address or GOD_ADDRESS") from None
                now = time.monotonic()
                if failing_since is None:
                    failing_since = now
                waited = now - failing_since
                if waited >= self.settings.give_up_after:
                    raise UnreachableError(
                        f"god not reachable at {self._where} after {waited:.0f}s: {_reason(e)}"
                    ) from None
                delay = min(BACKOFF_MAX_S, BACKOFF_FIRST_S * 2**attempt) * random.uniform(0.5, 1.0)
                delay = min(delay, self.settings.give_up_after - waited)
                attempt += 1
                self._log.warning(
                    "god at {} not answering ({}); retry {} in {:.1f}s, giving up in {:.0f}s",
                    self._where, _reason(e), attempt, delay, self.settings.give_up_after - waited,
                )
                self._sleep(delay)
                continue
            if failing_since is not None:
                self._log.info("god at {} answers again", self._where)
            if kind == "#RETURN":
                return result
            raise _error(kind, result)

    # -- a call whose reply is read later ---------------------------------------------------

    def send(self, method: str, *args: Any, hold: bool = False) -> None:
        """Start a call and return at once; ``reply`` reads the answers in the order the calls
        were sent (god answers them in that order). ``hold``: the call goes out in one write
        with the next one sent (god reads both at once), or before anything waits for a reply.

        A connection that fails here is dropped, and ``reply`` makes each call anew as ``call``
        does: what it sends must be safe to send twice.
        """
        conn = self._conn
        if self._sent and self._sent[-1][2] is not conn:
            conn = None  # one before it is to be made anew: so is this one, after it, in order
        if conn is not None:
            if hops.ON:
                hops.hop(f"sends {method}")
            try:
                if hold:
                    self._held += b"".join(transport.frame((BROKER, method, args, {})))
                else:
                    held, self._held = self._held, b""
                    transport.send(conn, (BROKER, method, args, {}), held)
            except (OSError, EOFError):
                self._drop()
                conn = None
        self._sent.append((method, args, conn))  # None: reply() makes the call, retrying as call() does

    def _send_held(self) -> None:
        """Send what ``send(hold=True)`` kept back, before anything waits for a reply."""
        if self._held and self._conn is not None:
            held, self._held = self._held, b""
            try:
                transport.write(self._conn, held)
            except (OSError, EOFError):
                self._drop()  # reply() makes those calls anew

    def fileno(self) -> int | None:
        """The open connection's descriptor (readable when a reply comes), or None."""
        self._send_held()
        return self._conn.fileno() if self._conn is not None else None

    @property
    def sent(self) -> int:
        """How many calls were sent whose replies are not read yet."""
        return len(self._sent)

    def ready(self, timeout: float = 0.0) -> bool:
        """Whether the reply to the oldest call sent has come (waiting up to timeout for it)."""
        self._send_held()
        conn = self._conn
        if conn is None or (self._sent and self._sent[0][2] is not conn):
            return True  # reply() makes the call anew (it was sent on a connection that dropped since)
        readable = self._readable
        if readable is None or readable.conn is not conn:
            readable = self._readable = transport.Readable(conn)
        try:
            return readable(timeout)
        except (OSError, EOFError, ValueError):
            self._drop()
            return True

    def reply(self) -> Any:
        """The answer to the oldest call ``send`` started (waiting for it), as ``call`` returns it."""
        self._send_held()
        method, args, conn = self._sent.popleft()
        if conn is not None and conn is self._conn:
            try:
                kind, result = conn.recv()
            except (OSError, EOFError):
                self._drop()  # out of step: make the call anew
            else:
                if hops.ON:
                    hops.hop(f"got {method}")
                if kind == "#RETURN":
                    return result
                raise _error(kind, result)
        return self.call(method, *args)

    def _sleep(self, seconds: float) -> None:
        """Sleep in short slices, so a stop request (a flag set by a signal) ends the wait."""
        end = time.monotonic() + seconds
        while (left := end - time.monotonic()) > 0:
            if self._should_stop():
                raise Interrupted(f"stopped while waiting for god at {self._where}")
            time.sleep(min(left, STOP_CHECK_S))

    def leave(self) -> None:
        """Say goodbye if the connection is open, in one try (no retries: we are leaving anyway),
        then close it."""
        conn = self._conn
        if conn is not None and not self._sent:
            try:
                transport.set_timeout(conn, LEAVE_TIMEOUT_S)
                self._exchange(conn, BROKER, "bye", (self.name,))
            except Exception:
                pass  # god forgets us after a while anyway
        self._drop()

#: TLS errors that mean the connection went away, not that TLS is set up wrong.
_TLS_TRANSIENT = (ssl.SSLEOFError, ssl.SSLZeroReturnError, ssl.SSLWantReadError, ssl.SSLWantWriteError)
#: What getaddrinfo says of a name that does not exist (not of a DNS that does not answer now).
_NO_SUCH_HOST = frozenset(e for e in (getattr(socket, "EAI_NONAME", None), getattr(socket, "EAI_NODATA", None))
                          if e is not None)


def _tls_problem(where: str, e: ssl.SSLError) -> str:
    """One line on a TLS failure that a retry will not cure."""
    reason = getattr(e, "reason", None) or str(e)
    if isinstance(e, ssl.SSLCertVerificationError):
        return (f"god at {where}: its TLS certificate is not the one we trust (the connection file's, or one "
                f"signed by --tls-ca): an impostor at that address, or god's certificate was made anew since "
                f"({e.verify_message or reason})")
    if reason in ("WRONG_VERSION_NUMBER", "UNKNOWN_PROTOCOL", "RECORD_LAYER_FAILURE", "PACKET_LENGTH_TOO_LONG"):
        return (f"god at {where} does not speak TLS ({reason}): start god with --tls-cert/--tls-key, "
                "or drop --tls-ca/GOD_TLS_CA here")
    if "ALERT" in reason or "CERTIFICATE_REQUIRED" in reason:
        return (f"god at {where} refused our TLS certificate ({reason}): god asks for client certificates "
                "signed by its --tls-ca; give --tls-cert/--tls-key")
    return f"TLS with god at {where} failed: {reason}"


def _error(kind: str, result: Any) -> BaseException:
    """The exception god's error reply stands for; a call god's rights table refused is ours
    (one line, exit code 5: a right a wait will not give)."""
    if kind == "#ERROR" and isinstance(result, PermissionError):
        return NotAllowed(f"god refused: {result}")
    return convert_to_error(kind, result)  # type: ignore[no-any-return]


def _reason(e: BaseException) -> str:
    if isinstance(e, transport.HandshakeTimeout):
        return f"{e}; if god serves TLS, give --tls-ca"
    if isinstance(e, EOFError):
        return "connection closed"
    if isinstance(e, BlockingIOError):
        return "no reply in time"
    if isinstance(e, OSError) and e.strerror:
        return e.strerror
    return describe(e)
