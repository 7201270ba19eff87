"""The live view, rendered to a string."""

from __future__ import annotations

from god.operator.live import render_text
from shared.stats import Stats
from tests.support.core import Core


def stats_of_a_small_run() -> Stats:
    core = Core(lease_s=5)
    core.call("hello", "prod-1", "producer", {"host": "data1"})
    core.call("hello", "cons-1", "consumer", {"host": "compute1", "processes": 4})
    core.call("hello", "cons-2", "consumer", {"host": "compute2", "processes": 2})
    core.put("prod-1", list(range(10)))
    core.put("prod-1", [99], after=("prod-1/10",))  # blocked until prod-1/10 has its result
    core.call("set_limit", "default", 500)
    core.clock.t += 2
    core.ack("cons-1", core.lease("cons-1", 3))
    core.ack("cons-1", core.lease("cons-1", 1), fail={4})
    core.lease("cons-2", 2, queues=("default", "images"))
    core.clock.t += 7
    core.call("heartbeat", "cons-1")
    core.broker.reap()  # cons-2 is silent past its lease: lost
    core.close()
    return core.broker.figures.stats()


def test_the_live_view_shows_totals_and_a_row_per_queue_consumer_and_producer() -> None:
    text = render_text(stats_of_a_small_run(), 12.5, "coord:5678")
    assert "god coord:5678" in text
    assert "done 3" in text and "failed 1" in text and "rate 12/s" in text
    assert "waiting 6 / 1,000,000" in text and "oldest waiting 9.0s" in text and "redelivered 2" in text
    rows = {line.split("│")[1].strip(): line for line in text.splitlines() if line.count("│") > 3}
    assert "compute1" in rows["cons-1"] and "alive" in rows["cons-1"]
    assert [cell.strip() for cell in rows["cons-1"].split("│")[3:7]] == ["default", "4", "3", "1"]  # queues,
    # processes, done, failed
    assert rows["default"].split("│")[2].strip() == "6"  # the queue's row: 6 waiting
    assert rows["default"].split("│")[5].strip() == "1" and "blocked 1" in text  # 1 blocked
    assert rows["default"].split("│")[11].strip() == "500/s"  # and its rate limit
    assert "compute2" in rows["cons-2"] and "lost" in rows["cons-2"]
    assert "data1" in rows["prod-1"] and "11" in rows["prod-1"]
