"""Figures (god/rules/figures.py): the oldest waiting task's age, where a task is.

On the path production uses (API, waits, broker), with a fake clock: no sockets, no sleeps."""

from __future__ import annotations

import pytest

from shared.states import OLD_KEYS, TaskState
from tests.support.core import Core


def test_the_oldest_waiting_tasks_age(core: Core) -> None:
    b = core.broker
    assert b.figures.stats()["oldest_waiting_s"] == 0.0
    core.put("p", [1, 2])
    core.clock.t += 5
    core.put("q", [1, 2])
    core.clock.t += 3
    assert b.figures.stats()["oldest_waiting_s"] == 8.0
    core.lease("c", 2)  # the two oldest
    assert b.figures.stats()["oldest_waiting_s"] == 3.0
    core.lost("c", None)  # back, unstarted: the oldest again
    assert b.figures.stats()["oldest_waiting_s"] == 8.0
    core.lease("c", 10)
    assert b.figures.stats()["oldest_waiting_s"] == 0.0


def test_tasks_are_counted_under_their_states_names_and_the_old_names_still_come(core: Core) -> None:
    # Given three tasks, one of them running
    core.hello("c")
    core.put("p", [1, 2, 3])
    core.lease("c", 1)
    s = core.broker.figures.stats()
    q, c = s["queues"]["default"], s["consumers"][0]
    # Then god, each queue and each consumer count them by the states' one word each
    states = {st.value for st in TaskState}
    assert states <= s.keys() and states <= q.keys()
    assert (s["waiting"], s["running"], q["waiting"], q["running"], c["running"]) == (2, 1, 2, 1, 1)
    # And the old keys say the same, for one release
    for old, new in OLD_KEYS.items():
        assert s[old] == s[new.value] and q[old] == q[new.value]  # type: ignore[literal-required]
    assert c["in_flight"] == c["running"]


def test_a_task_is_found_waiting_running_scheduled_done_and_dead(core: Core) -> None:
    def state(tid: str) -> dict[str, object]:
        out: dict[str, object] = core.call("task", tid).result()
        assert out["id"] == tid and out["result"] is None  # no results file here
        return out

    core.put("p", [1, 2, 3], queue="q", task="m:f", priority=2)
    core.put("p", [4], retry=(1, 60.0, 60.0, None))
    assert {k: state("p/2")[k] for k in ("state", "queue", "task", "priority", "attempts")} == {
        "state": "waiting", "queue": "q", "task": "m:f", "priority": 2, "attempts": 0}
    (g,) = core.lease("c", 1, queues=("q",))
    assert (state("p/1")["state"], state("p/1")["consumer"], state("p/1")["attempts"]) == ("running", "c", 1)
    assert state("p/2")["state"] == "waiting"
    core.ack("c", core.lease("c", 1), fail={4})  # p/4 fails and waits a minute for its retry
    assert state("p/4")["state"] == "scheduled" and 0 < float(state("p/4")["due_in_s"]) <= 72  # type: ignore[arg-type]
    core.ack("c", [g])
    assert state("p/1")["state"] == "done"
    for attempt in range(3):  # p/2 and p/3 kill their consumers
        core.lease(f"doomed{attempt}", 2, queues=("q",))
        core.clock.t += 6
        core.broker.reap()
    assert state("p/3")["state"] == "dead" and "lost" in str(state("p/3")["reason"])
    with pytest.raises(ValueError, match="god knows no task p/9"):
        core.call("task", "p/9").result()
    with pytest.raises(ValueError, match="is not PRODUCER/SEQ"):
        core.call("task", "nonsense").result()
