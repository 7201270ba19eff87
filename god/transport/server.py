"""God's manager server, run in god's own process: registered callables and the serve thread."""

from __future__ import annotations

import errno
import socket
import ssl
import threading
from multiprocessing import connection, managers
from collections.abc import Callable, Sequence
from traceback import format_exc
from typing import Any, cast

from god.rules.broker import Broker
from god.transport.api import Api
from god.transport.door import Door
from god.transport.handshakes import Handshakes
from god.transport.hub import Hub
from god.transport import rights
from god.transport.identity import identity
from god.transport.rights import Principal, everyone
from god.transport.views import ResultQueueView, TaskQueueView, Tutorial
from god.transport.waits import Wait, Waits
from shared import transport
from shared.config import Address, Settings, Tls, format_address, loopback
from shared.errors import AddressInUseError, ConfigError
from shared.manager import (
    BROKER, BROKER_METHODS, QUEUE_METHODS, RESULT_QUEUES, TASK_QUEUES, GodManager,
)

# The registered callables run in server threads and must reach god's one broker; they are
# module-level functions (a lambda cannot be pickled under spawn/forkserver), so it lives here.
_served: tuple[Tutorial, Waits, Api] | None = None


def _god() -> tuple[Tutorial, Waits, Api]:
    if _served is None:
        raise RuntimeError("god's broker is not set up")
    return _served


class ThreadApi:
    """The Api for a connection a stock server thread serves: a call that waits blocks the thread."""

    def __init__(self, api: Api, waits: Waits) -> None:
        self._api, self._waits = api, waits

    def __getattr__(self, name: str) -> Any:
        method = getattr(self._api, name)

        def call(*args: Any, **kwds: Any) -> Any:
            reply = method(*args, **kwds)
            return self._waits.call(reply) if isinstance(reply, Wait) else reply

        return call


def get_broker() -> ThreadApi:
    """The broker API this process serves."""
    _, waits, api = _god()
    return ThreadApi(api, waits)


def get_task_queue() -> TaskQueueView:
    """A queue-shaped view of the default queue's tasks, for tutorial clients."""
    return TaskQueueView(_god()[0])


def get_result_queue() -> ResultQueueView:
    """A queue-shaped view of the results, for tutorial clients."""
    return ResultQueueView(_god()[0])


class GodServerManager(GodManager):
    """God's side of GodManager: the same names, with the callables that serve them."""


GodServerManager.register(BROKER, callable=get_broker, exposed=BROKER_METHODS)
for _name in TASK_QUEUES:
    GodServerManager.register(_name, callable=get_task_queue, exposed=QUEUE_METHODS)
for _name in RESULT_QUEUES:
    GodServerManager.register(_name, callable=get_result_queue, exposed=QUEUE_METHODS)


class DoorServer(managers.Server):
    """The stock manager Server with god's door: a connection limit, handshake and idle timeouts,
    and refused peers logged. Only connection handling differs; requests are served as ever.
    """

    door: Door
    hub: Hub
    handshakes: Handshakes
    owners: rights.Owners | None
    listener: connection.Listener
    authkey: bytes

    def _call_name(self, ident: Any, method: Any) -> str:
        """A request's row in the rights table: the broker's method, or a view's."""
        if ident == BROKER:
            return str(method)
        obj = self.id_to_obj.get(ident, (None,))[0]
        kind = ("tasks" if isinstance(obj, TaskQueueView) else "results" if isinstance(obj, ResultQueueView)
                else "server")
        return f"{kind}.{method}"

    def accepter(self) -> None:
        """Accept connections; each admitted one shakes hands on the handshakes' thread."""
        while True:
            try:
                c = self.listener.accept()
            except OSError:
                continue
            if not self.door.admit(c):
                c.close()
                continue
            self.handshakes.add(c)

    def serve_first(self, conn: connection.Connection, request: Any) -> None:
        """A connection through its handshakes whose first request is not our clients' (a
        tutorial client's): served as the stock server serves it, on this thread."""
        try:
            self._serve_first(conn, request)
        except SystemExit:
            pass  # serve_client() calls sys.exit(0) on EOF
        finally:
            conn.close()
            self.door.left(conn)

    def _serve_first(self, c: connection.Connection, request: Any) -> None:
        # The stock handle_request, after handshakes done elsewhere (god/transport/handshakes.py).
        principal: Principal = c.principal  # type: ignore[attr-defined]
        recv = c.recv

        def checked() -> Any:  # every later request of the connection (serve_client's), checked
            later = recv()
            if type(later) is tuple and len(later) == 4:
                self.door.check_call(c, principal, self._call_name(later[0], later[1]), later[2], later[3], self.owners)
            return later

        c.recv = checked  # type: ignore[method-assign]
        try:
            ignore, funcname, args, kwds = request
            assert funcname in self.public, f"{funcname!r} unrecognized"
            self.door.check_call(c, principal, f"server.{funcname}", args, kwds, self.owners)
            func = getattr(self, funcname)
        except Exception:
            msg: tuple[str, Any] = ("#TRACEBACK", format_exc())
        else:
            try:
                msg = ("#RETURN", func(c, *args, **kwds))
            except Exception:
                msg = ("#TRACEBACK", format_exc())
        try:
            c.send(msg)
        except Exception:
            pass  # the peer went away


class GodServer:
    """The manager server bound to god's address, served by a thread of this process."""

    def __init__(self, broker: Broker, api: Api, waits: Waits, settings: Settings, door: Door,
                 principals: Callable[[], Sequence[Principal]] | None = None) -> None:
        """``principals``: who may connect (god --keys); by default the one key, every role."""
        every = [everyone(settings.authkey)]
        self.principals: Callable[[], Sequence[Principal]] = principals or (lambda: every)
        # whose each client name is, when principals differ (with the one key, all are one's)
        self.owners = rights.Owners() if principals is not None else None
        self.broker = broker
        self.api = api
        self.waits = waits
        self.settings = settings
        self.door = door
        self.address: Address = settings.address
        self._thread: threading.Thread | None = None
        self.own_tls: Tls | None = None  # god's own certificate, when it serves one

    def _tls(self) -> tuple[ssl.SSLContext | None, bool]:
        """God's TLS, and whether it speaks it on loopback too. A certificate given: to every
        peer. None, listening beyond this machine: its own (made once, ``identity``), to peers
        elsewhere, unless plain was asked for by name (--insecure-plain-tcp). Else none."""
        if self.settings.tls is not None:
            return transport.server_context(self.settings.tls), True
        if self.settings.plain or loopback(self.settings.address[0]):
            return None, True
        self.own_tls = identity()
        return transport.server_context(self.own_tls), False

    def start(self) -> Address:
        """Bind and start serving; returns the real address (port 0 becomes a free port).

        Raises:
            AddressInUseError: another process holds the port.
            ConfigError: the host cannot be bound here.
        """
        global _served
        _served = (Tutorial(self.broker, self.api, self.waits), self.waits, self.api)
        where = format_address(self.settings.address)
        transport.server_tls, transport.tls_on_loopback = self._tls()
        try:
            server = DoorServer(getattr(GodServerManager, "_registry"), self.settings.address,
                                self.settings.authkey, transport.SERIALIZER)
        except socket.gaierror as e:
            raise ConfigError(f"cannot listen on {where}: unknown host ({e.strerror})") from None
        except OSError as e:
            if e.errno == errno.EADDRINUSE:
                raise AddressInUseError(f"cannot listen on {where}: the port is already in use") from None
            raise ConfigError(f"cannot listen on {where}: {e.strerror or e}") from None
        # Our clients call the broker under a fixed id, with no 'create'/'incref' round
        # trips first; the refcount of 1 keeps the server from ever disposing of it.
        server.id_to_obj[BROKER] = (ThreadApi(self.api, self.waits), frozenset(BROKER_METHODS), None)  # type: ignore[assignment]
        server.id_to_refcount[BROKER] = 1  # type: ignore[attr-defined]
        server.door = self.door
        server.hub = Hub(self.api, self.waits, self.door, self.owners)
        server.owners = self.owners
        server.hub.start()
        server.handshakes = Handshakes(self.door, self.principals, adopt=server.hub.adopt,
                                       serve=server.serve_first)
        server.handshakes.start()
        self.address = cast(Address, server.address)
        self._thread = threading.Thread(target=server.serve_forever, name="god-server", daemon=True)
        self._thread.start()
        return self.address
