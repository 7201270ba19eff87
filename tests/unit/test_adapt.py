"""The scaler's decisions (consumer/adapt.py), from god's figures and its jobs: pure functions."""

from __future__ import annotations

from typing import Any

import pytest

from consumer.adapt import NAME, PENDING_MAX, Plan, decide, parse
from shared.errors import ConfigError


def _stats(waiting: int, wanted: int, task_s: float | None, serving: int = 0) -> dict[str, Any]:
    consumers = [{"alive": True, "queues": ["default"], "processes": 1, "concurrency": 1}] * serving
    return {"queues": {"default": {"waiting": waiting, "wanted_workers": wanted, "task_s": task_s}},
            "consumers": consumers}


def test_it_submits_what_the_backlog_wants_up_to_max_and_pending_max() -> None:
    plan = parse(["0:3", "--time=1:00:00", "--", "--processes", "2"])
    assert (plan.per_job, plan.sbatch, plan.consumer[-2:]) == (2, ["--time=1:00:00"], ["--idle-exit", "120"])
    assert decide(plan, _stats(500, 5, 10.0), {}) == (3, False, "500 tasks wait on default (10 s a task): they "
                                                     "want 5 workers; 0 serve them, 0 jobs pending; jobs 3 of at most 3")
    full = {f"{NAME}:{i}": "running" for i in range(3)}
    k, _, why = decide(plan, _stats(500, 9, 10.0), full) or (None, None, "")
    assert k == 0 and why.endswith("at --adapt's 3 jobs")
    many = Plan(0, 100, [], [], ("default",), 1)
    assert decide(many, _stats(5000, 50, 10.0), {})[0] == PENDING_MAX  # type: ignore[index]


def test_it_waits_for_a_measure_and_counts_what_serves_and_what_is_coming() -> None:
    plan = parse(["0:5", "--", "--processes", "1"])
    assert decide(plan, _stats(1000, 34, None, serving=1), {}) is None  # a consumer runs the first: wait for their time
    assert decide(plan, _stats(1000, 1, 0.001, serving=1), {}) is None  # 1 s of work: the one there is enough
    assert decide(plan, _stats(100, 3, 1.0, serving=1), {f"{NAME}:7": "pending"}) == (
        1, False, "100 tasks wait on default (1 s a task): they want 3 workers; 1 serve them, 1 job pending; "
        "jobs 2 of at most 5")
    assert decide(plan, _stats(0, 0, 1.0), {}) is None


def test_min_jobs_are_kept_up_without_idle_exit() -> None:
    plan = parse(["2:4", "--", "--processes", "1"])
    assert decide(plan, _stats(0, 0, None), {f"{NAME}-min:1": "running"})[:2] == (1, True)  # type: ignore[index]


@pytest.mark.parametrize("argv, says", [
    (["3"], "MIN:MAX"), (["4:2"], "MIN:MAX"), (["0:0"], "MIN:MAX"), (["0:2", "--job-name=x"], "--job-name"),
    (["0:2", "--", "--burst"], "--processes N"),
])
def test_bad_arguments_are_refused_in_one_line(argv: list[str], says: str) -> None:
    with pytest.raises(ConfigError, match=says):
        parse(argv)
