"""scripts/bench.py's per-hop timings (in the ``latency`` section): where one task's round trip
goes, from the producer's put to its result, hop by hop across the processes.

The same loop as the latency rows (one task at a time, ``put`` then its result), run again
with ``GOD_TRACE_HOPS`` set (shared/hops.py): every process notes each message as it is about
to send it and once it has read it, and god each call it reads and answers, on the machine's
one monotonic clock (so a send's note comes before its read's). A round
trip is the span from one "producer sends put_many" to the next; each step between two
consecutive notes is named by both, and the table gives each step's median over the round
trips that have it (most have all). A note costs a write(2): about 5 µs each, about 50 µs of
a round trip, so the steps are a little longer than untraced.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from bench_harness import WARMUP, god
from producer import connect as producer_connect
from shared import hops

START = ("producer", "sends put_many")  # put() is put_many of one


def traced(work: Path, n: int, *, journal: bool, processes: int = 1) -> dict[str, Any]:
    """n single tasks with every process tracing: the median round trip and each step's (``steps``)."""
    with tempfile.TemporaryDirectory(dir=work) as directory, \
            god(work, *(() if journal else ("--no-journal",)), env={hops.ENV: directory}) as g:
        g.spawn("consumer", "--processes", str(processes))
        g.wait_consumers(1)
        with producer_connect(settings=g.settings, results=True) as p:
            for i in range(n + WARMUP):
                if i == WARMUP:
                    t_start = time.monotonic_ns()
                    hops.start(directory, "producer")
                p.put(7)
                next(p.results())
        hops.stop()
        notes = [h for h in hops.read(directory) if h[0] >= t_start]
    return steps(notes)


def round_trips(notes: list[tuple[int, str, str]]) -> list[list[tuple[int, str]]]:
    """The notes cut at each START note: a list per round trip of (ns, "ROLE EVENT")."""
    trips: list[list[tuple[int, str]]] = []
    for ns, role, event in notes:
        if (role, event) == START:
            trips.append([])
        if trips:
            trips[-1].append((ns, f"{role} {event}"))
    return trips


def steps(notes: list[tuple[int, str, str]]) -> dict[str, Any]:
    """For each step of the round trips (two consecutive notes) its median in µs over the
    round trips that have it, in the order of a typical round trip."""
    trips = round_trips(notes)[:-1]  # the last may be cut short
    per_step: dict[str, list[float]] = {}
    order: dict[str, int] = {}
    totals = []
    for trip in trips:
        totals.append((trip[-1][0] - trip[0][0]) / 1e3)
        for k, ((a_ns, a), (b_ns, b)) in enumerate(zip(trip, trip[1:])):
            name = f"{a} -> {b}"
            per_step.setdefault(name, []).append((b_ns - a_ns) / 1e3)
            order.setdefault(name, k)
    common = [s for s in per_step if len(per_step[s]) >= 0.5 * len(trips)]
    common.sort(key=order.__getitem__)
    return {"round_trips": len(trips), "round_trip_us": statistics.median(totals) if totals else 0.0,
            "steps": [{"step": s, "us": statistics.median(per_step[s]), "in": len(per_step[s])} for s in common]}


def rows(name: str, r: dict[str, Any], text: Any) -> None:
    """The per-hop rows in bench.py's table, under the latency rows."""
    text(f"  hops of a single task, {name} (traced: {r['round_trips']} round trips, median "
         f"{r['round_trip_us'] / 1e3:.2f} ms; each step's median):")
    for s in r["steps"]:
        text(f"    {s['us']:7.0f} us  {s['step']}")
