"""Resources (shared/resources.py): a task goes only to a consumer with what it needs free,
counted exactly across the consumer's workers and freed however the task ends; a GPU task
gets GPU ids of its own; a task that fits no consumer says so and blocks nothing (through
god's API with a fake clock: tests/support/core.py)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from god.rules.figures import fits_nowhere
from shared import resources
from shared.records import G_GPUS, G_LO
from tests.support.core import Core, lines, payloads_of

GPU1 = (("gpu", 1.0),)


@pytest.fixture
def core() -> Iterator[Core]:
    c = Core(capacity=1000, lease_s=5.0, max_attempts=3)
    yield c
    c.close()


def _consumer(core: Core, name: str, have: dict[str, float], gpus: list[str] | None = None, workers: int = 2) -> None:
    info: dict[str, Any] = {"host": name, "queues": ["default"], "resources": have, "gpus": gpus or []}
    core.call("hello", name, "consumer", info).result()
    for k in range(1, workers + 1):
        core.hello(f"{name}/{k}", parent=name)


def _put(core: Core, payloads: list[Any], need: Any = None) -> None:
    first = core.next_seq["p"]
    core.next_seq["p"] += len(payloads)
    from shared import items

    core.call("put_many", "p", (first, len(payloads), items.pack(payloads), "default", None, 0, None, None, None,
                                None, need)).result()


def test_resources_are_counted_exactly_across_workers_and_freed_however_a_task_ends(core: Core) -> None:
    _consumer(core, "c", {"gpu": 2}, ["0", "1"], workers=3)
    _put(core, list(range(1, 7)), GPU1)
    (a,) = core.lease("c/1", 10)  # one at a time per worker (it runs one at a time)
    (b,) = core.lease("c/2", 10)
    assert core.lease("c/3", 10) == []  # both GPUs held
    assert {a[G_GPUS], b[G_GPUS]} == {("0",), ("1",)}
    core.ack("c/1", [a])  # done: its GPU is free
    (c,) = core.lease("c/3", 10)
    assert c[G_GPUS] == a[G_GPUS]
    core.ack("c/3", [c], fail={c[G_LO]})  # failed: free too
    (d,) = core.lease("c/1", 10)
    assert d[G_GPUS] == a[G_GPUS]  # (c/1 had it last: it keeps it)
    core.lost("c/1", ("p", 1, d[G_LO], d[G_LO] + 1))  # its worker died running it: free
    (e,) = core.lease("c/3", 10)
    core.clock.t += 6  # c/2's and c/3's leases run out (their consumer silent): both free
    core.broker.reap()
    _consumer(core, "c", {"gpu": 2}, ["0", "1"], workers=3)
    assert len(core.lease("c/1", 1)) == 1 and len(core.lease("c/2", 1)) == 1 and core.lease("c/3", 1) == []


def test_a_gpu_task_s_worker_sees_its_gpus_and_a_task_needing_two_waits_for_both(core: Core) -> None:
    _consumer(core, "c", {"gpu": 2, "mem": 8.0}, ["4", "7"])
    _put(core, [1], (("gpu", 2.0),))
    _put(core, [2], (("mem", 1.0),))
    _put(core, [3])
    (two,) = core.lease("c/1", 1)
    assert payloads_of(two) == [1] and two[G_GPUS] == ("4", "7")
    (cpu,) = core.lease("c/2", 1)
    assert cpu[G_GPUS] == ()  # on a GPU consumer, a task that asked for resources but no GPU sees none
    core.ack("c/1", [two])
    (plain,) = core.lease("c/1", 1)
    assert plain[G_GPUS] is None  # one that said nothing of resources sees what its worker saw at its start


def test_a_task_that_fits_nowhere_says_so_and_blocks_nothing_behind_it(core: Core) -> None:
    _consumer(core, "small", {"gpu": 2, "mem": 8 << 30}, ["0", "1"])
    for _ in range(100):  # more than a lease looks past for other reasons
        _put(core, [0], (("gpu", 4.0), ("mem", float(4 << 30))))
    _put(core, ["fits"])
    assert [payloads_of(g) for g in core.lease("small/1", 10)] == [["fits"]]
    state = core.broker.figures.task_state("p/1")
    assert state["state"] == "waiting"
    assert state["fits"] == "fits nowhere: needs gpu=4, mem=4G; the largest has gpu=2"
    q = core.broker.figures.stats()["queues"]["default"]
    assert (q["unfit"], q["unfit_why"]) == (100, state["fits"])
    # A consumer that has it comes: it fits, and goes there
    _consumer(core, "big", {"gpu": 8, "mem": 64 << 30}, [str(i) for i in range(8)], workers=1)
    assert core.broker.figures.stats()["queues"]["default"]["unfit"] == 0
    (g,) = core.lease("big/1", 10)
    assert g[G_GPUS] == ("0", "1", "2", "3")


def test_resources_are_parsed_and_checked_in_one_line() -> None:
    assert resources.parse("gpu=2, mem=64G,licence=1") == {"gpu": 2.0, "licence": 1.0, "mem": float(64 << 30)}
    assert resources.shown(resources.check({"mem": 30 << 30, "gpu": 1})) == "gpu=1, mem=30G"
    for bad, said in (("gpu", "not NAME=AMOUNT"), ("gpu=-1", "not NAME=AMOUNT"), ("GPU!=1", "resource name"),
                      ("gpu=0", "not a number over 0"), ("gpu=0.5", "GPUs are counted whole")):
        with pytest.raises(ValueError, match=said):
            resources.parse(bad)
    assert fits_nowhere(GPU1, []) is None  # no consumer serves it: it waits for one, as any task


def test_a_put_with_resources_that_are_not_data_is_refused(core: Core) -> None:
    with pytest.raises(ValueError, match="resource name"):
        _put(core, [1], (("os.system", 1),))
    with pytest.raises(ValueError, match="not a number over 0"):
        _put(core, [1], {"gpu": float("nan")})


def test_god_fit_timeout_fails_a_task_that_fit_nowhere_that_long_and_only_that() -> None:
    core = Core(capacity=1000, lease_s=600.0, fit_timeout_s=10.0)
    try:
        _consumer(core, "small", {"gpu": 2}, ["0", "1"])
        _put(core, [1], (("gpu", 4.0),))
        _put(core, [2], (("gpu", 1.0),))
        core.broker.reap()
        core.clock.t += 9.0
        core.broker.reap()
        assert core.broker.figures.task_state("p/1")["state"] == "waiting"
        core.clock.t += 2.0
        core.broker.reap()
        (line,) = [d for d in lines(core) if d["id"] == "p/1"]
        assert not line["ok"] and line["error"] == ("fits nowhere: needs gpu=4; the largest has gpu=2, "
                                                    "for over 10s (god --fit-timeout)")
        assert core.broker.figures.task_state("p/2")["state"] == "waiting"  # it fits: it waits on as ever
        assert core.broker.figures.stats()["failed"] == 1
    finally:
        core.close()


@pytest.mark.parametrize("info, says", [
    ({"resources": {"gpu": "all"}}, "not a number over 0"),
    ({"resources": [("os.system", 1)]}, "resource name"),
    ({"resources": {f"r{i}": 1 for i in range(17)}}, "at most 16"),
    ({"gpus": [0, 1]}, "list of ids"),
    ({"gpus": ["x"] * 2000}, "list of ids"),
    ({"cache": "h:/" + "x" * 5000}, "up to 4,096 characters"),
])
def test_a_consumer_hello_with_what_it_has_not_as_data_is_refused(core: Core, info: dict[str, Any], says: str) -> None:
    with pytest.raises(ValueError, match=says):
        core.call("hello", "c", "consumer", {"host": "h", "queues": ["default"], **info}).result()
    assert "c" not in core.broker.state.peers.consumers  # (nothing of it kept)
