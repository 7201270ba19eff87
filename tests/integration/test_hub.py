"""God's hub: our clients' connections cost no thread each, and no peer can hold the others up."""

from __future__ import annotations

import pickle
import struct
import threading

import pytest

import shared.caller
import shared.transport
from shared.client import GodClient
from shared.records import G_HI, G_LO, G_PAYLOADS, G_PRODUCER
from shared.manager import BROKER
from tests.support.gods import God, settings_for
from tests.support.peers import call_with_deadline, raw_peer
from tests.support.helpers import wait_until
from tests.support.helpers import proc_status

pytestmark = pytest.mark.timeout(60)


@pytest.fixture(autouse=True)
def short_replies(monkeypatch: pytest.MonkeyPatch) -> None:
    """A god that stops answering shows as a failed call within seconds, not a hung test."""
    monkeypatch.setattr(shared.caller, "REPLY_TIMEOUT_S", 3.0)


def test_connections_do_not_cost_god_a_thread_each(god: God, env: dict[str, str]) -> None:
    # Given god's thread count at rest
    settings = settings_for(god, env)
    base = proc_status(god.proc.pid)["threads"]
    clients = [GodClient(settings, name=f"c{i}", role="status") for i in range(100)]
    try:
        # When 100 clients connect and each makes a call
        for c in clients:
            c.stats()
        # Then god counts 100 connections, and its threads go back to what they were
        assert call_with_deadline(settings, "stats")["connections"] >= 101  # type: ignore[index]
        wait_until(lambda: proc_status(god.proc.pid)["threads"] <= base + 1, 10, "handshake threads to end")
    finally:
        for c in clients:
            c.close()


def test_a_peer_stalled_in_the_middle_of_a_request_holds_up_no_one(god: God, env: dict[str, str]) -> None:
    settings = settings_for(god, env)
    body = pickle.dumps((BROKER, "ping", (), {}))
    with raw_peer(settings) as peer:
        # Given a peer that sent the header and half of a request, then stopped
        peer._send(struct.pack("!i", len(body)) + body[: len(body) // 2])  # type: ignore[attr-defined]
        # When another client calls, it is answered
        assert call_with_deadline(settings, "stats")["waiting"] == 0  # type: ignore[index]
        # Then the stalled peer, once it sends the rest, gets its own answer
        peer._send(body[len(body) // 2 :])  # type: ignore[attr-defined]
        assert peer.recv() == ("#RETURN", None)


def test_a_peer_that_does_not_read_its_reply_holds_up_no_one(god: God, env: dict[str, str]) -> None:
    settings = settings_for(god, env)
    producer = GodClient(settings, name="p", role="producer")
    try:
        # Given 24 MiB of tasks waiting
        payloads = [b"x" * 2**20] * 24
        assert producer.put_many((1, 24, pickle.dumps(payloads), "default", None, 0, None, None, None), 5) == 24
        with raw_peer(settings) as peer:
            # When a peer leases them all and never reads the reply (far more than socket buffers hold)
            peer.send((BROKER, "lease", ("raw", ("default",), 24, 0.0, 1), {}))
            # Then god still answers everyone else
            stats = call_with_deadline(settings, "stats")
            assert stats["running"] == 24 and stats["waiting"] == 0  # type: ignore[index]
            # and the slow peer gets the whole reply when it reads at last
            kind, grants = peer.recv()
            assert kind == "#RETURN" and [(g[G_PRODUCER], g[G_LO], g[G_HI]) for g in grants] == [("p", 1, 25)]
            assert pickle.loads(grants[0][G_PAYLOADS]) == payloads
    finally:
        producer.close()


def test_calls_sent_before_their_replies_are_read_are_answered_in_order(god: God, env: dict[str, str]) -> None:
    # Given a client that sends several calls before it reads a reply: first a lease that
    # waits (nothing is queued), then a put, then a stats call
    c = GodClient(settings_for(god, env), name="pipelined", role="producer")
    try:
        c.connect()
        c.send("lease", "pipelined-consumer", ("default",), 10, 0.5, 1)
        c.send_put((1, 2, pickle.dumps(["a", "b"]), "default", None, 0, None, None, None), 1.0, None)
        c.send("stats")
        # Then the replies come in the order of the calls: the waiting lease holds the calls
        # behind it (the put is not taken before the lease gives up, so it leases nothing)
        assert c.reply() == []
        assert c.reply() == 2
        assert c.reply()["accepted"] == 2
        # And a connection keeps working as before
        assert c.stats()["waiting"] == 2
    finally:
        c.close()


def test_a_call_in_the_same_read_as_a_waiting_lease_ends_its_wait(god: God, env: dict[str, str]) -> None:
    # A worker with places free sends a lease that waits, and its results right behind it: when
    # both come in one read, the results must end the lease's wait (it yields), not wait 60 s
    # behind it (this test's timeout)
    c = GodClient(settings_for(god, env), name="w", role="consumer", info={"host": "h"})
    try:
        c.connect()
        c.send("lease", "w", ("default",), 1, 60.0, 1, hold=True)  # one write with the next
        c.send("ack_many", "w", [])
        assert c.reply() == []  # ended at once, empty
        assert c.reply() == 0
    finally:
        c.close()


def test_a_client_that_sends_without_reading_costs_god_a_bounded_amount(god: God, env: dict[str, str]) -> None:
    # Given a client that sends status calls whose replies come to 100 MiB, and reads none of
    # them while it sends
    settings = settings_for(god, env)
    request = b"".join(shared.transport.frame((BROKER, "stats", (), {})))
    reply = len(b"".join(shared.transport.frame(("#RETURN", call_with_deadline(settings, "stats")))))
    n = 100 * 2**20 // reply
    base = proc_status(god.proc.pid)["rss_kb"]
    peak = [base]
    with raw_peer(settings) as peer:
        sender = threading.Thread(target=lambda: peer._send(request * n), daemon=True)  # type: ignore[attr-defined]
        sender.start()
        # When it is slow to read, god's memory stays bounded while it waits (god reads no more of it)
        wait_until(lambda: peak.append(proc_status(god.proc.pid)["rss_kb"]) or len(peak) > 20, 20, "samples")
        # Then, reading at last, it gets every reply, in order
        for i in range(n):
            kind, stats = peer.recv()
            assert kind == "#RETURN" and "waiting" in stats
            if i % 1000 == 0:
                peak.append(proc_status(god.proc.pid)["rss_kb"])
        sender.join(10)
    assert (max(peak) - base) * 1024 < 40 * 2**20, (base, max(peak))  # against 100 MiB of replies
