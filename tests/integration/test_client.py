"""The reconnecting client against a real god: a call cut off between send and reply."""

from __future__ import annotations

import pytest

import shared.client
from shared.client import GodClient
from shared.config import Settings
from tests.conftest import God

pytestmark = pytest.mark.timeout(60)


def test_a_reply_that_comes_too_late_is_never_read_as_the_next_calls(
    god: God, env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a client that waits 0.3 s for a reply, and a lease that god holds for 1 s (empty queue)
    monkeypatch.setattr(shared.client, "REPLY_TIMEOUT_S", 0.3)
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
    assert isinstance(after, dict) and {"pending", "in_flight", "done"} <= after.keys()
    assert after["pending"] == before["pending"] == 0
