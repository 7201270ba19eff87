"""The broker's rules, with a fake clock: no sockets, no sleeps."""

from __future__ import annotations

import pytest

from god.broker import TUTORIAL_PREFIX, Broker
from god.journal import Recovered
from shared.records import success


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def broker(clock: Clock) -> Broker:
    return Broker(capacity=100, lease_s=5.0, max_attempts=3, now=clock)


def tasks(n: int, prefix: str = "p/") -> list[tuple[str, int]]:
    return [(f"{prefix}{i}", i) for i in range(n)]


def ids(leased: list[tuple[str, int, int]]) -> list[str]:
    return [t[0] for t in leased]


def test_tasks_are_leased_in_order_and_acked_once() -> None:
    b = Broker()
    assert b.put_many("p", tasks(3)) == 3
    got = b.lease("c", 10)
    assert got == [("p/0", 0, 1), ("p/1", 1, 1), ("p/2", 2, 1)]
    assert b.ack_many("c", [success(t, f"v{t}") for t in ids(got)]) == 3
    s = b.stats()
    assert (s["done"], s["pending"], s["in_flight"]) == (3, 0, 0)
    assert [r[0][0] for r in b.take_results()[0]] == ["p/0", "p/1", "p/2"]


def test_a_resent_batch_is_not_queued_twice(broker: Broker) -> None:
    broker.put_many("p", tasks(3))
    assert broker.put_many("p", tasks(3)) == 3  # all taken care of ...
    assert broker.stats()["pending"] == 3  # ... but only once
    assert broker.stats()["producers"][0]["duplicates"] == 3


def test_first_result_wins_and_later_ones_are_counted_duplicates(broker: Broker) -> None:
    broker.put_many("p", tasks(1))
    broker.lease("c", 1)
    assert broker.ack_many("c", [success("p/0", "first")]) == 1
    assert broker.ack_many("c", [success("p/0", "second")]) == 0
    results, _ = broker.take_results()
    assert [r[0][2] for r in results] == ["first"]
    assert broker.stats()["duplicates"] == 1


def test_a_silent_consumer_loses_its_leases_to_the_front_of_the_queue(broker: Broker, clock: Clock) -> None:
    broker.put_many("p", tasks(4))
    assert ids(broker.lease("dead", 2)) == ["p/0", "p/1"]
    clock.t += 5.1
    assert broker.reap() == [("dead", 2)]
    got = broker.lease("alive", 10)
    assert ids(got) == ["p/0", "p/1", "p/2", "p/3"]
    assert [t[2] for t in got] == [2, 2, 1, 1]  # attempts counted
    assert broker.stats()["redelivered"] == 2


def test_heartbeats_keep_a_long_task_from_being_served_twice(broker: Broker, clock: Clock) -> None:
    broker.put_many("p", tasks(1))
    broker.lease("c", 1)
    for _ in range(10):
        clock.t += 4
        assert broker.heartbeat("c") is True
        assert broker.reap() == []
    assert broker.lease("other", 1) == []
    assert broker.stats()["in_flight"] == 1


def test_a_lost_consumer_that_comes_back_is_told_and_its_late_result_still_counts(
    broker: Broker, clock: Clock
) -> None:
    broker.put_many("p", tasks(1))
    broker.lease("c", 1)
    clock.t += 6
    broker.reap()
    assert broker.heartbeat("c") is False  # it had been given up
    assert broker.ack_many("c", [success("p/0", "late")]) == 1  # requeued copy now stale
    assert broker.lease("other", 1) == []
    assert broker.stats()["pending"] == 0


def test_full_queue_takes_a_prefix_and_the_rest_later(broker: Broker) -> None:
    broker.capacity = 3
    assert broker.put_many("p", tasks(5), timeout=0) == 3
    assert broker.stats()["pending"] == 3
    broker.lease("c", 2)
    assert broker.put_many("p", tasks(5)[3:], timeout=0) == 2
    assert broker.stats()["pending"] == 3


def test_a_retried_lease_returns_the_same_tasks(broker: Broker) -> None:
    broker.put_many("p", tasks(5))
    first = broker.lease("c", 2, seq=7)
    assert broker.lease("c", 2, seq=7) == first  # the reply was lost; the retry sees it again
    assert ids(broker.lease("c", 2, seq=8)) == ["p/2", "p/3"]


def test_a_task_that_keeps_killing_its_consumer_is_dead_lettered(broker: Broker, clock: Clock) -> None:
    broker.put_many("p", tasks(1))
    for attempt in range(3):
        assert ids(broker.lease(f"c{attempt}", 1)) == ["p/0"]
        clock.t += 6
        broker.reap()
    assert broker.lease("c", 1) == []
    s = broker.stats()
    assert (s["dead"], s["pending"], s["in_flight"]) == (1, 0, 0)
    (wire, payload, consumer, attempts), = broker.take_results()[0]
    assert wire[1] is False and wire[3] is not None and "dead letter" in wire[3] and attempts == 3
    assert "p/0" in broker.dead_letters()


def test_released_unstarted_tasks_do_not_use_up_attempts(broker: Broker) -> None:
    broker.put_many("p", tasks(2))
    broker.lease("c", 2)
    assert broker.release("c", ["p/0"], crashed=["p/1"]) == 2
    got = broker.lease("c2", 2)
    assert [(t[0], t[2]) for t in got] == [("p/1", 2), ("p/0", 1)] or [(t[0], t[2]) for t in got] == [
        ("p/0", 1), ("p/1", 2)]


def test_a_consumer_cannot_release_a_task_now_held_by_another(broker: Broker, clock: Clock) -> None:
    broker.put_many("p", tasks(1))
    broker.lease("a", 1)
    clock.t += 6
    broker.reap()
    broker.lease("b", 1)
    assert broker.release("a", ["p/0"]) == 0
    assert broker.stats()["in_flight"] == 1


def test_bye_hands_back_what_is_still_leased(broker: Broker) -> None:
    broker.put_many("p", tasks(2))
    broker.lease("c", 2)
    broker.bye("c")
    s = broker.stats()
    assert (s["pending"], s["in_flight"], s["consumers"]) == (2, 0, [])


def test_tutorial_views_hand_tasks_out_at_most_once_and_route_results(broker: Broker) -> None:
    assert broker.put_one(5, timeout=0) is True
    assert broker.take_one(timeout=0) == (True, 5)
    assert broker.take_one(timeout=0) == (False, None)
    broker.put_value("5 * 5 = 25")
    assert broker.get_value(timeout=0) == (True, "5 * 5 = 25")
    broker.put_one(6, timeout=0)
    (tid, payload, _), = broker.lease("c", 1)
    assert tid.startswith(TUTORIAL_PREFIX)
    broker.ack_many("c", [success(tid, "6 * 6 = 36")])
    assert broker.get_value(timeout=0) == (True, "6 * 6 = 36")
    assert broker.stats()["handed_out"] == 1


def test_a_producer_that_asked_gets_its_own_results_until_it_confirms_them(broker: Broker) -> None:
    broker.hello("p", "producer", {"results": True})
    broker.put_many("p", [("p/1", 1), ("p/2", 2)])
    broker.put_many("q", [("q/1", 9)])  # another producer's task
    leased = broker.lease("c", 3)
    broker.ack_many("c", [success(t[0], t[1] * 10) for t in leased])
    posted, gone = broker.results_for("p", broker.run, 0, 10)
    assert [(n, item[0][0], item[0][2]) for n, item in posted] == [(1, "p/1", 10), (2, "p/2", 20)]
    assert gone == []
    again, _ = broker.results_for("p", broker.run, 0, 10)  # a retried call: the same, nothing lost
    assert [n for n, _ in again] == [1, 2]
    assert broker.results_for("p", broker.run, 2, 10) == ([], [])  # confirmed: gone from the box
    assert broker.results_for("q", broker.run, 0, 10) == ([], [])  # q did not ask: no box


def test_results_numbered_by_an_earlier_god_do_not_drop_this_ones(broker: Broker) -> None:
    broker.hello("p", "producer", {"results": True})
    broker.put_many("p", [("p/1", 1)])
    broker.ack_many("c", [success("p/1", 1)])
    broker.restore(Recovered(done_ids=["p/0"]))  # done before god restarted: seen, no result here
    posted, gone = broker.results_for("p", "an-earlier-run", 5, 10, check=["p/1", "p/0", "p/9"])
    assert [n for n, _ in posted] == [1]  # numbers from another run are ignored
    assert gone == ["p/0"]  # p/1's result is here; p/9 god never saw


def test_the_oldest_waiting_tasks_age(clock: Clock) -> None:
    b = Broker(now=clock)
    assert b.stats()["oldest_waiting_s"] == 0.0
    b.put_many("p", tasks(2))
    clock.t += 5
    b.put_many("p", tasks(2, prefix="q/"))
    clock.t += 3
    assert b.stats()["oldest_waiting_s"] == 8.0
    b.lease("c", 2)  # the two oldest
    assert b.stats()["oldest_waiting_s"] == 3.0
    b.release("c", ["p/0"])  # back, unstarted: the oldest again
    assert b.stats()["oldest_waiting_s"] == 8.0
    b.lease("c", 10)
    assert b.stats()["oldest_waiting_s"] == 0.0
