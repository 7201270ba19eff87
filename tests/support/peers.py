"""Talking to god by hand: a call that gives up quickly, and a connection for raw frames."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from multiprocessing import connection

from shared import transport
from shared.client import GodClient
from shared.config import Settings
from shared.manager import ACCEPT_BROKER


def call_with_deadline(settings: Settings, method: str, *args: object) -> object:
    """One call on a fresh connection that gives up after 5 s instead of retrying."""
    quick = Settings(settings.address, settings.authkey, settings.authkey_source, give_up_after=5)
    c = GodClient(quick, name="bystander", role="status")
    try:
        return c.call(method, *args)
    finally:
        c.close()


@contextmanager
def stock_peer(settings: Settings) -> Iterator[connection.Connection]:
    """An authenticated connection that a stock server thread serves (a tutorial client's)."""
    conn = transport.connect(settings.address, settings.authkey, recv_timeout=10)
    try:
        yield conn
    finally:
        conn.close()


@contextmanager
def raw_peer(settings: Settings) -> Iterator[connection.Connection]:
    """An authenticated connection handed to the hub, for sending bytes by hand."""
    with stock_peer(settings) as conn:
        conn.send((None, ACCEPT_BROKER, ("raw",), {}))
        assert conn.recv() == ("#RETURN", None)
        yield conn
