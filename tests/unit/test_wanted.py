"""The workers a backlog wants (god/rules/wanted.py), as status, /metrics and autoscalers see it."""

from __future__ import annotations

from god.operator.lines import status_text
from god.operator.metrics import render
from god.rules.wanted import consumers_wanted, measured, workers_wanted
from tests.support.core import Core


def test_the_rule_weighs_tasks_by_their_time() -> None:
    assert workers_wanted(10_000, 0, 0.001) == 1  # 10 s of work: no second worker
    assert workers_wanted(200, 0, 10.0) == 67  # 2,000 s: 67 workers of 30 s each
    assert workers_wanted(3, 0, 100.0) == 3  # never more than a worker a task
    assert workers_wanted(0, 0, 5.0) == 0 and workers_wanted(0, 1, 0.001) == 1
    assert workers_wanted(60, 0, None) == 2  # unmeasured: a second a task
    assert consumers_wanted(67, 8) == 9 and consumers_wanted(0, 8) == 0
    assert measured(None, 2.0, 4, 1) == 0.5 and measured(1.0, 2.0, 4, 2) == 0.8 * 1.0 + 0.2 * 1.0


def test_god_measures_a_queue_s_task_time_and_says_what_its_backlog_wants() -> None:
    core = Core(capacity=1000, lease_s=60.0)
    try:
        core.call("hello", "c", "consumer", {"host": "h", "queues": ["default"], "processes": 2}).result()
        core.put("p", list(range(200))).result()
        g = core.lease("c", 4)
        core.clock.t += 40.0  # four tasks took 40 s: 10 s each
        core.ack("c", g)
        q = core.broker.figures.stats()["queues"]["default"]
        assert q["task_s"] == 10.0
        assert (q["wanted_workers"], q["wanted_consumers"]) == (66, 33)  # 196 tasks of 10 s; 2 workers a consumer
        assert "wants 66 workers (33 consumers)" in status_text("here", core.broker.figures.stats())
        assert 'god_queue_wanted_workers{queue="default"} 66' in render(core.broker.figures.stats(), 0.0)
    finally:
        core.close()
