"""God's Prometheus endpoint, read with a real HTTP request."""

from __future__ import annotations

import re
import urllib.error
import urllib.request
from collections.abc import Callable

import pytest

from tests.support.gods import God, addr_env
from tests.support.helpers import Proc, wait_for_results
from tests.support.web import scrape

pytestmark = pytest.mark.timeout(60)


def test_metrics_count_tasks_by_state(start_god: Callable[..., God], spawn: Callable[..., Proc]) -> None:
    g = start_god("--metrics-port", "0")
    url = g.proc.wait_for(r"metrics on (http://\S+/metrics)", stream="err").group(1)
    env = addr_env(g)
    assert spawn("producer", "--rounds", "1", "--per-round", "6", env_extra=env).wait() == 0
    before = scrape(url)
    assert before['god_tasks{state="waiting"}'] == 6 and before["god_tasks_accepted_total"] == 6
    assert before["god_oldest_waiting_task_age_seconds"] >= 0 and before["god_consumers_alive"] == 0
    spawn("consumer", "--task", "tests.support.tasks:fail_on_13", "--processes", "1", env_extra=env)
    wait_for_results(g.results, 6)
    after = scrape(url)
    assert after['god_tasks{state="done"}'] + after['god_tasks{state="failed"}'] == 6
    assert after['god_tasks{state="waiting"}'] == 0 and after["god_queue_depth"] == 0
    assert {"god_duplicates_total", "god_redeliveries_total", "god_dead_letters_total",
            "god_results_per_second"} <= after.keys()
    assert after["god_connections"] >= 2  # the consumer's lease and ack connections (and its heartbeat, once it beats)
    assert after["god_connections_refused_total"] == 0
    assert any(re.match(r'god_consumer_done_total\{consumer="[^"]+",host="[^"]+"\}', k) for k in after)
    with pytest.raises(urllib.error.HTTPError, match="404"):
        urllib.request.urlopen(url.replace("/metrics", "/other"), timeout=5)
