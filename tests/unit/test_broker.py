"""God's task rules on the path production uses (API, waits, broker), with a fake clock:
no sockets, no sleeps."""

from __future__ import annotations

import json
import pickle
import threading
import time
from collections.abc import Iterator

import pytest
from loguru import logger

from consumer.tasks import Retry
from god.controls import CANCELLED
from god.handout import TUTORIAL
from god.views import ResultQueueView, TaskQueueView, Tutorial
from shared.records import G_ALONE, G_ATTEMPT, G_HI, G_KEEP, G_LO, G_PRODUCER, G_QUEUE, G_TASK
from tests.core import Call, Core, payloads_of, seqs


@pytest.fixture
def core() -> Iterator[Core]:
    c = Core(capacity=100, lease_s=5.0, max_attempts=3)
    yield c
    c.close()


def lines(core: Core) -> list[dict[str, object]]:
    """The result lines the monitor would write now, read back."""
    out, _ = core.broker.take_results()
    return [json.loads(line) for text, _ in out for line in text.splitlines()]


def test_tasks_are_leased_in_order_and_acked_once(core: Core) -> None:
    assert core.put("p", [10, 11, 12]).result() == 3
    got = core.lease("c", 10)
    assert [(g[G_PRODUCER], g[G_LO], g[G_HI], g[G_ATTEMPT]) for g in got] == [("p", 1, 4, 1)]
    assert payloads_of(got[0]) == [10, 11, 12]
    assert core.ack("c", got) == 3
    s = core.broker.figures.stats()
    assert (s["done"], s["pending"], s["in_flight"]) == (3, 0, 0)
    assert [(r["id"], r["payload"], r["value"], r["queue"]) for r in lines(core)] == [
        ("p/1", 10, 10, "default"), ("p/2", 11, 11, "default"), ("p/3", 12, 12, "default")]


def test_a_batch_is_leased_in_slices_and_acked_in_parts(core: Core) -> None:
    core.put("p", list(range(10)))
    a, b = core.lease("a", 4), core.lease("b", 100)
    assert (seqs(a), seqs(b)) == (list(range(1, 5)), list(range(5, 11)))
    assert payloads_of(a[0]) == [0, 1, 2, 3] and payloads_of(b[0]) == list(range(4, 10))
    assert core.ack("b", b, only=(7, 9)) == 2  # a worker's flush: part of a grant
    s = core.broker.figures.stats()
    assert (s["done"], s["in_flight"]) == (2, 8)
    assert core.ack("b", b) == 4  # the rest of it; 7 and 8 again are duplicates
    assert core.ack("a", a, fail={2}) == 4
    s = core.broker.figures.stats()
    assert (s["done"], s["failed"], s["duplicates"], s["in_flight"], s["pending"]) == (9, 1, 2, 0, 0)
    assert sorted(str(r["id"]) for r in lines(core)) == sorted(f"p/{i}" for i in range(1, 11))


def test_a_resent_put_is_not_queued_twice(core: Core) -> None:
    core.put("p", [1, 2, 3], first=1)
    assert core.put("p", [1, 2, 3], first=1).result() == 3  # taken care of ...
    s = core.broker.figures.stats()
    assert s["pending"] == 3 and s["producers"][0]["duplicates"] == 3  # ... but only once


def test_first_result_wins_and_later_ones_are_counted_duplicates(core: Core) -> None:
    core.put("p", [1])
    got = core.lease("c", 1)
    assert core.ack("c", got, "first") == 1
    assert core.ack("c", got, "second") == 0
    assert [r["value"] for r in lines(core)] == ["first"]
    assert core.broker.figures.stats()["duplicates"] == 1


def test_a_silent_consumer_loses_its_leases_to_the_front_of_the_queue(core: Core) -> None:
    core.put("p", [0, 1, 2, 3])
    assert seqs(core.lease("dead", 2)) == [1, 2]
    core.clock.t += 5.1
    assert core.broker.reap() == [("dead", 2)]
    got = core.lease("alive", 10)
    assert seqs(got) == [1, 2, 3, 4]
    assert [g[G_ATTEMPT] for g in got] == [2, 1]  # attempts counted
    assert core.broker.figures.stats()["redelivered"] == 2


def test_heartbeats_keep_a_long_task_from_being_served_twice(core: Core) -> None:
    core.put("p", [1])
    core.lease("c", 1)
    for _ in range(10):
        core.clock.t += 4
        assert core.call("heartbeat", "c").result()[0] is True
        assert core.broker.reap() == []
    assert core.lease("other", 1) == []
    assert core.broker.figures.stats()["in_flight"] == 1


def test_a_lost_consumer_that_comes_back_is_told_and_its_late_result_still_counts(core: Core) -> None:
    core.put("p", [1])
    got = core.lease("c", 1)
    core.clock.t += 6
    core.broker.reap()
    assert core.call("heartbeat", "c").result()[0] is False  # it had been given up
    assert core.ack("c", got, "late") == 1  # the requeued copy is settled too
    assert core.lease("other", 1) == []
    assert core.broker.figures.stats()["pending"] == 0


def test_a_batch_sent_behind_another_is_taken_only_after_it(core: Core) -> None:
    def put(first: int, after: int | None) -> Call:
        return core.call("put_many", "p", (first, 2, pickle.dumps([first, first + 1]), "default", None, 0, None, None),
                         0.0, after)

    # Given batch 1-2 taken, and batch 3-4 not (god was full, or it was lost on the way)
    assert core.settle(put(1, None)) == 2
    # When batch 5-6, sent behind 3-4, comes: it is refused at once, not taken out of order
    assert put(5, 4).result() == 0
    assert core.broker.figures.stats()["accepted"] == 2
    # Then 3-4 sent again is taken, and 5-6 after it
    assert core.settle(put(3, 2)) == 2
    assert core.settle(put(5, 4)) == 2
    assert seqs(core.lease("c", 10)) == [1, 2, 3, 4, 5, 6]
    # And a batch sent again after it was taken is a duplicate, whatever it came behind
    assert core.settle(put(3, 0)) == 2
    assert core.broker.figures.stats()["accepted"] == 6


def test_a_put_waits_for_room_and_goes_in_when_a_lease_makes_some(core: Core) -> None:
    core.broker.state.capacity = 3
    core.put("p", [1, 2, 3])
    waiting = core.put("p", [4, 5], timeout=2.0)
    assert not waiting.done  # parked: no room
    core.step()
    assert not waiting.done
    core.lease("c", 1)  # room: the lease wakes the parked put
    core.step()
    assert waiting.result() == 2
    assert core.broker.figures.stats()["pending"] == 4


def test_a_put_that_finds_no_room_in_time_is_answered_0(core: Core) -> None:
    core.broker.state.capacity = 1
    core.put("p", [1])
    waiting = core.put("p", [2], timeout=2.0)
    core.clock.t += 2.1
    core.step()
    assert waiting.result() == 0 and core.broker.figures.stats()["pending"] == 1


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


def test_a_retried_lease_returns_the_same_tasks(core: Core) -> None:
    core.put("p", [1, 2, 3, 4, 5])
    first = core.lease("c", 2, seq=7)
    assert core.lease("c", 2, seq=7) == first  # the reply was lost; the retry sees it again
    assert seqs(core.lease("c", 2, seq=8)) == [3, 4]


def test_a_task_that_keeps_killing_its_consumer_is_dead_lettered(core: Core) -> None:
    core.put("p", ["poison"])
    for attempt in range(3):
        assert seqs(core.lease(f"c{attempt}", 1)) == [1]
        core.clock.t += 6
        core.broker.reap()
    assert core.lease("c", 1) == []
    s = core.broker.figures.stats()
    assert (s["dead"], s["pending"], s["in_flight"]) == (1, 0, 0)
    (r,) = lines(core)
    assert r["ok"] is False and "dead letter" in str(r["error"]) and r["attempts"] == 3 and r["payload"] == "poison"
    assert [(d["id"], d["payload"], d["attempts"]) for d in core.broker.dead.listing()] == [("p/1", "poison", 3)]


def test_a_crash_uses_an_attempt_of_that_task_only(core: Core) -> None:
    core.put("p", [0, 1, 2, 3])
    core.hello("c/0", parent="c")
    core.lease("c/0", 3)
    core.lease("c/1", 1)
    # the worker died running 2; 3 it had not started; 1 it finished (not acked yet)
    core.lost("c/0", ("p", 1, 2, 3))
    got = core.lease("c2", 10)
    assert sorted((g[G_LO], g[G_HI], g[G_ATTEMPT]) for g in got) == [(1, 2, 1), (2, 3, 2), (3, 4, 1)]
    assert core.broker.figures.stats()["in_flight"] == 4  # 4 is still c/1's


def test_tasks_that_ran_together_in_a_worker_that_died_each_run_alone_next(core: Core) -> None:
    # Given a worker that died running two tasks at once (either may have killed it), and one alone
    core.put("p", ["a", "b", "c", "d"])
    core.lease("c/0", 4)
    core.lost("c/0", None)
    core.lease("c/0", 3)
    core.call("worker_lost", "c/0", [("p", 1, 1, 2), ("p", 1, 2, 3)], None).result()
    # Then both used an attempt and come back marked to run alone; the one it had not started does not
    got = core.lease("c/1", 4)
    assert sorted((seqs([g]), g[G_ATTEMPT], g[G_ALONE]) for g in got) == [
        ([1], 2, True), ([2], 2, True), ([3], 1, False), ([4], 1, False)]
    # And a death with one task running names that task: it is not marked
    core.lost("c/1", ("p", 1, 1, 2))
    (g,) = [g for g in core.lease("c/2", 4) if seqs([g]) == [1]]
    assert (g[G_ATTEMPT], g[G_ALONE]) == (3, True)  # (still marked from before)
    core.put("p", ["e"])
    core.lease("c/3", 1)
    core.lost("c/3", ("p", 5, 5, 6))
    (g,) = core.lease("c/3", 1)
    assert (seqs([g]), g[G_ATTEMPT], g[G_ALONE]) == ([5], 2, False)


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
    assert [(c["name"], c["in_flight"], c["queues"]) for c in s["consumers"]] == [("c", 3, ["default", "other"])]
    assert (s["consumers_alive"], s["queues"]["default"]["consumers"]) == (1, 1)
    # And its workers' results count as its own
    core.ack("c/0", held)
    assert [(c["name"], c["done"], c["in_flight"]) for c in core.broker.figures.stats()["consumers"]] == [("c", 1, 2)]
    # When the consumer goes silent too, its workers' tasks are served again
    core.clock.t += 6
    assert sorted(core.broker.reap()) == [("c", 0), ("c/0", 0), ("c/1", 2)]
    assert core.broker.figures.stats()["pending"] == 3


def test_a_consumers_bye_hands_back_what_its_workers_hold(core: Core) -> None:
    core.put("p", [1, 2, 3])
    core.hello("c")
    core.hello("c/0", parent="c")
    core.lease("c/0", 2)
    core.call("bye", "c").result()
    s = core.broker.figures.stats()
    assert (s["pending"], s["in_flight"], s["consumers"]) == (3, 0, [])


def test_a_task_over_its_timeout_fails_with_a_line_god_writes(core: Core) -> None:
    # Given a task its consumer stopped for running too long, one that may be retried once
    core.put("p", ["slow", "next"], retry=(1, 1.0, 1.0, ("TimeoutError",)))
    core.hello("c/0", parent="c")
    core.lease("c/0", 2)
    why = "TimeoutError: timed out after 2s (--task-timeout); its worker was stopped"
    core.lost("c/0", ("p", 1, 1, 2), timed_out=why)
    # Then it waits for its retry (TimeoutError is one to retry), and the other goes back unstarted
    s = core.broker.figures.stats()
    assert (s["retried"], s["scheduled"], s["pending"], s["in_flight"]) == (1, 1, 1, 0)
    core.clock.t += 2
    core.broker.reap()
    core.hello("c/0", parent="c")  # its replacement
    got = core.lease("c/0", 2)
    assert [(payloads_of(g), g[G_ATTEMPT]) for g in got] == [(["slow"], 2), (["next"], 1)]
    # When it times out again, its failure is final, in a line god writes with its payload
    core.lost("c/0", ("p", 1, 1, 2), timed_out=why)
    (r,) = lines(core)
    assert (r["id"], r["ok"], r["payload"], r["error"], r["attempts"], r["consumer"]) == (
        "p/1", False, "slow", why, 2, "c")


def test_a_lost_worker_does_not_take_back_a_task_now_held_by_another(core: Core) -> None:
    core.put("p", [1])
    core.lease("a", 1)
    core.clock.t += 6
    core.broker.reap()
    core.lease("b", 1)
    core.lost("a", ("p", 1, 1, 2))
    s = core.broker.figures.stats()
    assert (s["in_flight"], s["pending"], s["redelivered"]) == (1, 0, 1)


def test_a_producer_that_says_goodbye_is_no_longer_shown_and_its_results_not_kept(core: Core) -> None:
    core.call("hello", "p", "producer", {"results": True}).result()
    core.put("p", [1])
    core.ack("c", core.lease("c", 1))
    core.call("bye", "p").result()
    assert core.broker.figures.stats()["producers"] == []
    assert core.call("results_for", "p", core.broker.state.run, 0, 10, 0.0, None).result() == ([], [])
    assert core.settle(core.put("p", [1], first=1)) == 1  # and a re-sent put of it is still a duplicate
    assert core.broker.figures.stats()["accepted"] == 1


def test_bye_hands_back_what_is_still_leased(core: Core) -> None:
    core.put("p", [1, 2])
    core.lease("c", 2)
    core.call("bye", "c").result()
    s = core.broker.figures.stats()
    assert (s["pending"], s["in_flight"], s["consumers"]) == (2, 0, [])


def test_priorities_are_exact_and_first_in_first_out_within_a_level(core: Core) -> None:
    core.put("p", ["low 1"], priority=0)
    core.put("p", ["high 1"], priority=9)
    core.put("p", ["mid"], priority=5)
    core.put("p", ["high 2"], priority=9)
    core.put("p", ["low 2"], priority=0)
    order = [payloads_of(g)[0] for g in (core.lease("c", 1)[0] for _ in range(5))]
    assert order == ["high 1", "high 2", "mid", "low 1", "low 2"]


def test_a_redelivered_task_keeps_its_priority_and_goes_first_within_its_level(core: Core) -> None:
    core.put("p", ["a", "b"], priority=5)
    core.put("p", ["top"], priority=9)
    assert payloads_of(core.lease("dead", 1)[0]) == ["top"]
    assert payloads_of(core.lease("dead", 1)[0]) == ["a"]
    core.clock.t += 6
    core.broker.reap()
    got = core.lease("c", 10)
    assert [payloads_of(g) for g in got] == [["top"], ["a"], ["b"]]


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
    assert s["queues"]["other"]["pending"] == 1 and s["queues"]["pages"]["done"] == 1
    assert s["queues"]["images"]["in_flight"] == 1 and s["queues"]["images"]["consumers"] == 1
    assert [(r["queue"], r["task"]) for r in lines(core)] == [("pages", "crawl:page")]


def test_a_bad_queue_name_or_priority_is_an_error_for_that_call(core: Core) -> None:
    with pytest.raises(ValueError, match="queue name 'a b' is not allowed"):
        core.put("p", [1], queue="a b").result()
    with pytest.raises(ValueError, match="priority 10"):
        core.put("p", [1], priority=10).result()
    with pytest.raises(ValueError, match="queue name"):
        core.lease("c", 1, queues=("x" * 65,))
    assert core.broker.figures.stats()["pending"] == 0


def test_tutorial_views_hand_tasks_out_at_most_once_and_route_results(core: Core) -> None:
    t = Tutorial(core.broker, core.api, core.waits)
    pq, cq = TaskQueueView(t), ResultQueueView(t)
    pq.put(5)
    assert pq.get(False) == 5
    with pytest.raises(Exception):  # queue.Empty: it is not handed out twice
        pq.get(False)
    cq.put("5 * 5 = 25")
    assert cq.get(False) == "5 * 5 = 25"
    pq.put(6)
    (g,) = core.lease("c", 1)
    assert g[G_PRODUCER].startswith(TUTORIAL)
    core.ack("c", [g], "6 * 6 = 36")
    assert cq.get(False) == "6 * 6 = 36"
    s = core.broker.figures.stats()
    assert (s["handed_out"], s["done"], s["pending"]) == (1, 2, 0)


def test_a_tutorial_get_blocks_until_a_put_and_the_waits_answer_it(core: Core) -> None:
    pq = TaskQueueView(Tutorial(core.broker, core.api, core.waits))
    got: list[object] = []
    t = threading.Thread(target=lambda: got.append(pq.get(True, 10)), daemon=True)  # get(True, timeout)
    t.start()
    while not len(core.waits):  # the thread parks its call
        t.join(0.001)
    core.put("p", ["work"])
    while t.is_alive():  # the serving thread's rounds answer it
        core.step()
        t.join(0.001)
    assert got == ["work"]


def test_a_value_put_on_the_result_view_reaches_the_producer_that_waits(core: Core) -> None:
    # Given our producer that waits for results, and a tutorial worker that takes its task
    core.call("hello", "p", "producer", {"results": True}).result()
    core.put("p", [3])
    t = Tutorial(core.broker, core.api, core.waits)
    pq, cq = TaskQueueView(t), ResultQueueView(t)
    assert pq.get(False) == 3
    # When the worker puts its value on the result queue
    cq.put("3 * 3 = 9")
    # Then it is that task's result, in the producer's mailbox and in the results file
    posted, _ = core.call("results_for", "p", core.broker.state.run, 0, 10, 0.0, None).result()
    ((_, (lo, hi, blob, consumer, _)),) = posted
    assert (lo, hi, pickle.loads(blob)) == (1, 2, [(True, "3 * 3 = 9", None, None)])
    assert [(r["id"], r["payload"], r["value"]) for r in lines(core)] == [("p/1", 3, "3 * 3 = 9")]


def test_a_producer_that_asked_gets_its_own_results_until_it_confirms_them(core: Core) -> None:
    core.call("hello", "p", "producer", {"results": True}).result()
    core.put("p", [1, 2])
    core.put("q", [9])  # another producer's task
    grants = core.lease("c", 3)
    assert all(g[G_KEEP] == (g[G_PRODUCER] == "p") for g in grants)  # keep: only p's values travel
    core.ack("c", grants)
    run = core.broker.state.run
    posted, gone = core.call("results_for", "p", run, 0, 10, 0.0, None).result()
    assert [(n, item[0], item[1], pickle.loads(item[2])) for n, item in posted] == [
        (1, 1, 3, [(True, 1, None, None), (True, 2, None, None)])]
    assert gone == []
    again, _ = core.call("results_for", "p", run, 0, 10, 0.0, None).result()  # a retried call: the same
    assert [n for n, _ in again] == [1]
    assert core.call("results_for", "p", run, 1, 10, 0.0, None).result() == ([], [])  # confirmed: gone
    assert core.call("results_for", "q", run, 0, 10, 0.0, None).result() == ([], [])  # q did not ask


def test_a_producer_waiting_for_results_is_answered_when_they_come(core: Core) -> None:
    core.call("hello", "p", "producer", {"results": True}).result()
    core.put("p", [1])
    fetch = core.call("results_for", "p", core.broker.state.run, 0, 10, 1.0, None)
    assert not fetch.done
    core.ack("c", core.lease("c", 1))
    core.step()
    posted, gone = fetch.result()
    assert len(posted) == 1 and gone == []


def test_results_numbered_by_an_earlier_god_do_not_drop_this_ones(core: Core) -> None:
    core.call("hello", "p", "producer", {"results": True}).result()
    core.broker.restore([], {"p": 5})  # p's tasks up to 5 were done before god restarted
    core.put("p", [6], first=6)
    core.ack("c", core.lease("c", 1))
    posted, gone = core.call("results_for", "p", "an-earlier-run", 5, 10, 0.0, ["p/6", "p/4", "p/9"]).result()
    assert [n for n, _ in posted] == [1]  # numbers from another run are ignored
    assert gone == ["p/4"]  # p/6's result is here; p/9 god never saw


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


def test_a_task_that_killed_a_worker_goes_to_another_consumer_while_there_is_one(core: Core) -> None:
    # Given two consumers on the queue, and a task that killed a worker of the first
    core.put("p", ["poison", "fine"])
    for consumer in ("c", "other"):
        core.hello(consumer)
        core.hello(f"{consumer}/0", parent=consumer)
        core.hello(f"{consumer}/1", parent=consumer)
    got = core.lease("c/0", 2)
    core.lost("c/0", ("p", 1, 1, 2))
    # When a worker of the first leases again, it gets the other task, not the one that killed its worker
    assert [payloads_of(g) for g in core.lease("c/1", 10)] == [["fine"]]
    waiting = core.call("lease", "c/1", ("default",), 10, 1.0, 99)
    assert not waiting.done  # it waits rather than spinning on empty answers
    # Then the other consumer gets it, at its second attempt
    (g,) = core.lease("other/1", 10)
    assert (payloads_of(g), g[G_ATTEMPT]) == (["poison"], 2)
    assert seqs(got) == [1, 2]


def test_a_task_that_killed_a_worker_comes_back_to_its_consumer_when_it_is_the_only_one(core: Core) -> None:
    core.put("p", ["poison"])
    core.lease("c/0", 1)
    core.lost("c/0", ("p", 1, 1, 2))
    (g,) = core.lease("c/0", 1)
    assert g[G_ATTEMPT] == 2


def test_a_failure_with_retries_left_waits_its_backoff_then_runs_again(core: Core) -> None:
    # Given a task that may be retried twice, backing off 10 s, then 20 s
    core.put("p", ["flaky"], retry=(2, 10.0, 300.0, None))
    # When it fails, it has no result yet and waits off the queue
    assert core.ack("c", core.lease("c", 1), fail={1}) == 0
    s = core.broker.figures.stats()
    assert (s["failed"], s["scheduled"], s["pending"], s["in_flight"], s["retried"]) == (0, 1, 0, 0, 1)
    assert lines(core) == [] and core.lease("c", 1) == []
    core.clock.t += 7.9  # 10 s less 20% jitter at most: not yet
    core.broker.reap()
    assert core.lease("c", 1) == []
    core.clock.t += 4.2  # 10 s and 20% more at most: by now
    core.broker.reap()
    (g,) = core.lease("c", 1)
    assert g[G_ATTEMPT] == 2
    # Then it fails again and waits about twice as long, and on its third try it succeeds
    core.ack("c", [g], fail={1})
    core.clock.t += 16.0 - 0.1
    core.broker.reap()
    assert core.lease("c", 1) == []
    core.clock.t += 8.2
    core.broker.reap()
    (g,) = core.lease("c", 1)
    assert g[G_ATTEMPT] == 3 and core.ack("c", [g]) == 1
    (r,) = lines(core)  # one line for the task: the last attempt's
    assert (r["ok"], r["attempts"]) == (True, 3)
    assert core.broker.figures.stats()["scheduled"] == 0


def test_a_failure_with_no_retries_left_is_its_result(core: Core) -> None:
    core.put("p", ["bad"], retry=(1, 1.0, 300.0, None))
    core.ack("c", core.lease("c", 1), fail={1})
    core.clock.t += 2
    core.broker.reap()
    assert core.ack("c", core.lease("c", 1), fail={1}) == 1
    (r,) = lines(core)
    assert (r["ok"], r["attempts"], r["error"]) == (False, 2, "ValueError: no")
    assert core.broker.figures.stats()["failed"] == 1


def test_only_the_named_exceptions_are_retried(core: Core) -> None:
    core.put("p", ["a", "b"], retry=(3, 1.0, 300.0, ("TimeoutError",)))
    grants = core.lease("c", 2)
    core.ack("c", grants, fail={1}, raised=TimeoutError("slow"), only=(1, 2))
    core.ack("c", grants, fail={2}, raised=KeyError("x"), only=(2, 3))
    assert [r["payload"] for r in lines(core)] == ["b"]  # the KeyError is final; the timeout waits
    assert core.broker.figures.stats()["scheduled"] == 1


def test_a_task_asking_to_be_retried_later_is_served_then(core: Core) -> None:
    core.put("p", ["rate limited"], retry=(1, 1.0, 300.0, ("OtherError",)))
    core.ack("c", core.lease("c", 1), fail={1}, raised=Retry(after=30))  # honoured whatever retry_on says
    core.clock.t += 29
    core.broker.reap()
    assert core.lease("c", 1) == []
    core.clock.t += 1.5
    core.broker.reap()
    assert len(core.lease("c", 1)) == 1


def test_retries_do_not_count_towards_deaths(core: Core) -> None:
    # Given a task that failed and was retried twice: its third lease
    core.put("p", ["x"], retry=(5, 1.0, 1.0, None))
    for _ in range(2):
        core.ack("c", core.lease("c", 1), fail={1})
        core.clock.t += 2
        core.broker.reap()
    (g,) = core.lease("c", 1)
    assert g[G_ATTEMPT] == 3
    # When its worker dies, it is its first death of max_attempts 3: served again, not dead
    core.lost("c", ("p", 1, 1, 2))
    assert core.broker.figures.stats()["dead"] == 0
    (g,) = core.lease("other", 1)
    assert g[G_ATTEMPT] == 4


def test_a_delayed_batch_is_served_when_its_time_comes(core: Core) -> None:
    core.put("p", ["later"], due=time.time() + 60)
    core.put("p", ["now"])
    got = core.lease("c", 10)
    assert [payloads_of(g) for g in got] == [["now"]]
    core.ack("c", got)
    s = core.broker.figures.stats()
    assert (s["scheduled"], s["pending"], s["queues"]["default"]["scheduled"]) == (1, 0, 1)
    core.clock.t += 59
    core.broker.reap()
    assert core.lease("c", 10) == []
    core.clock.t += 1.5
    core.broker.reap()
    assert [payloads_of(g) for g in core.lease("c", 10)] == [["later"]]


def test_a_rate_limit_holds_across_consumers(core: Core) -> None:
    # Given a queue limited to 10 tasks a second, with 100 waiting
    core.put("p", list(range(100)))
    assert core.call("set_limit", "default", 10).result() is None
    # When two consumers lease all they can, the second half a second after the first
    first = seqs(core.lease("a", 100))
    assert core.lease("b", 100) == [] and not core.call("lease", "b", ("default",), 100, 1.0, 7).done
    core.clock.t += 0.5
    second = seqs(core.lease("b", 100))
    # Then they got one second's budget, then half a second's more: together, not each
    assert (len(first), len(second)) == (10, 5)
    core.clock.t += 10  # a long pause does not bank more than a second's worth
    assert len(seqs(core.lease("a", 100))) == 10
    assert core.broker.figures.stats()["queues"]["default"]["rate_limit"] == 10
    # and without the limit, the rest goes at once
    assert core.call("set_limit", "default", None).result() == 10
    assert len(seqs(core.lease("a", 1000))) == 75


def test_a_rate_limit_below_one_a_second_lets_one_through_at_a_time(core: Core) -> None:
    core.put("p", list(range(5)))
    core.call("set_limit", "default", 0.5).result()
    assert len(seqs(core.lease("a", 10))) == 1
    core.clock.t += 1.9
    assert core.lease("a", 10) == []
    core.clock.t += 0.2
    assert len(seqs(core.lease("a", 10))) == 1


def test_a_producer_is_remembered_for_the_dedupe_window_and_then_forgotten_and_counted() -> None:
    core = Core(dedupe_window_s=100.0)
    try:
        core.put("p", [1, 2]).result()
        core.ack("c", core.lease("c", 2))
        core.clock.t += 99
        core.broker.reap()
        assert core.put("p", [1, 2], first=1).result() == 2  # re-sent within the window: a duplicate
        assert core.broker.figures.stats()["pending"] == 0
        core.clock.t += 51
        core.put("q", [7]).result()
        core.ack("c", core.lease("c", 1))
        core.clock.t += 50  # p silent for longer than the window; q heard from since
        core.broker.reap()
        s = core.broker.figures.stats()
        assert (s["producers_forgotten"], s["unknown_puts"]) == (1, 0)
        # Then: a put p sends again is taken as new, and counted as such
        assert core.put("p", [1, 2], first=1).result() == 2
        assert core.broker.figures.stats()["pending"] == 2 and core.broker.figures.stats()["unknown_puts"] == 0  # from seq 1: new
        core.clock.t += 101
        core.broker.reap()
        core.put("p", [3], first=3).result()
        s = core.broker.figures.stats()
        assert (s["producers_forgotten"], s["unknown_puts"], s["pending"]) == (3, 1, 3)
    finally:
        core.close()


def kill_three_times(core: Core, n: int = 1, queue: str = "default") -> None:
    """Lease the first n waiting tasks of a queue to consumers that are lost, until they are dead letters."""
    for attempt in range(3):
        core.lease(f"doomed{attempt}", n, queues=(queue,))
        core.clock.t += 6
        core.broker.reap()


def test_a_dead_letter_is_listed_served_again_under_a_new_id_that_says_where_it_came_from(core: Core) -> None:
    core.put("p", [{"to": "a@example.com"}], queue="mail", task="m:send", priority=4)
    kill_three_times(core, queue="mail")
    lines(core)
    (d,) = core.call("dead", "mail").result()
    assert (d["id"], d["queue"], d["task"], d["attempts"]) == ("p/1", "mail", "m:send", 3)
    assert d["payload"] == {"to": "a@example.com"} and "lost" in d["reason"]  # its JSON value
    assert d["shown"] == '{"to": "a@example.com"}'
    assert core.call("dead", "other").result() == []
    ((old, new),) = core.call("requeue", ["p/1"]).result()
    assert old == "p/1" and new != old and new.endswith("/1")
    assert core.call("dead", None).result() == [] and core.broker.figures.stats()["dead_kept"] == 0
    (g,) = core.lease("c", 5, queues=("mail",))
    assert (g[G_QUEUE], g[G_TASK], payloads_of(g)) == ("mail", "m:send", [{"to": "a@example.com"}])
    core.ack("c", [g])
    (r,) = lines(core)
    assert (r["id"], r["ok"], r["requeued_from"]) == (new, True, "p/1")


def test_requeue_of_an_id_god_does_not_keep_is_refused_and_changes_nothing(core: Core) -> None:
    core.put("p", ["x"])
    kill_three_times(core)
    with pytest.raises(ValueError, match=r"1 id god keeps no dead letter of: p/9"):
        core.call("requeue", ["p/1", "p/9"]).result()
    assert [d["id"] for d in core.call("dead", None).result()] == ["p/1"]
    assert core.broker.figures.stats()["pending"] == 0


def test_requeue_of_a_queue_and_purge_by_queue_and_age(core: Core) -> None:
    core.put("p", ["a"], queue="q1")
    kill_three_times(core, queue="q1")
    core.put("p", ["b", "c"], queue="q2")
    kill_three_times(core, 2, queue="q2")
    assert [d["id"] for d in core.call("dead", None).result()] == ["p/1", "p/2", "p/3"]
    assert core.call("purge", "q1", 3600.0).result() == 0  # given up just now
    assert [new for _, new in core.call("requeue", None, "q2").result()] != []
    assert core.broker.figures.stats()["pending"] == 2
    assert core.call("purge", None, None).result() == 1
    assert core.call("dead", None).result() == []


def test_dead_keep_lets_the_oldest_go() -> None:
    core = Core(dead_keep=2)
    try:
        core.put("p", [1, 2, 3])
        kill_three_times(core, 3)
        assert [d["id"] for d in core.call("dead", None).result()] == ["p/2", "p/3"]
        assert core.broker.figures.stats()["dead"] == 3 and core.broker.figures.stats()["dead_kept"] == 2
    finally:
        core.close()


def test_failed_lists_the_last_failures_not_those_tried_again(core: Core) -> None:
    core.put("p", [1, 2, 3])
    core.put("p", [4], retry=(2, 1.0, 10.0, None))
    core.ack("c", core.lease("c", 10), fail={2, 4}, raised=KeyError("k"))
    (f,) = core.call("failed", None).result()
    assert (f["id"], f["payload"], f["shown"], f["queue"]) == ("p/2", 2, "2", "default")
    assert "KeyError" in f["error"] and "k" in f["traceback"]


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


def test_a_paused_queue_starts_nothing_until_resumed_and_others_go_on(core: Core) -> None:
    core.put("p", [1, 2], queue="q1")
    core.put("p", [3], queue="q2")
    (g,) = core.lease("c", 1, queues=("q1",))  # running before the pause: it finishes
    assert core.call("pause", "q1", True).result() is False
    assert core.call("pause", "q1", True).result() is True  # paused already
    assert core.lease("c", 5, queues=("q1",)) == []
    assert seqs(core.lease("c", 5, queues=("q1", "q2"))) == [3]
    assert core.ack("c", [g]) == 1
    waiting = core.call("lease", "c", ("q1",), 5, 10.0, None)  # a consumer waits for work
    core.step()
    assert not waiting.done
    s = core.broker.figures.stats()["queues"]["q1"]
    assert (s["paused"], s["pending"]) == (True, 1)
    assert core.call("pause", "q1", False).result() is True
    core.step()
    assert seqs(waiting.result()) == [2]
    with pytest.raises(ValueError, match=r"god knows no queue nope \(queues: q1, q2\)"):
        core.call("pause", "nope", True).result()


def test_drain_asks_a_consumer_through_its_heartbeats(core: Core) -> None:
    core.hello("c")
    core.hello("c/0", parent="c")
    core.put("p", [1, 2])
    core.lease("c/0", 2)
    assert core.call("heartbeat", "c").result() == (True, {"drain": False, "stop": []})
    assert core.call("drain", "c").result() == 2
    assert core.call("heartbeat", "c").result() == (True, {"drain": True, "stop": []})
    assert core.call("heartbeat", "c").result()[1]["drain"]  # asked until it leaves: a lost reply is no matter
    with pytest.raises(ValueError, match=r"god knows no consumer nope \(consumers: c\)"):
        core.call("drain", "nope").result()
    with pytest.raises(ValueError, match=r"c/0 is a worker process of consumer c: drain c"):
        core.call("drain", "c/0").result()  # a worker, not a consumer


def test_cancel_fails_waiting_scheduled_and_running_tasks_at_once_and_tells_the_runner(core: Core) -> None:
    core.hello("c")
    core.hello("c/0", parent="c")
    core.put("p", [1, 2, 3, 4])
    core.put("p", [5], retry=(1, 60.0, 60.0, None))
    running = core.lease("c/0", 2)  # p/1, p/2 run
    core.ack("c/0", core.lease("c/0", 3), only=(5, 6), fail={5})  # p/5 waits for its retry; p/3, p/4 held
    assert core.call("cancel", ["p/1", "p/5", "p/3"], None, None).result() == {"waiting": 0, "scheduled": 1,
                                                                              "running": 2}
    got = {r["id"]: r for r in lines(core)}
    assert {tid for tid, r in got.items() if r["error"] == CANCELLED} == {"p/1", "p/3", "p/5"}
    assert core.call("heartbeat", "c").result()[1]["stop"] == [("p", 1), ("p", 3)]
    assert core.ack("c/0", running) == 1  # p/2's result counts; p/1's is a duplicate
    s = core.broker.figures.stats()
    assert (s["cancelled"], s["failed"], s["scheduled"]) == (3, 3, 0)  # p/5 failed once: tried again, then cancelled
    assert core.call("task", "p/1").result()["state"] == "done"
    core.clock.t += 11  # told for two lease periods, then forgotten
    assert core.call("heartbeat", "c").result()[1]["stop"] == []
    with pytest.raises(ValueError, match=r"1 task not waiting, scheduled or running .*: p/2"):
        core.call("cancel", ["p/2"], None, None).result()


def test_cancel_a_queue_or_a_producer(core: Core) -> None:
    core.put("p", [1, 2], queue="q1")
    core.put("r", [3], queue="q2")
    core.put("r", [4], queue="q1")
    assert core.call("cancel", None, "q1", None).result() == {"waiting": 3, "scheduled": 0, "running": 0}
    assert core.call("cancel", None, None, "r").result() == {"waiting": 1, "scheduled": 0, "running": 0}
    assert core.broker.figures.stats()["pending"] == 0 and core.lease("c", 5, queues=("q1", "q2")) == []
    assert len(lines(core)) == 4
    with pytest.raises(ValueError, match="god knows no queue nope"):
        core.call("cancel", None, "nope", None).result()
    with pytest.raises(ValueError, match="god knows no producer nobody"):
        core.call("cancel", None, None, "nobody").result()
    with pytest.raises(ValueError, match="one of them"):
        core.call("cancel", ["p/1"], "q1", None).result()


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


def test_a_schedule_puts_its_task_once_a_period_and_once_for_periods_missed(core: Core) -> None:
    t0 = core.clock.t
    s = core.call("schedule_add", "tick", 10.0, None, "q", "m:f", {"n": 1}).result()
    assert (s["next"], s["runs"]) == (t0 + 10, 0)
    core.clock.t = t0 + 9.9
    core.broker.reap()
    assert core.broker.figures.stats()["pending"] == 0
    core.clock.t = t0 + 10
    core.broker.reap()
    (g,) = core.lease("c", 5, queues=("q",))
    assert (g[G_PRODUCER], g[G_LO], g[G_TASK], payloads_of(g)) == ("schedule-tick", 1, "m:f", [{"n": 1}])
    core.ack("c", [g])
    core.clock.t = t0 + 55  # periods at 20, 30, 40, 50 missed (god was busy, or down): one run
    core.broker.reap()
    core.broker.reap()
    second = core.lease("c", 5, queues=("q",))
    assert seqs(second) == [2]
    core.ack("c", second)
    (s,) = core.call("schedule_list").result()
    assert (s["runs"], s["next"], s["payload"]) == (2, t0 + 60, {"n": 1})
    with pytest.raises(ValueError, match="schedule tick exists already"):
        core.call("schedule_add", "tick", 5.0, None, "q", None, None).result()
    assert core.call("schedule_remove", "tick").result()["runs"] == 2
    core.clock.t = t0 + 100
    core.broker.reap()
    assert core.lease("c", 5, queues=("q",)) == []
    with pytest.raises(ValueError, match=r"god knows no schedule tick \(schedules: none\)"):
        core.call("schedule_remove", "tick").result()


def test_a_schedule_run_put_before_a_crash_is_not_put_again(core: Core) -> None:
    core.call("schedule_add", "tick", 10.0, None, "default", None, 7).result()
    s = core.broker.state.schedules["tick"]
    core.put(s.producer, [7], first=1)  # run 1 was put; the schedule's own row did not say so yet
    core.clock.t = s.next
    core.broker.reap()
    assert core.broker.figures.stats()["pending"] == 1 and s.runs == 1  # the run counted, not put twice


def test_bad_schedules_are_refused(core: Core) -> None:
    for args, says in (((None, None), "one of them"), ((0.5, None), "1 or more"), ((None, "* * *"), "five fields"),
                       ((5.0, "* * * * *"), "one of them")):
        with pytest.raises(ValueError, match=says):
            core.call("schedule_add", "x", *args, "default", None, None).result()
    with pytest.raises(ValueError, match="not allowed"):
        core.call("schedule_add", "a/b", 5.0, None, "default", None, None).result()
