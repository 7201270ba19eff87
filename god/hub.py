"""God's hub: one thread that serves every broker client through a selector.

The stock manager server gives each connection a thread, and a call that waits (a lease
for the next task, a producer's fetch of its results, a put waiting for room or for its
journal commit) holds that thread. Each step of a task then crossed threads inside god: the
put woke the thread of a waiting lease, the ack woke the thread of a waiting fetch, and with
64 consumers about 190 threads took turns at the GIL. Here one thread reads every request,
answers it at once when it can, and otherwise parks it: whatever lets a parked call go on
(a put, an ack, a commit, another thread's change to the broker) makes the hub retry it
and send the reply itself. Connections are non-blocking, so a slow peer holds up no one.

The wire format is the manager's own (a length-prefixed pickle each way), so our clients
keep their plain ``multiprocessing.connection`` Connection. Tutorial clients' proxies are
still served the stock way, by threads.
"""

from __future__ import annotations

import os
import pickle
import selectors
import socket
import ssl
import struct
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from multiprocessing import connection
from traceback import format_exc
from typing import Any

from loguru import logger

from god.broker import Broker
from god.door import Door, peer_of
from god.journal import dumps
from shared.manager import BROKER, BROKER_METHODS
from shared.transport import TlsConnection

READ_CHUNK = 256 * 1024  # bytes asked of a socket per read
MAX_WAIT_S = 1.0  # longest select() with no deadline due: a safety net for missed wake-ups
SPLIT_AT = 16 * 1024  # replies bigger than this go out as header and body (as the stock Connection)

_HEADER = struct.Struct("!i")
_LONG = struct.Struct("!Q")
_WOULD_BLOCK = (BlockingIOError, InterruptedError, ssl.SSLWantReadError, ssl.SSLWantWriteError)


@dataclass(eq=False)
class Peer:
    """One client connection and what is in flight on it."""

    conn: connection.Connection  # the door knows the connection by this object
    sock: socket.socket  # non-blocking; an SSLSocket under TLS
    name: str
    inbox: bytearray = field(default_factory=bytearray)
    out: deque[bytes | memoryview] = field(default_factory=deque)
    events: int = selectors.EVENT_READ
    busy: bool = False  # a request is being answered or is parked
    closed: bool = False


@dataclass(eq=False)
class Parked:
    """A call that waits: for tasks, results, room in the queue, or its journal commit."""

    peer: Peer
    kind: str  # "lease", "results", "room" or "commit"
    deadline: float
    args: tuple[Any, ...]
    done: int = 0  # puts: tasks taken care of so far
    ticket: int = 0  # puts: the journal commit to wait for


def _lease_args(consumer: str, max_n: int, timeout: float = 0.0, seq: int | None = None) -> tuple[Any, ...]:
    return consumer, max_n, timeout, seq


def _results_args(producer: str, run: str, confirmed: int, max_n: int, timeout: float = 0.0,
                  check: list[str] | None = None) -> tuple[Any, ...]:
    return producer, run, confirmed, max_n, timeout, check


def _put_args(producer: str, tasks: list[Any], timeout: float = 0.0) -> tuple[Any, ...]:
    return producer, tasks, timeout


class Hub:
    """Serves broker calls for every adopted connection from one thread."""

    def __init__(self, broker: Broker, door: Door) -> None:
        self.broker = broker
        self.door = door
        self._sel = selectors.DefaultSelector()
        self._wake_in, self._wake_out = socket.socketpair()
        self._wake_in.setblocking(False)
        self._wake_out.setblocking(False)
        self._lock = threading.Lock()  # guards _arrivals and _woken, shared with other threads
        self._arrivals: list[connection.Connection] = []
        self._woken = False
        self._dirty = False  # something changed that may let a parked call go on
        self._parked: list[Parked] = []
        self._urgent: deque[Peer] = deque()  # peers with replies to calls that waited
        self._replies: deque[Peer] = deque()  # peers with other replies to send
        self._retrying = False
        self._ident: int | None = None
        self._log = logger.bind(role="god")
        self._thread = threading.Thread(target=self._run, name="god-hub", daemon=True)
        self._special = {"lease": self._lease, "results_for": self._results_for, "put_many": self._put_many}

    def start(self) -> None:
        """Start serving; from now on the broker and the journal wake the hub on changes."""
        self.broker.changed = self.poke
        if self.broker.journal is not None:
            self.broker.journal.on_commit = self.poke
        self._thread.start()

    def adopt(self, conn: connection.Connection) -> None:
        """Serve this authenticated connection from now on (called from its first thread)."""
        with self._lock:
            self._arrivals.append(conn)
        self._wake()

    def poke(self) -> None:
        """Something changed that may let a parked call go on; from any thread."""
        if threading.get_ident() == self._ident:
            self._dirty = True
        else:
            self._wake()

    def _wake(self) -> None:
        with self._lock:
            if self._woken:
                return
            self._woken = True
        try:
            self._wake_out.send(b"\0")
        except OSError:
            pass  # the buffer is full of wake-ups already

    # -- the loop ------------------------------------------------------------------------

    def _run(self) -> None:
        self._ident = threading.get_ident()
        self._sel.register(self._wake_in, selectors.EVENT_READ, None)
        while True:
            try:
                self._step()
            except Exception:  # a bug must not stop god from serving: say it, go on
                self._log.error("hub: unexpected error, going on:\n{}", format_exc())

    def _step(self) -> None:
        now = time.monotonic()
        wait = min((p.deadline for p in self._parked), default=now + MAX_WAIT_S) - now
        if self._dirty and self._parked:
            wait = 0.0  # a change came while retrying: look again before sleeping
        for key, mask in self._sel.select(max(0.0, min(wait, MAX_WAIT_S))):
            peer = key.data
            if peer is None:
                self._take_wake_ups()
                continue
            try:
                if mask & selectors.EVENT_WRITE:
                    self._flush(peer)
                if mask & selectors.EVENT_READ and not peer.closed:
                    self._read(peer)
            except Exception as e:
                self._drop(peer, str(e))
        if self._parked and (self._dirty or any(p.deadline <= time.monotonic() for p in self._parked)):
            self._retry()
        # Replies go out once the round is done: first those of calls that waited (a lease's
        # tasks, a producer's results: what a task's path waits on), then the rest.
        for queue in (self._urgent, self._replies):
            while queue:
                peer = queue.popleft()
                if not peer.closed:
                    self._flush(peer)

    def _take_wake_ups(self) -> None:
        try:
            while self._wake_in.recv(4096):
                pass
        except BlockingIOError:
            pass
        with self._lock:
            self._woken = False
            arrivals, self._arrivals = self._arrivals, []
        for conn in arrivals:
            try:
                self._register(conn)
            except Exception as e:  # it could not be set up: this connection goes, the others stay
                self._log.warning("closing {}: {}", peer_of(conn), e)
                try:
                    conn.close()
                except OSError:
                    pass
                self.door.left(conn)
        self._dirty = True

    def _register(self, conn: connection.Connection) -> None:
        if isinstance(conn, TlsConnection):
            sock: socket.socket = conn.tls_socket
        else:  # the Connection keeps its descriptor; the hub reads and writes a duplicate
            sock = socket.socket(fileno=os.dup(conn.fileno()))
        sock.setblocking(False)
        peer = Peer(conn, sock, peer_of(conn))
        self._sel.register(sock, selectors.EVENT_READ, peer)
        self.door.waiting(conn, True)
        try:
            self._read(peer)  # the first request may be here already (TLS may even hold it)
        except Exception as e:
            self._drop(peer, str(e))

    # -- reading and writing -----------------------------------------------------------------

    def _read(self, peer: Peer) -> None:
        while True:  # to the end: TLS keeps decrypted bytes the selector cannot see
            try:
                data = peer.sock.recv(READ_CHUNK)
            except _WOULD_BLOCK:
                break
            except OSError:
                self._close(peer)
                return
            if not data:
                self._close(peer)
                return
            peer.inbox += data
        while not peer.closed:
            request = self._take_frame(peer)
            if request is None:
                return
            if peer.busy:  # our clients wait for each reply; this one did not
                self._drop(peer, "a request before the reply to the last one")
                return
            self._request(peer, request)

    @staticmethod
    def _take_frame(peer: Peer) -> Any:
        buf = peer.inbox
        if len(buf) < 4:
            return None
        (n,) = _HEADER.unpack_from(buf)
        start = 4
        if n == -1:
            if len(buf) < 12:
                return None
            (n,) = _LONG.unpack_from(buf, 4)
            start = 12
        if len(buf) < start + n:
            return None
        request = pickle.loads(buf[start : start + n])
        del buf[: start + n]
        return request

    def _send(self, peer: Peer, msg: tuple[str, Any]) -> None:
        try:
            data = pickle.dumps(msg, pickle.HIGHEST_PROTOCOL)
        except Exception:
            data = pickle.dumps(("#TRACEBACK", format_exc()), pickle.HIGHEST_PROTOCOL)
        n = len(data)
        header = _HEADER.pack(n) if n <= 0x7FFFFFFF else _HEADER.pack(-1) + _LONG.pack(n)
        if n > SPLIT_AT:
            peer.out += (header, data)
        else:
            peer.out.append(header + data)
        peer.busy = False
        self.door.waiting(peer.conn, True)
        (self._urgent if self._retrying else self._replies).append(peer)

    def _flush(self, peer: Peer) -> None:
        out = peer.out
        while out and not peer.closed:
            buf = out[0]
            try:
                sent = peer.sock.send(buf)
            except _WOULD_BLOCK:
                break
            except OSError:
                self._close(peer)
                return
            if sent < len(buf):
                out[0] = memoryview(buf)[sent:]
                break
            out.popleft()
        if peer.closed:
            return
        events = selectors.EVENT_READ | (selectors.EVENT_WRITE if out else 0)
        if events != peer.events:
            peer.events = events
            self._sel.modify(peer.sock, events, peer)

    def _drop(self, peer: Peer, why: str) -> None:
        """Close a connection that broke the protocol (or made the hub fail), saying why."""
        self._log.warning("closing {}: {}", peer.name, why)
        self._close(peer)

    def _close(self, peer: Peer) -> None:
        if peer.closed:
            return
        peer.closed = True
        try:
            self._sel.unregister(peer.sock)
        except (KeyError, ValueError):
            pass
        for end in (peer.sock, peer.conn):
            try:
                end.close()
            except OSError:
                pass
        self.door.left(peer.conn)

    # -- requests ------------------------------------------------------------------------

    def _request(self, peer: Peer, request: Any) -> None:
        ident, method, args, kwds = request
        peer.busy = True
        self.door.waiting(peer.conn, False)
        if ident != BROKER or method not in BROKER_METHODS:
            self._send(peer, ("#TRACEBACK", f"method {method!r} of {ident!r} is not served here"))
            return
        try:
            special = self._special.get(method)
            if special is not None:
                special(peer, args, kwds)
            else:
                self._send(peer, ("#RETURN", getattr(self.broker, method)(*args, **kwds)))
        except Exception as e:
            self._send(peer, ("#ERROR", e))

    def _park(self, peer: Peer, kind: str, timeout: float, args: tuple[Any, ...], done: int = 0,
              ticket: int = 0) -> None:
        self._parked.append(Parked(peer, kind, time.monotonic() + timeout, args, done, ticket))

    def _lease(self, peer: Peer, args: tuple[Any, ...], kwds: dict[str, Any]) -> None:
        consumer, max_n, timeout, seq = _lease_args(*args, **kwds)
        batch = self.broker.try_lease(consumer, max_n, seq)
        if batch is None and timeout > 0:
            self._park(peer, "lease", timeout, (consumer, max_n, seq))
            return
        if batch is None:  # nothing waits, and the caller would not wait: the stock answer
            batch = self.broker.lease(consumer, max_n, 0.0, seq)
        self._send(peer, ("#RETURN", batch))

    def _results_for(self, peer: Peer, args: tuple[Any, ...], kwds: dict[str, Any]) -> None:
        producer, run, confirmed, max_n, timeout, check = _results_args(*args, **kwds)
        posted, gone = self.broker.results_for(producer, run, confirmed, max_n, 0.0, check)
        if posted or gone or timeout <= 0:
            self._send(peer, ("#RETURN", (posted, gone)))
        else:
            self._park(peer, "results", timeout, (producer, run, confirmed, max_n))

    def _put_many(self, peer: Peer, args: tuple[Any, ...], kwds: dict[str, Any]) -> None:
        producer, tasks, timeout = _put_args(*args, **kwds)
        whole = dumps(tasks) if self.broker.journal is not None else None
        done, ticket = self.broker.offer(producer, tasks, 0, whole)
        if done < len(tasks) and timeout > 0:
            self._park(peer, "room", timeout, (producer, tasks), done, ticket)
        else:
            self._confirm(peer, done, ticket)

    def _confirm(self, peer: Peer, done: int, ticket: int) -> None:
        """Answer a put once its journal commit is in (at once without a journal)."""
        journal = self.broker.journal
        if journal is not None and ticket and not journal.committed(ticket):
            self._park(peer, "commit", float("inf"), (), done, ticket)
        else:
            self._send(peer, ("#RETURN", done))

    def _retry(self) -> None:
        """Let parked calls go on where they can, oldest first; answer those out of time."""
        self._dirty = False
        parked, self._parked = self._parked, []
        now = time.monotonic()
        self._retrying = True
        try:
            for p in parked:
                # A lease goes on after its peer is gone: what it leases, or the empty lease
                # at its deadline, is recorded under its seq, so the consumer's retry gets the
                # same answer instead of waiting anew each time (its reply timeout may be shorter).
                if p.peer.closed and p.kind != "lease":
                    continue
                if not self._go_on(p, p.deadline <= now):
                    self._parked.append(p)
        finally:
            self._retrying = False

    def _go_on(self, p: Parked, late: bool) -> bool:
        """Try a parked call again; True once it is answered (or handed to another wait)."""
        broker = self.broker
        try:
            if p.kind == "lease":
                consumer, max_n, seq = p.args
                batch = broker.try_lease(consumer, max_n, seq) if broker.has_waiting() else None
                if batch is None and not late:
                    return False
                self._send(p.peer, ("#RETURN", batch if batch is not None else broker.lease(consumer, max_n, 0.0, seq)))
            elif p.kind == "results":
                producer, run, confirmed, max_n = p.args
                posted, _ = broker.results_for(producer, run, confirmed, max_n, 0.0)
                if not posted and not late:
                    return False
                self._send(p.peer, ("#RETURN", (posted, [])))
            elif p.kind == "room":
                producer, tasks = p.args
                if broker.has_room():
                    p.done, ticket = broker.offer(producer, tasks, p.done)
                    p.ticket = max(p.ticket, ticket)
                if p.done < len(tasks) and not late:
                    return False
                self._confirm(p.peer, p.done, p.ticket)
            else:  # "commit"
                journal = broker.journal
                if journal is not None and not journal.committed(p.ticket):
                    return False
                self._send(p.peer, ("#RETURN", p.done))
        except Exception as e:
            self._send(p.peer, ("#ERROR", e))
        return True
