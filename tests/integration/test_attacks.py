"""Issue 35's attack list (and issue 36's tasks' output), replayed over the wire with a
consumer's and a producer's own keys.

God has a table of principals: alice (a producer), honest (a consumer), and mallory, who holds
a consumer's key and a producer's key of her own. Before the table, one key was every role,
and each attack below worked: now each is refused, or dropped, and alice gets honest's result.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from shared import items
from shared.records import G_FIRST, G_HI, G_LO, G_PRODUCER, json_line
from tests.support.gods import God
from tests.support.principals import call, new_keys, session, write_table

pytestmark = pytest.mark.timeout(60)

ROLES = {"alice": ["producer"], "honest": ["consumer"], "mallory-c": ["consumer"], "mallory-p": ["producer"]}


def line(producer: str, seq: int, consumer: str, value: object) -> str:
    return json_line(f"{producer}/{seq}", seq, True, value, None, None, consumer, 1, 1.0, "q") + "\n"


def test_the_attacks_with_a_consumers_and_a_producers_own_keys_are_refused(
    start_god: Callable[..., God], tmp_path: Path
) -> None:
    keys = new_keys(*ROLES)
    god = start_god("--keys", str(write_table(tmp_path / "keys.json", keys, ROLES)))
    with session(god, keys["alice"]) as alice, session(god, keys["honest"]) as honest, \
            session(god, keys["mallory-c"]) as mc, session(god, keys["mallory-p"]) as mp:
        # Given alice's two tasks, the first leased to honest, the second to mallory's consumer
        kind, hello = call(alice, "hello", "alice", "producer", {"results": True, "output": True})
        assert kind == "#RETURN"
        assert call(alice, "put_many", "alice", (1, 2, items.pack([1, 2]), "q", None, 0, None, None, None)) == \
            ("#RETURN", 2)
        assert call(honest, "hello", "honest", "consumer", {"queues": ["q"]})[0] == "#RETURN"
        assert call(mc, "hello", "mal", "consumer", {"queues": ["q"]})[0] == "#RETURN"
        (g1,) = call(honest, "lease", "honest", ("q",), 1)[1]
        (g2,) = call(mc, "lease", "mal", ("q",), 1)[1]
        assert (g1[G_LO], g2[G_LO]) == (1, 2)

        def ack(g: tuple, lines: str, value: object = "forged") -> tuple:
            return (g[G_PRODUCER], g[G_FIRST], g[G_LO], g[G_HI], lines, (), items.pack([(True, value, None, None)]))

        refused = {}
        # When mallory's consumer writes output for the task leased to honest: dropped
        assert call(mc, "output", "mal", [("alice", 1, [("out", "forged\n")], None)]) == ("#RETURN", 0)
        # When mallory's consumer acks the task leased to honest: dropped, god records nothing
        assert call(mc, "ack_many", "mal", [ack(g1, line("alice", 1, "mal", "forged"))]) == ("#RETURN", 0)
        # or writes another task's line (alice's first, another producer's) in an ack of its own
        for forged in (line("alice", 1, "mal", "forged"), line("bob", 9, "mal", "forged"),
                       line("alice", 2, "honest", "forged")):
            kind, reply = call(mc, "ack_many", "mal", [ack(g2, forged)])
            assert kind == "#ERROR" and isinstance(reply, PermissionError), (forged, reply)
            refused[forged] = str(reply)
        # or speaks for honest, or makes a worker of honest's, or does an operator's or producer's work
        for method, args in (("ack_many", ("honest", [ack(g1, line("alice", 1, "honest", "forged"))])),
                             ("output", ("honest", [("alice", 1, [("out", "forged\n")], None)])),
                             ("value_put", ("honest", "0" * 64, 1, 0, b"x")), ("value_missing", ("honest", [])),
                             ("bye", ("honest",)), ("heartbeat", ("honest",)),
                             ("hello", ("mal/0", "consumer", {"parent": "honest"})),
                             ("results_for", ("alice", hello["run"], 0, 10)),
                             ("cancel", (["alice/1"],)), ("pause", ("q",)), ("purge", ("q",)),
                             ("schedule_add", ("evil", 60.0, None, "q", "os:system", "id")),
                             ("put_many", ("mal", (1, 1, items.pack(["id"]), "q", "os:system", 0, None, None, None)))):
            kind, reply = call(mc, method, *args)
            assert kind == "#ERROR" and isinstance(reply, PermissionError), (method, reply)
            refused[method + " (consumer's key)"] = str(reply)
        # And with mallory's producer key: alice's results, tasks and cancels are alice's alone
        assert call(mp, "hello", "malp", "producer", {"results": True})[0] == "#RETURN"
        for method, args in (("results_for", ("alice", hello["run"], 0, 10)), ("task", ("alice/1",)),
                             ("results_for", ("alice", hello["run"], 0, 10, 0.0, None, 0)),
                             ("cancel", (["alice/1"],)), ("cancel", (None, None, "alice")),
                             ("hello", ("alice", "producer", {})), ("ack_many", ("malp", [ack(g1, "", None)])),
                             ("lease", ("malp", ("q",), 1)), ("pause", ("q",)), ("purge", ("q",)),
                             ("schedule_add", ("evil", 60.0, None, "q", "os:system", "id")), ("drain", ("honest",)),
                             ("value_get", ("honest", "0" * 64, 0, 1)), ("value_put", ("alice", "0" * 64, 1, 0, b"x"))):
            kind, reply = call(mp, method, *args)
            assert kind == "#ERROR" and isinstance(reply, PermissionError), (method, reply)
            refused[method + " (producer's key)"] = str(reply)
        # and a large value: a put may not name one god does not hold, a chunk may not lie about its
        # value (its bytes must hash to its name), nor a read ask for more than a chunk
        digest = "ab" * 32
        kind, reply = call(mp, "put_many", "malp", (1, 1, items.pack([1]), "q", None, 0, None, None, None, (digest,)))
        assert kind == "#ERROR" and "values god does not hold" in str(reply), reply
        kind, reply = call(mp, "value_put", "malp", digest, 3, 0, b"abc")
        assert kind == "#ERROR" and "do not hash to its name" in str(reply), reply
        kind, reply = call(honest, "value_get", "honest", digest, 0, 1 << 30)
        assert kind == "#ERROR" and "up to 4,194,304 bytes" in str(reply), reply
        # Then honest's lines and result are the ones alice gets, and god counted what it dropped
        assert call(honest, "output", "honest", [("alice", 1, [("out", "real\n")], None)]) == ("#RETURN", 1)
        assert call(honest, "ack_many", "honest", [ack(g1, line("alice", 1, "honest", 1), 1)]) == ("#RETURN", 1)
        kind, (posted, gone, lines) = call(alice, "results_for", "alice", hello["run"], 0, 10, 10.0, None, 0)
        assert [item for _, item in lines] == [(1, "honest", [("out", "real\n")], None)], lines
        assert kind == "#RETURN" and [(lo, hi, items.unpack(values), consumer) for _, (lo, hi, values, consumer, _) in posted
                                      ] == [(1, 2, [(True, 1, None, None)], "honest")], posted
        assert "unleased" in god.proc.text() or "not leased to it" in god.proc.text()
    assert all("may not" in why for why in refused.values()), refused
