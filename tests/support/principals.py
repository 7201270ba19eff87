"""Tables of principals (god --keys) and raw sessions on god as one of them, for tests that
make calls by hand: what an attacker with a key of its own would send."""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from multiprocessing import connection
from pathlib import Path
from typing import Any

from shared import transport
from shared.manager import ACCEPT_BROKER, BROKER
from tests.support.gods import God


def new_keys(*names: str) -> dict[str, bytes]:
    return {name: secrets.token_hex(32).encode() for name in names}


def write_table(path: Path, keys: dict[str, bytes], roles: dict[str, list[str]],
                queues: dict[str, list[str]] | None = None) -> Path:
    """A table of principals as god --keys reads it (0600); every queue unless queues says."""
    path.write_text(json.dumps({"principals": [
        {"name": n, "key": keys[n].decode(), "roles": roles[n], "queues": (queues or {}).get(n, ["*"])}
        for n in roles]}))
    path.chmod(0o600)
    return path


@contextmanager
def session(god: God, key: bytes) -> Iterator[connection.Connection]:
    """A connection to god's broker, authenticated with key."""
    host, port = god.address.rsplit(":", 1)
    conn = transport.connect((host, int(port)), key, recv_timeout=10)
    try:
        conn.send((None, ACCEPT_BROKER, ("rights-test",), {}))
        assert conn.recv() == ("#RETURN", None)
        yield conn
    finally:
        conn.close()


def call(conn: connection.Connection, method: str, *args: Any) -> tuple[str, Any]:
    """One broker call: ("#RETURN", value) or ("#ERROR", exception)."""
    conn.send((BROKER, method, args, {}))
    return conn.recv()  # type: ignore[no-any-return]
