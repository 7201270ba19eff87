"""Per-hop timestamps (shared/hops.py, for scripts/bench.py's latency section): with
GOD_TRACE_HOPS set, god, the consumer's worker and the program each note every hop of a
task's path, on one clock, and bench_hops cuts them into round trips."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from producer import connect
from shared import hops
from tests.support.gods import God, addr_env, settings_for
from tests.support.helpers import REPO, Proc

pytestmark = pytest.mark.timeout(60)

#: A task's path when god is --no-journal and a worker waits for it, in the order of its notes.
PATH = ["producer sends put_many", "god read put_many", "god answered put_many", "god answered ack_lease (parked)",
        "worker got ack_lease", "worker sends ack_lease", "god read ack_lease", "producer got results_for"]


def test_every_process_notes_each_hop_of_a_task_in_order(start_god: Callable[..., God], spawn: Callable[..., Proc],
                                                          env: dict[str, str], tmp_path: Path) -> None:
    directory = tmp_path / "hops"
    directory.mkdir()
    env[hops.ENV] = str(directory)  # for god and the consumer the test starts
    god = start_god("--no-journal")
    spawn("consumer", "--processes", "1", env_extra=addr_env(god))
    n = 20
    try:
        with connect(settings=settings_for(god, env), results=True) as p:
            p.put(0)
            next(p.results())  # the worker is up and waits at god
            hops.start(str(directory), "producer")
            for i in range(n):
                p.put(i)
                next(p.results())
    finally:
        hops.stop()
    notes = hops.read(str(directory))
    assert {role for _, role, _ in notes} >= {"god", "worker", "producer"}
    sys.path.insert(0, str(REPO / "scripts"))
    try:
        import bench_hops  # type: ignore[import-not-found]  # scripts/ is no package
    finally:
        sys.path.remove(str(REPO / "scripts"))
    assert bench_hops.START == tuple(PATH[0].split(" ", 1))
    trips = [[name for _, name in trip] for trip in bench_hops.round_trips(notes)]
    assert len(trips) == n
    for trip in trips:  # each hop of the path in every round trip, in its order
        it = iter(trip)
        assert all(hop in it for hop in PATH), trip

    r = bench_hops.steps(notes)
    assert r["round_trips"] == n - 1  # the last one's end is not known: it is left out
    assert r["round_trip_us"] > 0 and all(s["us"] >= 0 and s["in"] <= n - 1 for s in r["steps"])
    # (a producer that reads its results sends the fetch for them right behind the put)
    assert f"{PATH[0]} -> producer sends results_for" in [s["step"] for s in r["steps"]]
