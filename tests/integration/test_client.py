"""The reconnecting client against a real god: a call cut off between send and reply."""

from __future__ import annotations

import pickle
from dataclasses import replace

import pytest

import shared.caller
from shared.client import GodClient
from shared.config import Settings
from tests.support.gods import God, settings_for
from tests.support.relay import Relay

pytestmark = pytest.mark.timeout(60)


def test_a_reply_that_comes_too_late_is_never_read_as_the_next_calls(
    god: God, env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a client that waits 0.3 s for a reply, and a lease that god holds for 1 s (empty queue)
    monkeypatch.setattr(shared.caller, "REPLY_TIMEOUT_S", 0.3)
    host, port = god.address.rsplit(":", 1)
    settings = Settings((host, int(port)), env["GOD_AUTHKEY"].encode(), "test", give_up_after=20)
    client = GodClient(settings, name="late-reader", role="consumer")
    try:
        # When the lease times out at the client, which tries again until one gets through in time
        before = client.stats()
        client.call("lease", "late-reader", ("default",), 5, 1.0, 1)
        # Then the next call gets its own reply, not a lease reply left over on the old connection
        after = client.stats()
    finally:
        client.close()
    assert isinstance(after, dict) and {"waiting", "running", "done"} <= after.keys()
    assert after["waiting"] == before["waiting"] == 0


def test_puts_in_flight_when_the_connection_drops_are_each_taken_once_in_order(
    god: God, env: dict[str, str]
) -> None:
    # Given a client that reaches god through a relay, with three puts sent and not confirmed
    host, port = god.address.rsplit(":", 1)
    relay = Relay((host, int(port)))
    settings = settings_for(god, env)
    relay_host, relay_port = relay.address.rsplit(":", 1)
    c = GodClient(replace(settings, address=(relay_host, int(relay_port))), name="pipe", role="producer")
    try:
        c.connect()

        def put(first: int) -> None:
            c.send_put((first, 2, pickle.dumps([first, first + 1]), "default", None, 0, None, None, None), 1.0,
                       first - 1 if c.sent else None)

        for first in (1, 3, 5):
            put(first)
        # When the connection drops, the first answer is read (its put made anew, on a new
        # connection), and two more are sent before the other answers are read
        relay.cut()
        assert c.reply() == 2
        for first in (7, 9):
            put(first)
        # Then each gets its answer in order, and god holds every task once
        assert [c.reply() for _ in range(4)] == [2] * 4
        stats = c.stats()
        assert (stats["accepted"], stats["waiting"]) == (10, 10)
    finally:
        c.close()
        relay.close()


def test_a_call_sent_on_a_connection_that_dropped_is_ready_to_be_made_anew(god: God, env: dict[str, str]) -> None:
    # Given a worker's two calls in flight through a relay: a lease that waits at god, and one behind it
    host, port = god.address.rsplit(":", 1)
    relay = Relay((host, int(port)))
    relay_host, relay_port = relay.address.rsplit(":", 1)
    c = GodClient(replace(settings_for(god, env), address=(relay_host, int(relay_port))), name="w", role="consumer")
    try:
        c.connect()
        c.send("lease", "w", ("default",), 5, 0.5, 1)
        c.send("ping")
        # When the connection drops and the first is made anew (on a new connection)
        relay.cut()
        assert c.ready(0.0) and c.reply() == []
        # Then the second is ready too (it went out on the old one: nothing will come for it on
        # the new one, and a worker that waited for that would wait for ever), and gets its answer
        assert c.ready(0.0)
        assert c.reply() is None and c.sent == 0
    finally:
        c.close()
        relay.close()
