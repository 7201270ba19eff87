"""Leases (god/rules/leases.py): order, priorities, queues, slices, retried leases, heartbeats, stuck tasks.

On the path production uses (API, waits, broker), with a fake clock: no sockets, no sleeps."""

from __future__ import annotations

import pickle

from shared.calls import BY_VALUE
from shared.log import logger
from god.rules.leases import SCAN_PAST
from shared.records import G_ATTEMPT, G_HI, G_LO, G_PRODUCER, G_QUEUE, G_TASK
from tests.support.core import Core, lines, payloads_of, seqs


def test_tasks_are_leased_in_order_and_acked_once(core: Core) -> None:
    assert core.put("p", [10, 11, 12]).result() == 3
    got = core.lease("c", 10)
    assert [(g[G_PRODUCER], g[G_LO], g[G_HI], g[G_ATTEMPT]) for g in got] == [("p", 1, 4, 1)]
    assert payloads_of(got[0]) == [10, 11, 12]
    assert core.ack("c", got) == 3
    s = core.broker.figures.stats()
    assert (s["done"], s["waiting"], s["running"]) == (3, 0, 0)
    assert [(r["id"], r["payload"], r["value"], r["queue"]) for r in lines(core)] == [
        ("p/1", 10, 10, "default"), ("p/2", 11, 11, "default"), ("p/3", 12, 12, "default")]


def test_a_batch_is_leased_in_slices_and_acked_in_parts(core: Core) -> None:
    core.put("p", list(range(10)))
    a, b = core.lease("a", 4), core.lease("b", 100)
    assert (seqs(a), seqs(b)) == (list(range(1, 5)), list(range(5, 11)))
    assert payloads_of(a[0]) == [0, 1, 2, 3] and payloads_of(b[0]) == list(range(4, 10))
    assert core.ack("b", b, only=(7, 9)) == 2  # a worker's flush: part of a grant
    s = core.broker.figures.stats()
    assert (s["done"], s["running"]) == (2, 8)
    assert core.ack("b", b) == 4  # the rest of it; 7 and 8 again are duplicates
    assert core.ack("a", a, fail={2}) == 4
    s = core.broker.figures.stats()
    assert (s["done"], s["failed"], s["duplicates"], s["running"], s["waiting"]) == (9, 1, 2, 0, 0)
    assert sorted(str(r["id"]) for r in lines(core)) == sorted(f"p/{i}" for i in range(1, 11))


def test_a_waiting_lease_is_answered_by_a_put_or_empty_at_its_deadline(core: Core) -> None:
    lease = core.call("lease", "c", ("default",), 10, 1.0, 1)
    assert not lease.done
    core.put("p", [7, 8])  # the put wakes it
    core.step()
    assert seqs(lease.result()) == [1, 2]
    empty = core.call("lease", "c", ("default",), 10, 1.0, 2)
    core.step()
    assert not empty.done
    core.clock.t += 1.5
    core.step()
    assert empty.result() == []
    # a retry of the same lease (its reply lost) gets the same answer at once
    assert core.lease("c", 10, timeout=1.0, seq=2) == []


def test_a_lone_task_goes_to_the_worker_that_waited_least(core: Core) -> None:
    # (its process and caches warm: two workers taking a lone task in turn made it 10% slower)
    a = core.call("lease", "a", ("default",), 1, 5.0, 1)
    b = core.call("lease", "b", ("default",), 1, 5.0, 1)
    core.step()
    assert not a.done and not b.done
    core.put("p", [7])
    core.step()
    assert b.done and seqs(b.result()) == [1] and not a.done
    b = core.call("lease", "b", ("default",), 1, 5.0, 2)  # b ran it and waits again: the newest
    core.step()
    core.put("p", [8])
    core.step()
    assert b.done and seqs(b.result()) == [2] and not a.done
    core.put("p", [9, 10])  # more than one lease asks for: the other worker takes the rest
    core.step()
    assert a.done and seqs(a.result()) == [3]


def test_a_retried_lease_returns_the_same_tasks(core: Core) -> None:
    core.put("p", [1, 2, 3, 4, 5])
    first = core.lease("c", 2, seq=7)
    assert core.lease("c", 2, seq=7) == first  # the reply was lost; the retry sees it again
    assert seqs(core.lease("c", 2, seq=8)) == [3, 4]


def test_a_workers_leases_live_while_its_consumer_beats_and_count_as_its_consumers(core: Core) -> None:
    # Given a consumer with two worker processes that hold tasks, and a task that waits
    core.put("p", [1, 2, 3, 4])
    core.hello("c", queues=("default", "other"))
    core.hello("c/0", parent="c")
    core.hello("c/1", parent="c")
    held = core.lease("c/0", 1)
    core.lease("c/1", 2)
    # When only the consumer is heard from for longer than a lease
    for _ in range(4):
        core.clock.t += 2
        assert core.call("heartbeat", "c").result()[0] is True
        assert core.broker.reap() == []
    # Then its workers keep their tasks, and status shows one consumer holding three
    s = core.broker.figures.stats()
    assert [(c["name"], c["running"], c["queues"]) for c in s["consumers"]] == [("c", 3, ["default", "other"])]
    assert (s["consumers_alive"], s["queues"]["default"]["consumers"]) == (1, 1)
    # And its workers' results count as its own
    core.ack("c/0", held)
    assert [(c["name"], c["done"], c["running"]) for c in core.broker.figures.stats()["consumers"]] == [("c", 1, 2)]
    # When the consumer goes silent too, its workers' tasks are served again
    core.clock.t += 6
    assert sorted(core.broker.reap()) == [("c", 0), ("c/0", 0), ("c/1", 2)]
    assert core.broker.figures.stats()["waiting"] == 3


def test_priorities_are_exact_and_first_in_first_out_within_a_level(core: Core) -> None:
    core.put("p", ["low 1"], priority=0)
    core.put("p", ["high 1"], priority=9)
    core.put("p", ["mid"], priority=5)
    core.put("p", ["high 2"], priority=9)
    core.put("p", ["low 2"], priority=0)
    order = [payloads_of(g)[0] for g in (core.lease("c", 1)[0] for _ in range(5))]
    assert order == ["high 1", "high 2", "mid", "low 1", "low 2"]


def test_queues_are_served_in_the_consumers_order_and_keep_task_and_queue(core: Core) -> None:
    core.put("p", ["page"], queue="pages", task="crawl:page")
    core.put("p", ["img"], queue="images", task="crawl:image")
    core.put("p", ["other"], queue="other")
    got = core.lease("c", 1, queues=("images", "pages"))
    assert [(g[G_QUEUE], g[G_TASK], payloads_of(g)) for g in got] == [("images", "crawl:image", ["img"])]
    got = core.lease("c", 10, queues=("images", "pages"))
    assert [(g[G_QUEUE], payloads_of(g)) for g in got] == [("pages", ["page"])]
    core.ack("c", got)
    s = core.broker.figures.stats()
    assert s["queues"]["other"]["waiting"] == 1 and s["queues"]["pages"]["done"] == 1
    assert s["queues"]["images"]["running"] == 1 and s["queues"]["images"]["consumers"] == 1
    assert [(r["queue"], r["task"]) for r in lines(core)] == [("pages", "crawl:page")]


def test_a_task_held_longer_than_warn_after_is_reported_once_and_shown() -> None:
    core = Core(lease_s=5.0, warn_after_s=10.0)
    said: list[str] = []
    sink = logger.add(lambda m: said.append(str(m)), level="WARNING", format="{message}")
    try:
        core.hello("c")
        core.put("p", [1, 2])
        core.lease("c", 1)
        for _ in range(4):  # 12 s, beating all along
            core.clock.t += 3
            core.call("heartbeat", "c").result()
            core.broker.reap()
        (c,) = core.broker.figures.stats()["consumers"]
        assert c["oldest_held_s"] == 12.0
        stuck = [m for m in said if "held by consumer c" in m]
        assert len(stuck) == 1 and "task p/1 has been held by consumer c for 12s (over --warn-after 10)" in stuck[0]
    finally:
        logger.remove(sink)
        core.close()


def test_a_function_by_value_goes_to_a_consumer_of_its_python_while_one_serves_the_queue(core: Core) -> None:
    # Given consumers on Python 3.11 and 3.12 serving one queue, a worker each
    for name, python in (("a", "3.11.7"), ("b", "3.12.1")):
        core.call("hello", name, "consumer", {"host": name, "queues": ("default",), "python": python}).result()
        core.hello(f"{name}/0", parent=name)
    by_value: tuple[bytes, tuple[int], dict[str, int]] = (pickle.dumps((BY_VALUE, "3.12", b"the function")), (1,), {})
    by_name: tuple[str, tuple[int], dict[str, int]] = ("m:f", (2,), {})
    # When a program on 3.12 puts a call of a function by value, and one of a function by name
    core.put("p", [by_value], task="m:f()")
    core.put("p", [by_name], task="m:f()")
    # Then 3.11's worker gets only the call by name, and 3.12's the one by value
    assert [payloads_of(g) for g in core.lease("a/0", 10)] == [[by_name]]
    got = core.lease("b/0", 10)
    assert [payloads_of(g) for g in got] == [[by_value]]
    assert core.ack("b/0", got, "done") == 1
    # And with no consumer of 3.12 left, the next such call goes to whoever asks (and fails
    # there, naming both Pythons) rather than wait for ever
    core.call("bye", "b").result()
    core.put("p", [by_value], task="m:f()")
    assert [payloads_of(g) for g in core.lease("a/0", 10)] == [[by_value]]


def test_a_lease_looks_past_at_most_scan_past_slices_it_may_not_take(core: Core) -> None:
    for name, python in (("a", "3.11.7"), ("b", "3.12.1")):
        core.call("hello", name, "consumer", {"host": name, "queues": ("default",), "python": python}).result()
        core.hello(f"{name}/0", parent=name)
    ref = pickle.dumps((BY_VALUE, "3.12", b"the function"))
    for i in range(SCAN_PAST + 10):  # calls for 3.12, each a batch of its own, then one by name
        core.put("p", [(ref, (i,), {})], task="m:f()")
    core.put("p", [("m:f", (0,), {})], task="m:f()")
    # 3.11's worker does not look as far as the call by name behind them...
    assert core.lease("a/0", 10) == []
    # ...until 3.12's has taken enough of those ahead of it
    assert len(core.lease("b/0", 20)) == 20
    assert [payloads_of(g) for g in core.lease("a/0", 10)] == [[("m:f", (0,), {})]]
