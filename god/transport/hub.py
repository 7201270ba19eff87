"""God's hub: one thread that serves every broker client through a selector.

The stock manager server gives each connection a thread, and a call that waits holds that
thread; each step of a task then crossed threads inside god, and with 64 consumers about
190 threads took turns at the GIL. Here one thread reads every request and answers it at
once, or parks it (god/transport/waits.py) and sends the reply when it is answered: the hub runs the
waits' retries, and the waits wake its selector when something changes. Connections are
non-blocking, so a slow peer holds up no one.

A transport only: sockets, framing (the manager's own, ``shared.transport.frame``, so our
clients keep their plain Connection), dispatch to ``god.api.Api``, parking. Tutorial
clients' proxies are still served the stock way, by threads.
"""

from __future__ import annotations

import os
import pickle
import selectors
import socket
import ssl
import threading
from collections import deque
from dataclasses import dataclass, field
from multiprocessing import connection
from traceback import format_exc
from typing import Any

from god.journal.journal import Journal
from god.transport import rights
from god.transport.api import Api
from god.transport.door import Door, peer_of
from god.transport.rights import NOBODY, Principal
from god.transport.waits import Wait, Waits
from shared import hops
from shared.log import logger
from shared.manager import BROKER, BROKER_METHODS
from shared.transport import TlsConnection, frame, unframe

READ_CHUNK = 256 * 1024  # bytes asked of a socket per read
MAX_PIPELINE = 64  # requests of one connection in hand at once; more wait in its socket
MAX_WAIT_S = 1.0  # longest select() with no deadline due: a safety net for missed wake-ups
#: Bytes of replies a peer has not read past which god reads no more of its requests until it
#: does (and, in its inbox, a whole request of the largest size that waits: the same): what a
#: client that sends without reading costs god is bounded.
OUT_CAP = 8 * 2**20

_WOULD_BLOCK = (BlockingIOError, InterruptedError, ssl.SSLWantReadError, ssl.SSLWantWriteError)


@dataclass(eq=False)
class Peer:
    """One client connection and what is in flight on it."""

    conn: connection.Connection  # the door knows the connection by this object
    sock: socket.socket  # non-blocking; an SSLSocket under TLS
    name: str
    inbox: bytearray = field(default_factory=bytearray)
    out: deque[bytes | memoryview] = field(default_factory=deque)
    out_bytes: int = 0  # in out, not sent yet
    stuck: bool = False  # its socket took less than out at the last flush: it waits for room
    events: int = selectors.EVENT_READ  # what the selector watches it for (0: not registered)
    # Requests in hand, oldest first, each a box for its reply: replies go out in the order
    # the requests came, so a client may send several before reading (a producer's puts).
    pending: deque[list[Any]] = field(default_factory=deque)
    held: Wait | None = None  # a parked call that later requests wait behind (holds_line)
    closed: bool = False
    tls: bool = False
    principal: Principal = NOBODY  # who it is (its key): what it may call


class Hub:
    """Serves broker calls for every adopted connection from one thread."""

    def __init__(self, api: Api, waits: Waits, door: Door, owners: rights.Owners | None = None) -> None:
        """``owners``: whose each client name is (god --keys), checked on every call."""
        self.api = api
        self.owners = owners
        self._journal = api.journal if isinstance(api.journal, Journal) else None
        self.waits = waits
        self.door = door
        self._sel = selectors.DefaultSelector()
        self._lock = threading.Lock()  # guards _arrivals, shared with the door's threads
        self._arrivals: list[connection.Connection] = []
        self._urgent: deque[Peer] = deque()  # peers with replies to calls that waited
        self._replies: deque[Peer] = deque()  # peers with other replies to send
        self._resume: set[Peer] = set()  # peers with requests that wait (behind a parked call, or for room)
        self._reread: set[Peer] = set()  # TLS peers read from again once their back-pressure ended
        self._retrying = False
        self._buf = bytearray(READ_CHUNK)
        self._view = memoryview(self._buf)
        self._log = logger.bind(role="god")
        self._thread = threading.Thread(target=self._run, name="god-hub", daemon=True)

    def start(self) -> None:
        """Start serving."""
        self._thread.start()

    def adopt(self, conn: connection.Connection) -> None:
        """Serve this authenticated connection from now on (called from its first thread)."""
        with self._lock:
            self._arrivals.append(conn)
        self.waits.changed()

    # -- the loop ------------------------------------------------------------------------

    def _run(self) -> None:
        self.waits.serve_from_this_thread()
        if self._journal is not None:
            self._journal.serve_from_this_thread()
        self._sel.register(self.waits.fileno(), selectors.EVENT_READ, None)
        while True:
            try:
                self.step()
            except Exception:  # a bug must not stop god from serving: say it, go on
                self._log.error("hub: unexpected error, going on:\n{}", format_exc())

    def step(self) -> None:
        """One round: read what came, answer or park it, retry parked calls, send replies."""
        while self._reread:
            peer = self._reread.pop()
            if not peer.closed and peer.events & selectors.EVENT_READ:
                try:
                    self._read(peer)
                except Exception as e:
                    self._drop(peer, str(e))
        for key, mask in self._sel.select(0 if self._ready() else self.waits.timeout(MAX_WAIT_S)):
            peer = key.data
            if peer is None:
                self.waits.woken()
                self._take_arrivals()
                continue
            try:
                if mask & selectors.EVENT_WRITE:
                    self._flush(peer)
                if mask & selectors.EVENT_READ and not peer.closed:
                    self._read(peer)
            except Exception as e:
                self._drop(peer, str(e))
        self._answer()
        # What this round gave the journal: committed here when nothing else waits (as a lone
        # task's put and its result do), and what waited for that answered in the same round.
        if self._journal is not None and self._journal.commit_here(self._idle):
            self.waits.changed()
            self._answer()

    def _idle(self) -> bool:
        """Whether no request is in hand to serve and no socket has anything to read or room
        that a reply waits for. Not idle: the next round's select returns at once."""
        return not self._ready() and not self._sel.select(0)

    def _ready(self) -> bool:
        """Whether requests are in hand to serve (none behind a parked call)."""
        return any(p.held is None or not p.held.holds_line for p in self._resume)

    def _retry(self) -> None:
        """Retry the parked calls; the replies of those answered are urgent."""
        self._retrying = True
        try:
            self.waits.retry()
        finally:
            self._retrying = False

    def _send_urgent(self) -> None:
        """Send the replies of calls that waited (a lease's tasks, a producer's results: what a
        task's path waits on)."""
        while self._urgent:
            peer = self._urgent.popleft()
            if not peer.closed:
                self._flush(peer)

    def _answer(self) -> None:
        """Retry the parked calls, serve what waited behind them, send the replies."""
        self._retry()
        for peer in list(self._resume):  # serve what waited behind a parked call, or for room
            if peer.held is not None and peer.held.holds_line:
                continue
            self._resume.discard(peer)
            peer.held = None
            self._serve(peer)
        # Replies go out once the round is done: first those of calls that waited, then the rest.
        self._send_urgent()
        while self._replies:
            peer = self._replies.popleft()
            if not peer.closed:
                self._flush(peer)

    def _take_arrivals(self) -> None:
        with self._lock:
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

    def _register(self, conn: connection.Connection) -> None:
        if isinstance(conn, TlsConnection):
            sock: socket.socket = conn.tls_socket
        else:  # the Connection keeps its descriptor; the hub reads and writes a duplicate
            sock = socket.socket(fileno=os.dup(conn.fileno()))
        sock.setblocking(False)
        peer = Peer(conn, sock, peer_of(conn), tls=isinstance(conn, TlsConnection),
                    principal=getattr(conn, "principal", NOBODY))
        self._sel.register(sock, selectors.EVENT_READ, peer)
        self.door.waiting(conn, True)
        try:
            self._read(peer)  # the first request may be here already (TLS may even hold it)
        except Exception as e:
            self._drop(peer, str(e))

    # -- reading and writing -----------------------------------------------------------------

    def _read(self, peer: Peer) -> None:
        # Into one buffer of the hub's: recv(256 KiB) allocates that much for every call, even
        # one that finds nothing (16 us each here, against 3 for recv_into).
        buf, view = self._buf, self._view
        full = False
        while True:
            try:
                n = peer.sock.recv_into(buf)
            except _WOULD_BLOCK:
                break
            except OSError:
                self._close(peer)
                return
            if not n:
                self._close(peer)
                return
            peer.inbox += view[:n]
            if n < READ_CHUNK and not peer.tls:
                break  # the socket is empty; TLS may hold decrypted bytes the selector cannot see
            if len(peer.inbox) > self.door.max_frame:
                full = True
                break  # served (or refused: a header says how big) before reading more
        self._serve(peer)
        if full and peer.tls and not peer.closed and peer.events & selectors.EVENT_READ:
            self._reread.add(peer)

    def _serve(self, peer: Peer) -> None:
        """Take the requests that came, in order, while none waits behind a parked call (a
        parked call that yields to the next one is answered now)."""
        while (not peer.closed and peer.held is None and len(peer.pending) < MAX_PIPELINE
               and peer.out_bytes <= OUT_CAP):
            try:
                whole, request = unframe(peer.inbox, self.door.max_frame)
            except Exception as e:
                self._refuse(peer, e)
                return
            if not whole:
                self._watch(peer)
                return
            self._request(peer, request)
            if self.waits.dirty:  # it may let parked calls go on (a put, a lease that waits for
                self._retry()  # it): their replies go out before the next request is read
                self._send_urgent()
        # After the loop, not before it: a call that yields may have parked just now with the
        # next request already here (a worker's results in the same read as its lease), which
        # then waited the lease's whole second (2,000 tasks of 50 ms took 2.1 s, not 1.1).
        held = peer.held
        if held is not None and held.yields and peer.inbox:
            self.waits.hurry(held)
        if not peer.closed:
            self._watch(peer)

    def _send(self, peer: Peer, box: list[Any], msg: tuple[str, Any]) -> None:
        """The reply to the request of box; it goes out after those of the requests before it."""
        if peer.closed:
            return  # it went away while its call waited: the reply has no one to go to
        try:
            box.append(frame(msg))
        except Exception:
            box.append(frame(("#TRACEBACK", format_exc())))
        if peer.pending[0] is not box:
            return  # an earlier call still waits
        while peer.pending and peer.pending[0]:
            for piece in peer.pending.popleft()[0]:
                peer.out.append(piece)
                peer.out_bytes += len(piece)
        if not peer.pending:
            self.door.waiting(peer.conn, True)
        (self._urgent if self._retrying else self._replies).append(peer)
        if peer.inbox:
            self._resume.add(peer)  # more came meanwhile: served once this round is done

    def _flush(self, peer: Peer) -> None:
        out = peer.out
        while out and not peer.closed:
            buf = out[0]
            if hops.ON:
                hops.hop("writes")
            try:
                sent = peer.sock.send(buf)
            except _WOULD_BLOCK:
                break
            except OSError:
                self._close(peer)
                return
            peer.out_bytes -= sent
            if sent < len(buf):
                out[0] = memoryview(buf)[sent:]
                break
            out.popleft()
        peer.stuck = bool(out)
        if not peer.closed:
            self._watch(peer)

    def _watch(self, peer: Peer) -> None:
        """Watch a peer for what god wants of it now: its requests, unless what it sent and god
        has not served, or god's replies it has not read, are past their bounds (back-pressure:
        its socket then fills, and its sends wait); room to write, while replies wait."""
        reading = len(peer.inbox) <= self.door.max_frame + 12 and peer.out_bytes <= OUT_CAP
        # Room to write only when a flush found none: replies of this round go out at its end
        # (watching for room meanwhile would cost two more system calls a request).
        events = (selectors.EVENT_READ if reading else 0) | (selectors.EVENT_WRITE if peer.stuck else 0)
        if events == peer.events:
            return
        if not events:
            self._sel.unregister(peer.sock)
        elif not peer.events:
            self._sel.register(peer.sock, events, peer)
        else:
            self._sel.modify(peer.sock, events, peer)
        resumed = reading and not peer.events & selectors.EVENT_READ
        peer.events = events
        if resumed:
            if peer.inbox:
                self._resume.add(peer)  # requests it sent while god read no more: served now
            if peer.tls:
                self._reread.add(peer)  # TLS may hold decrypted bytes the selector cannot see

    def _refuse(self, peer: Peer, e: Exception) -> None:
        """A request god does not load: say so to the peer, as far as its socket takes it now,
        and close its connection (what was in flight on it is answered no more)."""
        data = b"".join(frame(self.door.not_data(peer.conn, e)))
        peer.out.append(data)
        peer.out_bytes += len(data)
        self._flush(peer)
        self._close(peer)

    def _drop(self, peer: Peer, why: str) -> None:
        """Close a connection that broke the protocol (or made the hub fail), saying why."""
        self._log.warning("closing {}: {}", peer.name, why)
        self._close(peer)

    def _close(self, peer: Peer) -> None:
        if peer.closed:
            return
        peer.closed = True
        self._resume.discard(peer)
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
        try:
            ident, method, args, kwds = request
        except (TypeError, ValueError):
            raise pickle.UnpicklingError("not a manager request") from None
        if hops.ON:
            hops.hop(f"read {method}")
        box: list[Any] = []
        peer.pending.append(box)
        self.door.waiting(peer.conn, False)
        if ident != BROKER or method not in BROKER_METHODS:
            self._send(peer, box, ("#TRACEBACK", f"method {method!r} of {ident!r} is not served here"))
            return
        try:
            self.door.check_call(peer.conn, peer.principal, method, args, kwds, self.owners)
        except rights.Refused as e:
            self._send(peer, box, ("#ERROR", PermissionError(str(e))))  # (a builtin: any client loads it)
            return
        try:
            reply = getattr(self.api, method)(*args, **kwds)
        except Exception as e:
            self._send(peer, box, ("#ERROR", e))
            return
        if method == "hello":  # a client is told what its principal may do (its Executor says so before sending)
            reply = {**reply, "principal": peer.principal.described()}
        if isinstance(reply, Wait):
            def answer(value: Any, error: BaseException | None, wait: Wait = reply) -> None:
                if peer.held is wait:
                    peer.held = None
                if hops.ON:
                    hops.hop(f"answered {method} (parked)")
                self._send(peer, box, ("#RETURN", value) if error is None else ("#ERROR", error))
            if reply.holds_line:
                peer.held = reply
                self._resume.add(peer)
            self.waits.park(reply, answer)
        else:
            if hops.ON:
                hops.hop(f"answered {method}")
            self._send(peer, box, ("#RETURN", reply))
