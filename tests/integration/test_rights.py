"""Principals and one rights table: every call a client may make, by every role, over the wire.

God is started with a table of principals (god --keys): one per role, and a producer whose
queues leave out the one the calls name. Each makes every call; god refuses exactly what the
rights table (god/transport/rights.py) does not give its roles and queues.
"""

from __future__ import annotations

import json
import secrets
import signal
from collections.abc import Callable
from multiprocessing.managers import Server
from pathlib import Path
from typing import Any

import pytest

from god.transport.rights import RIGHTS, Principal, Refused, check
from shared import exitcodes, items
from shared.manager import BROKER, BROKER_METHODS, QUEUE_METHODS
from tests.support.gods import God
from tests.support.helpers import Proc, wait_until
from tests.support.principals import call, session

pytestmark = pytest.mark.timeout(60)

Q = "pages"  # the queue every call names
TABLE = {  # name: (roles, queues)
    "ingest": (["producer"], ["pag*"]),
    "worker": (["consumer"], ["pages"]),
    "ops": (["operator"], ["*"]),
    "watch": (["viewer"], ["*"]),
    "outsider": (["producer", "consumer", "operator", "viewer"], ["other"]),
    "tutor": (["producer", "consumer"], ["default"]),  # the tutorial's views are of the default queue
}

#: Arguments for each broker method that god takes (or refuses on their merits, not the caller's).
CALLS: dict[str, tuple[Any, ...]] = {
    "ping": (),
    "hello": ("someone", "producer", {}),
    "bye": ("someone",),
    "put_many": ("someone", (1, 1, items.pack([1]), Q, None, 0, None, None, None)),
    "results_for": ("someone", "run", 0, 1),
    "task": ("someone/1",),
    "lease": ("someone", (Q,), 1),
    "ack_lease": ("someone", [], (Q,), 0),
    "ack_many": ("someone", []),
    "heartbeat": ("someone",),
    "worker_lost": ("someone.w1", []),
    "output": ("someone", []),
    "value_missing": ("someone", []),
    "value_put": ("someone", "0" * 64, 1, 0, b"x"),
    "value_get": ("someone", "0" * 64, 0, 1),
    "stats": (),
    "dead": (Q,),
    "failed": (Q,),
    "schedule_list": (),
    "dashboard_address": (),
    "cancel": (None, Q),
    "requeue": (None, Q),
    "purge": (Q,),
    "pause": (Q, False),
    "drain": ("nobody-here",),
    "set_limit": (Q, None),
    "schedule_add": ("s1", 60.0, None, Q, None, 1),
    "schedule_remove": ("no-such-schedule",),
    "reload_keys": (),
}


def _for(args: tuple[Any, ...], who: str) -> tuple[Any, ...]:
    """The call's arguments with the client name "someone" made who."""
    return tuple(a.replace("someone", who) if isinstance(a, str) else a for a in args)


@pytest.fixture
def keys(tmp_path: Path) -> dict[str, bytes]:
    return {name: secrets.token_hex(32).encode() for name in TABLE}


@pytest.fixture
def table_god(start_god: Callable[..., God], tmp_path: Path, keys: dict[str, bytes]) -> God:
    table = tmp_path / "keys.json"
    table.write_text(json.dumps({"principals": [
        {"name": name, "key": keys[name].decode(), "roles": roles, "queues": queues}
        for name, (roles, queues) in TABLE.items()]}))
    table.chmod(0o600)
    return start_god("--keys", str(table))


def test_every_method_has_a_row_and_what_has_none_is_refused() -> None:
    assert set(BROKER_METHODS) <= set(RIGHTS), f"no row for {set(BROKER_METHODS) - set(RIGHTS)}"
    assert {f"{view}.{m}" for view in ("tasks", "results") for m in QUEUE_METHODS} <= set(RIGHTS)
    assert {f"server.{m}" for m in Server.public} - set(RIGHTS) == {"server.shutdown"}
    assert set(CALLS) == set(BROKER_METHODS)  # (this test's own list goes with the broker's)
    everyone = Principal("all", b"k", frozenset({"producer", "consumer", "operator", "viewer"}))
    with pytest.raises(Refused, match="all may not call server.shutdown: no client may"):
        check(everyone, "server.shutdown")
    with pytest.raises(Refused, match="all may not call a_new_method: no client may"):
        check(everyone, "a_new_method")


def test_each_principal_may_make_exactly_the_calls_its_roles_and_queues_allow(
    table_god: God, keys: dict[str, bytes]
) -> None:
    for name, (roles, queues) in TABLE.items():
        principal = Principal(name, keys[name], frozenset(roles), tuple(queues))
        with session(table_god, keys[name]) as conn:
            for method, template in CALLS.items():
                args = _for(template, f"{name}-client")  # its own client names (others' are the next test's)
                try:
                    check(principal, method, args, {})
                    allowed = True
                except Refused:
                    allowed = False
                conn.send((BROKER, method, args, {}))
                kind, reply = conn.recv()
                refused = kind == "#ERROR" and isinstance(reply, PermissionError)
                assert refused is not allowed, f"{name} calling {method}: {kind} {reply!r}"
                if refused:
                    assert str(reply).startswith(f"{name} may not call {method}"), reply
    # and god said so, in its log
    assert "may not call" in table_god.proc.text()


def test_a_key_outside_the_table_gets_no_session(table_god: God, env: dict[str, str]) -> None:
    with pytest.raises(Exception, match="digest"):
        with session(table_god, env["GOD_AUTHKEY"].encode()):
            pass


def test_a_tutorial_client_is_held_to_its_principals_rights_too(table_god: God, keys: dict[str, bytes]) -> None:
    from multiprocessing.managers import BaseManager, RemoteError

    class Tutorial(BaseManager):
        pass

    Tutorial.register("get_task_queue")
    host, port = table_god.address.rsplit(":", 1)
    # an operator's key makes no queue view (it is not a producer's or consumer's)
    m = Tutorial(address=(host, int(port)), authkey=keys["ops"])
    m.connect()
    with pytest.raises(RemoteError, match="ops may not call server.create: it needs the role consumer or producer"):
        m.get_task_queue()
    worker = Tutorial(address=(host, int(port)), authkey=keys["worker"])
    worker.connect()
    with pytest.raises(RemoteError, match="worker may not call server.create on queue 'default'"):
        worker.get_task_queue()
    # and one whose roles and queues allow it puts and takes as the tutorial does
    tutor = Tutorial(address=(host, int(port)), authkey=keys["tutor"])
    tutor.connect()
    q = tutor.get_task_queue()
    q.put(7)
    assert q.get(timeout=5) == 7


def test_a_principal_speaks_for_its_own_client_names_only(start_god: Callable[..., God], tmp_path: Path) -> None:
    keys = {name: secrets.token_hex(32).encode() for name in ("a", "b", "c1", "c2", "ops")}
    roles = {"a": "producer", "b": "producer", "c1": "consumer", "c2": "consumer", "ops": "operator"}
    table = tmp_path / "keys.json"
    table.write_text(json.dumps({"principals": [
        {"name": n, "key": keys[n].decode(), "roles": [roles[n]]} for n in keys]}))
    table.chmod(0o600)
    god = start_god("--keys", str(table))

    with session(god, keys["a"]) as a, session(god, keys["b"]) as b, session(god, keys["c1"]) as c1, \
            session(god, keys["c2"]) as c2, session(god, keys["ops"]) as ops:
        # Given a producer and a consumer that use their names
        assert call(a, "hello", "prod-a", "producer", {})[0] == "#RETURN"
        assert call(a, "put_many", "prod-a", (1, 1, items.pack([1]), "q", None, 0, None, None, None)) == ("#RETURN", 1)
        assert call(c1, "hello", "cons-1", "consumer", {})[0] == "#RETURN"
        # Then another producer can neither read their results, nor look at or cancel their tasks
        for method, args in (("results_for", ("prod-a", "run", 0, 1)), ("task", ("prod-a/1",)),
                             ("cancel", (["prod-a/1"],)), ("cancel", (None, None, "prod-a")),
                             ("hello", ("prod-a", "producer", {}))):
            kind, reply = call(b, method, *args)
            assert kind == "#ERROR" and str(reply) == f"b may not call {method} for 'prod-a': that name is a's", reply
        # and another consumer can neither ack, beat nor say goodbye for the first
        for method, args in (("ack_many", ("cons-1", [])), ("heartbeat", ("cons-1",)), ("bye", ("cons-1",)),
                             ("lease", ("cons-1", ("q",), 1)), ("output", ("cons-1", []))):
            kind, reply = call(c2, method, *args)
            assert kind == "#ERROR" and "that name is c1's" in str(reply), (method, reply)
        # and nobody says hello as a role it does not have, while status clients share names
        kind, reply = call(b, "hello", "prod-b", "consumer", {})
        assert kind == "#ERROR" and str(reply) == "b may not call hello as a consumer: it has producer", reply
        assert call(a, "hello", "task@host", "status", {})[0] == call(b, "hello", "task@host", "status", {})[0] == \
            "#RETURN"
        # while the owner still can, and an operator may name anyone's
        assert call(a, "task", "prod-a/1")[0] == "#RETURN"
        assert call(ops, "task", "prod-a/1")[0] == "#RETURN"
        assert call(ops, "cancel", ["prod-a/1"]) == ("#RETURN", {"waiting": 1, "scheduled": 0, "running": 0})


def test_real_clients_with_keys_of_their_own_roles_do_their_work(
    table_god: God, keys: dict[str, bytes], spawn: Callable[..., Proc], env: dict[str, str]
) -> None:
    # Given god with a table, a consumer with a consumer's key and a producer with a producer's
    def as_(name: str) -> dict[str, str]:
        return {**env, "GOD_AUTHKEY": keys[name].decode(), "GOD_ADDRESS": table_god.address}

    spawn("consumer", "--processes", "2", "--queues", Q, environment=as_("worker"))
    producer = spawn("producer", "--rounds", "2", "--queue", Q, "--wait", environment=as_("ingest"))
    # Then the work is done, and the producer gets its results
    assert producer.wait(60) == 0, producer.text()
    assert sum(" = " in line or "ok" in line for line in producer.out) >= 1, producer.text()
    # And status is for operators and viewers: a producer's key is told so in one line
    status = spawn("god", "status", environment=as_("watch"))
    assert status.wait(30) == 0, status.text()
    refused = spawn("god", "status", environment=as_("ingest"))
    assert refused.wait(30) == exitcodes.AUTH
    (line,) = refused.err
    assert line.endswith("god refused: ingest may not call stats: it needs the role operator or viewer, and ingest "
                         "has producer"), line


def test_god_keys_keeps_the_table_and_its_keys_let_their_hosts_in(
    start_god: Callable[..., God], spawn: Callable[..., Proc], env: dict[str, str], tmp_path: Path
) -> None:
    table, ingest, worker = tmp_path / "keys.json", tmp_path / "ingest.key", tmp_path / "worker.key"
    # Given principals added by the command, each with a key file of its own
    for name, role, key, more in (("ingest", "producer", ingest, ["--by-value"]), ("worker", "consumer", worker, [])):
        added = spawn("god", "keys", "add", name, "--role", role, "--queues", "pag*", "--keys", str(table),
                      "--key-file", str(key), *more)
        assert added.wait(30) == 0, added.text()
        assert key.stat().st_mode & 0o777 == 0o600 and table.stat().st_mode & 0o777 == 0o600
    listed = spawn("god", "keys", "list", "--keys", str(table))
    assert listed.wait(30) == 0 and listed.out == ["ingest\tproducer\tpag*\tby-value", "worker\tconsumer\tpag*"]
    assert all(k.read_text().strip() not in listed.text() for k in (ingest, worker))  # never shown
    # When god reads the table, its hosts get in with their key files
    god = start_god("--keys", str(table))
    keyless = {k: v for k, v in env.items() if k != "GOD_AUTHKEY"}
    spawn("consumer", "--processes", "1", "--queues", Q,
          environment={**keyless, "GOD_AUTHKEY_FILE": str(worker), "GOD_ADDRESS": god.address})
    producer = spawn("producer", "--rounds", "1", "--queue", Q, "--wait",
                     environment={**keyless, "GOD_AUTHKEY_FILE": str(ingest), "GOD_ADDRESS": god.address})
    assert producer.wait(60) == 0, producer.text()
    # And a principal removed is gone from the table
    removed = spawn("god", "keys", "remove", "worker", "--keys", str(table))
    assert removed.wait(30) == 0
    assert [p["name"] for p in json.loads(table.read_text())["principals"]] == ["ingest"]


def test_a_principal_removed_is_cut_off_at_once_and_nothing_it_put_is_lost(
    start_god: Callable[..., God], spawn: Callable[..., Proc], env: dict[str, str], tmp_path: Path
) -> None:
    keys = {name: secrets.token_hex(32).encode() for name in ("ingest", "ops")}
    roles = {"ingest": "producer", "ops": "operator"}
    table = tmp_path / "keys.json"

    def write(names: tuple[str, ...]) -> None:
        table.write_text(json.dumps({"principals": [
            {"name": n, "key": keys[n].decode(), "roles": [roles[n]]} for n in names]}))
        table.chmod(0o600)

    write(("ingest", "ops"))
    god = start_god("--keys", str(table))
    ops_env = {**env, "GOD_AUTHKEY": keys["ops"].decode(), "GOD_ADDRESS": god.address}
    with session(god, keys["ingest"]) as conn:
        conn.send((BROKER, "put_many", ("prod-a", (1, 1, items.pack([1]), Q, None, 0, None, None, None)), {}))
        assert conn.recv() == ("#RETURN", 1)
        # When it is removed from the table and god reads it again
        write(("ops",))
        reload = spawn("god", "keys", "reload", environment=ops_env)
        assert reload.wait(30) == 0, reload.text()
        assert "read its table again: 1 principals; removed or changed: ingest (1 connection closed)" in reload.text()
        # Then its live connection is closed
        with pytest.raises((EOFError, OSError)):
            conn.send((BROKER, "ping", (), {}))
            conn.recv()
    # and its key opens god no more, while what it put waits to be served
    with pytest.raises(Exception, match="digest"):
        with session(god, keys["ingest"]):
            pass
    with session(god, keys["ops"]) as conn:
        conn.send((BROKER, "stats", (), {}))
        kind, stats = conn.recv()
        assert kind == "#RETURN" and stats["waiting"] == 1, stats
    # And SIGHUP reads it too: put back, its key opens god again
    write(("ingest", "ops"))
    god.proc.signal(signal.SIGHUP)
    wait_until(lambda: "read again: 2 principals" in god.proc.text(), 10, "god to read the table on SIGHUP")
    with session(god, keys["ingest"]) as conn:
        conn.send((BROKER, "ping", (), {}))
        assert conn.recv() == ("#RETURN", None)
