"""God sealed: what a client sends is loaded as data, never as code, on every path in."""

from __future__ import annotations

import inspect
import pickle
import struct
from collections.abc import Callable
from multiprocessing import connection
from pathlib import Path
from typing import Any

import pytest

from god.transport.api import Api
from producer import Executor
from shared import items
from shared.manager import BROKER, BROKER_METHODS
from shared.records import FRAME_OVERHEAD
from tests.support.gods import God, addr_env, god_stats, settings_for
from tests.support.helpers import Proc
from tests.support.peers import call_with_deadline, raw_peer, stock_peer

pytestmark = pytest.mark.timeout(90)


class Bomb:
    """What an attacker holding the key sends: unpickling it creates a file (the stock
    unpickler calls open(path, "w"))."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self) -> tuple[Any, tuple[str, str]]:
        return open, (str(self.path), "w")


def refused(conn: connection.Connection) -> str:
    """The error god answered with, after which it closed the connection."""
    kind, error = conn.recv()
    assert kind == "#ERROR" and isinstance(error, ValueError), (kind, error)
    with pytest.raises((EOFError, OSError)):
        conn.recv()
    return str(error)


def arity(method: str) -> int:
    """How many arguments a broker method takes, at most."""
    return len(inspect.signature(getattr(Api, method)).parameters) - 1  # (self)


def test_a_request_that_names_code_is_refused_whatever_the_method_and_argument(
        god: God, env: dict[str, str], tmp_path: Path) -> None:
    settings = settings_for(god, env)
    mark = tmp_path / "ran"
    bomb = Bomb(mark)
    requests: list[tuple[Any, ...]] = [(bomb, "ping", (), {}), (BROKER, "ping", (), {"x": bomb})]
    for method in BROKER_METHODS:
        n = arity(method)
        for i in range(n):
            requests.append((BROKER, method, tuple(bomb if j == i else None for j in range(n)), {}))
        # and deep inside an argument, as a payload in a put's tuple would be
        requests.append((BROKER, method, tuple([[None, {"k": (1, bomb)}]] + [None] * (n - 1)), {}))
    for request in requests:
        # When a client that holds the key sends the request over the hub's path
        with raw_peer(settings) as peer:
            peer.send(request)
            # Then it is told god refused it, naming what it named, and its connection is closed
            assert "names io.open" in refused(peer), request[:2]
    # and nothing of it ran, and god serves everyone else as before
    assert not mark.exists()
    assert call_with_deadline(settings, "stats")["waiting"] == 0  # type: ignore[index]
    god.proc.wait_for(r"closing 127\.0\.0\.1:\d+: a request god does not load: it names io\.open", stream="err")


def test_a_tutorial_clients_path_loads_data_only_too(god: God, env: dict[str, str], tmp_path: Path) -> None:
    settings = settings_for(god, env)
    mark = tmp_path / "ran"
    # When the first request on a connection a stock server thread serves names code
    with stock_peer(settings) as peer:
        peer.send((None, "create", ("get_task_queue", Bomb(mark)), {}))
        assert "names io.open" in refused(peer)
    # and when a later one does, once that thread serves the connection as a proxy's
    with stock_peer(settings) as peer:  # (a create is a connection of its own)
        peer.send((None, "create", ("get_task_queue",), {}))
        kind, (ident, _exposed) = peer.recv()
        assert kind == "#RETURN"
    with stock_peer(settings) as peer:
        peer.send((None, "accept_connection", ("attacker",), {}))
        assert peer.recv() == ("#RETURN", None)
        peer.send((ident, "put", (Bomb(mark),), {}))
        assert "names io.open" in refused(peer)
    # Then nothing ran and the queue took nothing
    assert not mark.exists()
    assert call_with_deadline(settings, "stats")["waiting"] == 0  # type: ignore[index]


def test_a_frame_that_is_not_a_pickle_is_refused_and_god_goes_on(god: God, env: dict[str, str]) -> None:
    settings = settings_for(god, env)
    for body in (b"hello", pickle.dumps((BROKER, "ping", (), {}))[:-3]):
        with raw_peer(settings) as peer:
            # When a peer sends a frame that is not a whole pickle
            peer._send(struct.pack("!i", len(body)) + body)  # type: ignore[attr-defined]
            # Then it is told so, and god closes that connection
            assert "not a whole pickle" in refused(peer)
    god.proc.wait_for(r"closing 127\.0\.0\.1:\d+: a request god does not load: it is not a whole pickle", stream="err")
    # and everyone else is served as before
    assert call_with_deadline(settings, "stats")["waiting"] == 0  # type: ignore[index]


def test_a_request_over_the_limit_is_refused_before_it_is_read(start_god: Callable[..., God],
                                                              env: dict[str, str]) -> None:
    g = start_god("--max-payload", "1000")
    settings = settings_for(g, env)
    limit = 1000 + FRAME_OVERHEAD
    # When a peer announces a request one byte over god's limit, and sends nothing of it
    with raw_peer(settings) as peer:
        peer._send(struct.pack("!i", limit + 1))  # type: ignore[attr-defined]
        # Then it is told at once, and closed
        assert f"it is {limit + 1:,} bytes, over god's limit of {limit:,}" in refused(peer)
    with stock_peer(settings) as peer:  # (a tutorial client's path: closed, logged)
        peer.send((None, "accept_connection", ("big",), {}))
        assert peer.recv() == ("#RETURN", None)
        peer._send(struct.pack("!i", limit + 1))  # type: ignore[attr-defined]
        with pytest.raises((EOFError, OSError)):
            peer.recv()
    g.proc.wait_for(r"closed 127\.0\.0\.1:\d+: a request that says it is over god's limit", stream="err")
    # and a put over --max-payload is refused, whoever sent it
    put = (1, 1, items.pack(["x" * 2000]), "default", None, 0, None, None, None)
    with raw_peer(settings) as peer:
        peer.send((BROKER, "put_many", ("p", put, 0.0), {}))
        kind, error = peer.recv()
    assert kind == "#ERROR" and "a put's payloads are 2,0" in str(error) and "over god's --max-payload of 1,000" in str(error)
    assert god_stats(g, env)["accepted"] == 0


def test_batches_and_results_over_max_payload_travel_in_parts(start_god: Callable[..., God], spawn: Callable[..., Proc],
                                                              env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    # Given god taking 20,000 bytes a put, and a consumer
    g = start_god("--max-payload", "20000")
    spawn("consumer", "--processes", "1", env_extra=addr_env(g))
    monkeypatch.setenv("GOD_AUTHKEY", env["GOD_AUTHKEY"])
    with Executor(g.address, give_up_after=10) as ex:
        # When a map's calls and their values take 60 times that together
        got = list(ex.map(str.zfill, ["7"] * 300, [4000] * 300))
        # Then every one comes back: the puts and the acks went in parts
        assert got == ["0" * 3999 + "7"] * 300
        # and one value over the limit alone fails, saying so
        with pytest.raises(Exception, match="over god's --max-payload of 20,000: return a path to the data instead"):
            ex.submit(str.zfill, "7", 30000).result(timeout=30)
    assert god_stats(g, env)["accepted"] == 301
