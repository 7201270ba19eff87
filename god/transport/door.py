"""God's door: which connections god serves, for how long, and what god says about the rest.

A new connection shakes hands on the handshakes' thread (god/transport/handshakes.py), with
one deadline for all of it (HANDSHAKE_S from its connecting) and no thread of its own; after
them the hub serves it (or, for a tutorial client's proxy, a thread). Connections that shake
hands have a budget of their own, never a client's place: at most SHAKING_PER_ADDRESS from
one address, SHAKING in all (the oldest makes room for a new one). Clients are at most
--max-connections. One that waits idle for a request longer than the idle timeout is closed
(our clients reconnect without a word). Requests are loaded as data only (shared/data.py):
one that is not gets an error reply and its connection is closed. Peers refused for a wrong
key, and connections turned away, are logged at most once per LOG_EVERY_S per kind, with how
many were not logged in between.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from multiprocessing import connection
from typing import Any

from god.defaults import FRAME_OVERHEAD, HANDSHAKE_S, IDLE_S, MAX_CONNECTIONS, MAX_PAYLOAD
from god.transport import rights
from god.transport.rights import Principal
from shared import transport
from shared.data import NotData, load_data
from shared.log import RateLimitedLog, logger

SHAKING = 256  # connections shaking hands at once (none is a client yet), all addresses together
SHAKING_PER_ADDRESS = 16  # of those, from one address


def _host_of(conn: connection.Connection) -> str:
    peer = getattr(conn, "peer", None)
    return str(peer[0]) if isinstance(peer, tuple) and peer else "?"


def peer_of(conn: connection.Connection) -> str:
    """HOST:PORT of the peer, as the listener saw it."""
    peer = getattr(conn, "peer", None)
    if isinstance(peer, tuple) and len(peer) >= 2:
        return f"{peer[0]}:{peer[1]}"
    return str(peer or "?")


@dataclass(slots=True)
class _Entry:
    conn: connection.Connection
    address: str  # the peer's host
    since: float  # when it connected
    shaken: bool = False  # its handshakes are done: a client (else it has the handshakes' budget)
    waiting_since: float | None = None  # reading, with no request in hand, since then


class Door:
    """Counts, times and, when needed, closes god's connections; thread-safe."""

    def __init__(self, *, max_connections: int = MAX_CONNECTIONS, handshake_s: float = HANDSHAKE_S,
                 idle_s: float = IDLE_S, max_frame: int = MAX_PAYLOAD + FRAME_OVERHEAD,
                 shaking: int = SHAKING, shaking_per_address: int = SHAKING_PER_ADDRESS) -> None:
        """``max_frame``: the most bytes a request may take (god --max-payload and the record
        around it); a peer that announces more is closed before it is read. ``shaking``,
        ``shaking_per_address``: the handshakes' budget (``admit``)."""
        self.max_connections = max_connections
        self.shaking, self.shaking_per_address = shaking, shaking_per_address
        self.max_frame = max_frame
        self.handshake_s = handshake_s
        self.idle_s = idle_s
        self.refused = 0
        self._open: dict[int, _Entry] = {}
        self._lock = threading.Lock()
        self.log = RateLimitedLog()

    def figures(self) -> dict[str, int]:
        """Connections open now, and connections refused so far (wrong key or over the limit)."""
        with self._lock:
            return {"connections": len(self._open), "refused": self.refused}

    def admit(self, conn: connection.Connection) -> bool:
        """A new connection, not authenticated yet: True if it may shake hands. Connections that
        shake hands have a budget of their own, never a client's place: at most
        SHAKING_PER_ADDRESS from one address (more are turned away), SHAKING in all (the
        oldest then makes room: a real client's handshakes take milliseconds)."""
        address = _host_of(conn)
        evicted = None
        with self._lock:
            shaking = [e for e in self._open.values() if not e.shaken]
            if sum(e.address == address for e in shaking) >= self.shaking_per_address:
                full = True
            else:
                full = False
                if len(shaking) >= self.shaking:
                    evicted = min(shaking, key=lambda e: e.since)
                    del self._open[id(evicted.conn)]
                self._open[id(conn)] = entry = _Entry(conn, address, time.monotonic())
        if evicted is not None:
            self.log.warning("budget", "dropped {}: {} connections shaking hands at once, it the oldest",
                             peer_of(evicted.conn), self.shaking)
            transport.shutdown(evicted.conn)
        if full:
            self.refused += 1
            self.log.warning("budget", "turned away {}: {} connections from {} shake hands already",
                             peer_of(conn), self.shaking_per_address, address)
            return False
        read, limit = conn.recv_bytes, self.max_frame

        def recv() -> Any:  # serve_client reads requests through this: idle time is time spent here
            entry.waiting_since = time.monotonic()
            try:
                body = read(limit)
            except OSError as e:
                if "bad message length" not in str(e):
                    raise
                self.log.warning("size", "closed {}: a request that says {}", peer_of(conn), "it is over god's limit "
                                 f"of {limit:,} bytes (--max-payload and the record around it)")
                raise EOFError from None  # (the stock Connection closed it already)
            finally:
                entry.waiting_since = None
            try:
                return load_data(body)
            except Exception as e:
                try:
                    conn.send(self.not_data(conn, e))
                except Exception:
                    pass  # the peer went away
                raise EOFError from None  # the thread serving it ends, and closes it

        conn.recv = recv  # type: ignore[method-assign]
        return True

    def shaken(self, conn: connection.Connection) -> bool:
        """The connection's handshakes are done: True if it may be served as a client, False
        at the limit of clients (--max-connections) or if it was dropped meanwhile."""
        with self._lock:
            entry = self._open.get(id(conn))
            clients = sum(e.shaken for e in self._open.values())
            full = entry is not None and clients >= self.max_connections
            if entry is not None and not full:
                entry.shaken = True
        if full:
            self.refused += 1
            self.log.warning("limit", "connection limit of {} reached: turned away {} (see --max-connections)",
                             self.max_connections, peer_of(conn))
        return entry is not None and not full

    def waiting(self, conn: connection.Connection, idle: bool) -> None:
        """The hub says whether a connection it serves now waits for a request (idle time counts)."""
        with self._lock:
            entry = self._open.get(id(conn))
            if entry is not None:
                entry.waiting_since = time.monotonic() if idle else None

    def left(self, conn: connection.Connection) -> None:
        """A connection is closed (by its thread, or by the hub)."""
        with self._lock:
            self._open.pop(id(conn), None)

    def not_data(self, conn: connection.Connection, e: Exception) -> tuple[str, Exception]:
        """A request god would not load (it names a class or function, or is no pickle): said in
        the log; returns the reply that tells the peer, before its connection is closed."""
        why = str(e) if isinstance(e, (NotData, transport.TooLarge)) else \
            f"it is not a whole pickle ({type(e).__name__}: {e})"
        self.log.warning("data", "closing {}: a request god does not load: {}", peer_of(conn), why)
        return "#ERROR", ValueError(f"god refused a request and closed the connection: {why}")

    def wrong_key(self, conn: connection.Connection, why: str) -> None:
        """A peer failed the authkey handshake."""
        self.refused += 1
        self.log.warning("key", "refused {}: {}", peer_of(conn), why)

    def check_call(self, conn: connection.Connection, principal: Principal, call: str, args: Any, kwds: Any,
                   owners: rights.Owners | None) -> None:
        """Let a call of a connection through, or refuse it as the rights table says
        (god/transport/rights.py), with a line at god (rate-limited); an operator's action
        allowed gets an audit line. The hub's path and a stock thread's both ask here.

        Raises:
            rights.Refused: naming the principal, the call and the right it lacks.
        """
        try:
            rights.permit(principal, call, tuple(args) if isinstance(args, (tuple, list)) else (),
                          kwds if isinstance(kwds, dict) else {}, owners, peer_of(conn))
        except rights.Refused as e:
            self.log.warning("rights", "refused a call from {}: {}", peer_of(conn), e)
            raise

    def close_principals(self, names: set[str]) -> int:
        """End the connections of these principals (removed or changed in god's table); their
        threads and the hub see them close. Returns how many."""
        with self._lock:
            theirs = [e.conn for e in self._open.values()
                      if getattr(getattr(e.conn, "principal", None), "name", None) in names]
        for conn in theirs:
            transport.shutdown(conn)
        return len(theirs)

    def close_overdue(self) -> int:
        """Close connections idle for longer than the idle timeout (a handshake's deadline is
        the handshakes' own: god/transport/handshakes.py); returns how many."""
        now = time.monotonic()
        with self._lock:
            idle = [e.conn for e in self._open.values()
                    if e.waiting_since is not None and now - e.waiting_since > self.idle_s]
        for conn in idle:
            logger.bind(role="god").debug("closing {}: idle for over {:.0f}s", peer_of(conn), self.idle_s)
            transport.shutdown(conn)
        return len(idle)
