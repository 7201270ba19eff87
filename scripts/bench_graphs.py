"""scripts/bench.py's ``graphs`` section: tasks that wait for other tasks (futures as arguments,
resolved at god): a fan-in, a chain, and god's memory with a graph in flight."""

from __future__ import annotations

import operator
import statistics
import time
from pathlib import Path
from typing import Any

from bench_executor import _rss_mb
from bench_harness import WARMUP, _percentiles, cpu_s, god
from producer import Executor
from shared.client import GodClient

HELD = "held"  # a queue no consumer serves until the graph is in place


def fan_in(work: Path, n: int, rounds: int = 3) -> dict[str, Any]:
    """n tiny calls and one that waits for all of them (``submit(len, futures)``), against the
    same n calls alone, in turn: medians of time, and god's CPU per edge (the difference, over n)."""
    runs: dict[str, list[tuple[float, float]]] = {"alone": [], "fan_in": []}
    with god(work, "--no-journal") as g:
        for _ in range(2):
            g.spawn("consumer", "--processes", "1")
        g.wait_consumers(2)
        with Executor(settings=g.settings) as ex:
            for _ in range(rounds):
                for key, fan in (("alone", False), ("fan_in", True)):
                    cpu = cpu_s([g.proc.pid])
                    t0 = time.perf_counter()
                    futures = [ex.submit(operator.add, i, 1) for i in range(n)]
                    if fan:
                        assert ex.submit(len, futures).result() == n
                    else:
                        assert sum(f.result() for f in futures) == n * (n + 1) // 2
                    runs[key].append((time.perf_counter() - t0, cpu_s([g.proc.pid]) - cpu))
    out: dict[str, Any] = {"tasks": n}
    for key, xs in runs.items():
        out[key] = {"seconds": statistics.median(s for s, _ in xs), "god_cpu_s": statistics.median(c for _, c in xs)}
    out["god_cpu_us_per_edge"] = (out["fan_in"]["god_cpu_s"] - out["alone"]["god_cpu_s"]) / n * 1e6
    return out


def chain(work: Path, n: int, *, journal: bool) -> dict[str, Any]:
    """A chain of n calls, each waiting for the one before, submitted at once: seconds and god's
    CPU per step; against n calls one at a time (``submit(f, x).result()``) in the same god."""
    with god(work, *(() if journal else ("--no-journal",))) as g:
        g.spawn("consumer", "--processes", "1")
        g.wait_consumers(1)
        with Executor(settings=g.settings) as ex:
            single = []
            for i in range(n + WARMUP):
                if i == WARMUP:
                    cpu = cpu_s([g.proc.pid])
                t0 = time.perf_counter()
                ex.submit(operator.add, i, 1).result()
                if i >= WARMUP:
                    single.append(time.perf_counter() - t0)
            single_cpu = cpu_s([g.proc.pid]) - cpu
            cpu = cpu_s([g.proc.pid])
            t0 = time.perf_counter()
            f = ex.submit(operator.add, 0, 1)
            for _ in range(n - 1):
                f = ex.submit(operator.add, f, 1)
            assert f.result() == n
            seconds = time.perf_counter() - t0
            god_cpu = cpu_s([g.proc.pid]) - cpu
    one = _percentiles(single)
    step_ms = seconds / n * 1e3
    return {"tasks": n, "seconds": seconds, "step_ms": step_ms, "single": one,
            "step_to_round_trip": step_ms / one["p50_ms"], "god_cpu_us_per_step": god_cpu / n * 1e6,
            "god_cpu_us_per_single": single_cpu / n * 1e6}


def in_flight(work: Path, n: int, rounds: int = 2) -> dict[str, Any]:
    """Twice, n calls that wait for one held back (on a queue god pauses): god's RSS before,
    with them blocked, and once the graph is done (god given a moment at rest)."""
    out: dict[str, Any] = {"tasks": n, "rounds": []}
    with god(work, "--no-journal") as g:
        g.spawn("consumer", "--processes", "1", "--queues", f"default,{HELD}")
        g.wait_consumers(1)
        control = GodClient(g.settings, name="bench-control", role="status")
        with Executor(settings=g.settings) as ex:
            assert ex.submit(operator.add, 1, 1).result() == 2  # god warmed up as for any run
            ex.options(queue=HELD).submit(operator.add, 1, 1).result()
            for _ in range(rounds):
                before = _rss_mb(g.proc.pid)
                control.pause(HELD, True)
                root = ex.options(queue=HELD).submit(operator.add, 1, 1)
                futures = [ex.submit(operator.add, root, i) for i in range(n)]
                while g.stats()["blocked"] < n:
                    time.sleep(0.1)
                blocked = _rss_mb(g.proc.pid)
                t0 = time.perf_counter()
                control.pause(HELD, False)
                assert sum(f.result() for f in futures) == n * 2 + n * (n - 1) // 2
                seconds = time.perf_counter() - t0
                del futures, root
                time.sleep(2)
                out["rounds"].append({"god_rss_mb_before": before, "god_rss_mb_blocked": blocked,
                                      "god_rss_mb_after": _rss_mb(g.proc.pid), "seconds_to_run": seconds,
                                      "bytes_per_blocked_task": (blocked - before) * 2**20 / n})
        control.close()
    return out


def section(work: Path, quick: bool) -> dict[str, Any]:
    """The graphs section's figures."""
    return {"fan_in": fan_in(work, 2_000 if quick else 10_000),
            "chain": chain(work, 200 if quick else 1_000, journal=False),
            "chain_journal": chain(work, 200 if quick else 1_000, journal=True),
            "in_flight": in_flight(work, 20_000 if quick else 100_000)}


def rows(r: dict[str, Any], row: Any, text: Any) -> None:
    """The section's rows in bench.py's table: ``row(what, tps, p50=, p99=, ratio=)`` and ``text(line)``."""
    f = r["fan_in"]
    row(f"{f['tasks']:,} calls and one that waits for all of them (ratio: to the calls alone)",
        f["tasks"] / f["fan_in"]["seconds"], ratio=f["alone"]["seconds"] / f["fan_in"]["seconds"])
    text(f"    god CPU a call: {f['fan_in']['god_cpu_s'] / (f['tasks'] + 1) * 1e6:.1f} us with the fan-in, "
         f"{f['alone']['god_cpu_s'] / f['tasks'] * 1e6:.1f} us alone: {f['god_cpu_us_per_edge']:.1f} us an edge")
    for key, title in (("chain", "--no-journal"), ("chain_journal", "journal on")):
        c = r[key]
        row(f"a chain of {c['tasks']:,} calls, {title} (ratio: a step to one call's round trip)",
            c["tasks"] / c["seconds"], p50=c["step_ms"], ratio=c["step_to_round_trip"])
        text(f"    one call's round trip p50/p99 {c['single']['p50_ms']:.2f}/{c['single']['p99_ms']:.2f} ms; "
             f"god CPU a step {c['god_cpu_us_per_step']:.0f} us, a call alone {c['god_cpu_us_per_single']:.0f} us")
    m = r["in_flight"]
    for i, x in enumerate(m["rounds"], 1):
        text(f"{m['tasks']:,} calls blocked at god (graph {i}): god RSS {x['god_rss_mb_before']:.0f} MB before, "
             f"{x['god_rss_mb_blocked']:.0f} MB blocked ({x['bytes_per_blocked_task']:,.0f} B a task), "
             f"{x['god_rss_mb_after']:.0f} MB once done (ran in {x['seconds_to_run']:.1f} s)")
