"""The live view, rendered to a string."""

from __future__ import annotations

from typing import Any

from god.broker import Broker
from god.live import render_text
from shared.records import failure, success


class Clock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


def stats_of_a_small_run() -> dict[str, Any]:
    clock = Clock()
    b = Broker(lease_s=5, now=clock)
    b.hello("prod-1", "producer", {"host": "data1"})
    b.hello("cons-1", "consumer", {"host": "compute1", "processes": 4})
    b.hello("cons-2", "consumer", {"host": "compute2", "processes": 2})
    b.put_many("prod-1", [(f"prod-1/{i}", i) for i in range(10)])
    clock.t += 2
    b.ack_many("cons-1", [success(t[0], 1) for t in b.lease("cons-1", 3)])
    b.ack_many("cons-1", [failure(t[0], ValueError("x")) for t in b.lease("cons-1", 1)])
    b.lease("cons-2", 2)
    clock.t += 7
    b.heartbeat("cons-1")
    b.reap()  # cons-2 is silent past its lease: lost
    return b.stats()


def test_the_live_view_shows_totals_and_a_row_per_consumer_and_producer() -> None:
    text = render_text(stats_of_a_small_run(), 12.5, "coord:5678")
    assert "god coord:5678" in text
    assert "done 3" in text and "failed 1" in text and "rate 12/s" in text
    assert "waiting 6 / 1,000,000" in text and "oldest waiting 9.0s" in text and "redelivered 2" in text
    rows = {line.split("│")[1].strip(): line for line in text.splitlines() if line.count("│") > 3}
    assert "compute1" in rows["cons-1"] and "alive" in rows["cons-1"]
    assert [cell.strip() for cell in rows["cons-1"].split("│")[3:6]] == ["4", "3", "1"]  # processes, done, failed
    assert "compute2" in rows["cons-2"] and "lost" in rows["cons-2"]
    assert "data1" in rows["prod-1"] and "10" in rows["prod-1"]
