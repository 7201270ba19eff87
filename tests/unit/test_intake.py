"""Taking puts (god/rules/intake.py): dedupe, capacity, order, and producers' results.

On the path production uses (API, waits, broker), with a fake clock: no sockets, no sleeps."""

from __future__ import annotations

import pickle

import pytest

from shared.records import G_KEEP, G_PRODUCER
from tests.support.core import Call, Core, seqs


def test_a_resent_put_is_not_queued_twice(core: Core) -> None:
    core.put("p", [1, 2, 3], first=1)
    assert core.put("p", [1, 2, 3], first=1).result() == 3  # taken care of ...
    s = core.broker.figures.stats()
    assert s["waiting"] == 3 and s["producers"][0]["duplicates"] == 3  # ... but only once


def test_a_batch_sent_behind_another_is_taken_only_after_it(core: Core) -> None:
    def put(first: int, after: int | None) -> Call:
        return core.call("put_many", "p", (first, 2, pickle.dumps([first, first + 1]), "default", None, 0, None, None, None),
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


def test_a_batch_behind_one_god_was_too_full_to_take_is_refused_at_once_not_after_a_wait(core: Core) -> None:
    # Given a god full after batch 1-3, and batch 4-6 refused for it
    core.broker.state.capacity = 3
    assert core.settle(core.put("p", [1, 2, 3])) == 3
    assert core.settle(core.put("p", [4, 5, 6], first=4)) == 0
    # When batch 7-9, sent behind 4-6 before its answer came, may wait 5 s for room
    behind = core.call("put_many", "p", (7, 3, pickle.dumps([7, 8, 9]), "default", None, 0, None, None, None), 5.0, 6)
    # Then it is answered at once, not taken (room would not make it follow a batch not taken)
    assert behind.done and behind.result() == 0
    assert core.broker.figures.stats()["accepted"] == 3


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
    assert core.broker.figures.stats()["waiting"] == 4


def test_a_put_that_finds_no_room_in_time_is_answered_0(core: Core) -> None:
    core.broker.state.capacity = 1
    core.put("p", [1])
    waiting = core.put("p", [2], timeout=2.0)
    core.clock.t += 2.1
    core.step()
    assert waiting.result() == 0 and core.broker.figures.stats()["waiting"] == 1


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


def test_a_bad_queue_name_or_priority_is_an_error_for_that_call(core: Core) -> None:
    with pytest.raises(ValueError, match="queue name 'a b' is not allowed"):
        core.put("p", [1], queue="a b").result()
    with pytest.raises(ValueError, match="priority 10"):
        core.put("p", [1], priority=10).result()
    with pytest.raises(ValueError, match="queue name"):
        core.lease("c", 1, queues=("x" * 65,))
    assert core.broker.figures.stats()["waiting"] == 0

