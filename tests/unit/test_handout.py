"""The tutorial's hand-out (god/rules/handout.py, through the views of god/transport/views.py).

On the path production uses (API, waits, broker), with a fake clock: no sockets, no sleeps."""

from __future__ import annotations

import pickle
import threading

import pytest

from god.rules.handout import TUTORIAL
from god.transport.views import ResultQueueView, TaskQueueView, Tutorial
from shared.records import G_PRODUCER
from tests.support.core import Core, lines


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
    assert (s["handed_out"], s["done"], s["waiting"]) == (1, 2, 0)


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
