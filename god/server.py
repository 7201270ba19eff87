"""God's manager server, run in god's own process: registered callables and the serve thread."""

from __future__ import annotations

import errno
import socket
import threading
from typing import cast

from god.broker import Broker
from god.views import ResultQueueView, TaskQueueView
from shared.config import Address, Settings, format_address
from shared.errors import AddressInUseError, ConfigError
from shared.manager import BROKER, BROKER_METHODS, CQ, PQ, QUEUE_METHODS, RESULT_QUEUE, TASK_QUEUE, GodManager

# The registered callables run in server threads and must reach god's one broker; they are
# module-level functions (a lambda cannot be pickled under spawn/forkserver), so it lives here.
_broker: Broker | None = None


def get_broker() -> Broker:
    """The broker this process serves."""
    if _broker is None:
        raise RuntimeError("god's broker is not set up")
    return _broker


def get_task_queue() -> TaskQueueView:
    """A queue-shaped view of the tasks, for tutorial clients."""
    return TaskQueueView(get_broker())


def get_result_queue() -> ResultQueueView:
    """A queue-shaped view of the results, for tutorial clients."""
    return ResultQueueView(get_broker())


class GodServerManager(GodManager):
    """God's side of GodManager: the same names, with the callables that serve them."""


GodServerManager.register(BROKER, callable=get_broker, exposed=BROKER_METHODS)
for _name in (PQ, TASK_QUEUE):
    GodServerManager.register(_name, callable=get_task_queue, exposed=QUEUE_METHODS)
for _name in (CQ, RESULT_QUEUE):
    GodServerManager.register(_name, callable=get_result_queue, exposed=QUEUE_METHODS)


class GodServer:
    """The manager server bound to god's address, served by a thread of this process."""

    def __init__(self, broker: Broker, settings: Settings) -> None:
        self.broker = broker
        self.settings = settings
        self.address: Address = settings.address
        self._thread: threading.Thread | None = None

    def start(self) -> Address:
        """Bind and start serving; returns the real address (port 0 becomes a free port).

        Raises:
            AddressInUseError: another process holds the port.
            ConfigError: the host cannot be bound here.
        """
        global _broker
        _broker = self.broker
        manager = GodServerManager(self.settings.address, self.settings.authkey)
        where = format_address(self.settings.address)
        try:
            server = manager.get_server()
        except socket.gaierror as e:
            raise ConfigError(f"cannot listen on {where}: unknown host ({e.strerror})") from None
        except OSError as e:
            if e.errno == errno.EADDRINUSE:
                raise AddressInUseError(f"cannot listen on {where}: the port is already in use") from None
            raise ConfigError(f"cannot listen on {where}: {e.strerror or e}") from None
        # Our clients call the broker under a fixed id, with no 'create'/'incref' round
        # trips first; the refcount of 1 keeps the server from ever disposing of it.
        server.id_to_obj[BROKER] = (self.broker, frozenset(BROKER_METHODS), None)  # type: ignore[assignment]
        server.id_to_refcount[BROKER] = 1  # type: ignore[attr-defined]
        self.address = cast(Address, server.address)
        self._thread = threading.Thread(target=server.serve_forever, name="god-server", daemon=True)
        self._thread.start()
        return self.address
