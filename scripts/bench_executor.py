"""scripts/bench.py's ``executor`` section: ``producer.Executor`` against ``put()`` and
``put_many()`` in the same run, and against the standard library's ProcessPoolExecutor."""

from __future__ import annotations

import itertools
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

from bench_harness import WARMUP, _children, _percentiles, cpu_s, god
from consumer.tasks import square  # installed: travels by name
from producer import Executor
from producer import connect as producer_connect


def by_value_square(n: int) -> str:
    """The tutorial's task, defined here: scripts/ is no installed package, so it travels by value."""
    return f"{n} * {n} = {n * n}"


def _rss_mb(pid: int | None = None) -> float:
    status = Path(f"/proc/{pid or 'self'}/status").read_text()
    return int(next(line for line in status.splitlines() if line.startswith("VmRSS:")).split()[1]) / 1024


def latency(work: Path, n: int, *, journal: bool) -> dict[str, Any]:
    """One task at a time, ``submit(f, x).result()`` and ``put(x)`` + its result, taken in turn
    against the same god and consumer (one process), so both see the same noise."""
    with god(work, *(() if journal else ("--no-journal",))) as g:
        g.spawn("consumer", "--processes", "1")
        g.wait_consumers(1)
        put_s: list[float] = []
        submit_s: list[float] = []
        with producer_connect(settings=g.settings, results=True) as p, Executor(settings=g.settings) as ex:
            for i in range(n + WARMUP):
                t0 = time.perf_counter()
                p.put(7)
                next(p.results())
                t1 = time.perf_counter()
                ex.submit(square, 7).result()
                t2 = time.perf_counter()
                if i >= WARMUP:
                    put_s.append(t1 - t0)
                    submit_s.append(t2 - t1)
    put, submit = _percentiles(put_s), _percentiles(submit_s)
    return {"put": put, "submit": submit, "p50_ratio": submit["p50_ms"] / put["p50_ms"],
            "p99_ratio": submit["p99_ms"] / put["p99_ms"]}


def throughput(work: Path, n: int, *, journal: bool) -> dict[str, Any]:
    """n tiny tasks to 2 consumers of one process: ``put_many`` + ``results()`` (batches of
    1,000), ``list(map(...))`` of a function by name and of one by value; tasks/s and CPU per
    task of each process (the program's: this one's)."""
    out: dict[str, Any] = {"tasks": n}
    with god(work, *(() if journal else ("--no-journal",))) as g:
        cons = [g.spawn("consumer", "--processes", "1") for _ in range(2)]
        g.wait_consumers(2)
        pids = [p.pid for p in cons] + [c for p in cons for c in _children(p.pid)]
        runs: dict[str, Any] = {"put_many": _put_many, "map_by_name": _mapped(square),
                                "map_by_value": _mapped(by_value_square)}
        for key, run in runs.items():
            god_cpu, cons_cpu, own_cpu = cpu_s([g.proc.pid]), cpu_s(pids), time.process_time()
            t0 = time.perf_counter()
            assert run(g, n) == n
            seconds = time.perf_counter() - t0
            out[key] = {"seconds": seconds, "tasks_per_s": n / seconds, "cpu_us_per_task": {
                "god": (cpu_s([g.proc.pid]) - god_cpu) / n * 1e6, "consumers": (cpu_s(pids) - cons_cpu) / n * 1e6,
                "program": (time.process_time() - own_cpu) / n * 1e6}}
    base = out["put_many"]["tasks_per_s"]
    for key in ("map_by_name", "map_by_value"):
        out[key]["ratio_to_put_many"] = out[key]["tasks_per_s"] / base
    return out


def _put_many(g: Any, n: int) -> int:
    with producer_connect(settings=g.settings, results=True) as p:
        for i in range(0, n, 1000):
            p.put_many(list(range(i, min(n, i + 1000))), wait=False)
        return sum(1 for _ in p.results())


def _mapped(fn: Any) -> Any:
    def run(g: Any, n: int) -> int:
        with Executor(settings=g.settings) as ex:
            return sum(1 for _ in ex.map(fn, range(n)))
    return run


def process_pool(n: int) -> dict[str, Any]:
    """The standard library's ``ProcessPoolExecutor(2).map(f, ..., chunksize=1)``, on this machine."""
    with ProcessPoolExecutor(2) as pool:
        list(pool.map(square, range(100)))  # started
        t0 = time.perf_counter()
        got = sum(1 for _ in pool.map(square, range(n), chunksize=1))
        seconds = time.perf_counter() - t0
    assert got == n
    return {"tasks": n, "seconds": seconds, "tasks_per_s": n / seconds}


def endless(work: Path, marks: tuple[int, ...]) -> dict[str, Any]:
    """``map`` over an endless iterable: this program's and god's RSS once each mark of results
    came (a bounded window: it must stay flat)."""
    out: dict[str, Any] = {}
    with god(work, "--no-journal") as g:
        for _ in range(2):
            g.spawn("consumer", "--processes", "1")
        g.wait_consumers(2)
        t0 = time.perf_counter()
        with Executor(settings=g.settings) as ex:
            results = ex.map(square, itertools.count())
            done = 0
            for mark in marks:
                for _ in itertools.islice(results, mark - done):
                    pass
                done = mark
                out[str(mark)] = {"seconds": time.perf_counter() - t0, "program_rss_mb": _rss_mb(),
                                  "god_rss_mb": _rss_mb(g.proc.pid)}
            results.close()  # the rest of the window is cancelled at god
    return out


def section(work: Path, quick: bool) -> dict[str, Any]:
    """The executor section's figures."""
    n = 20_000 if quick else 200_000
    lat_n = 300 if quick else 2000
    out = {"latency": latency(work, lat_n, journal=False), "latency_journal": latency(work, lat_n, journal=True),
           "throughput": throughput(work, n, journal=False), "throughput_journal": throughput(work, n, journal=True),
           "process_pool": process_pool(n // 4 if quick else n),
           "endless": endless(work, (100_000, 300_000) if quick else (1_000_000, 10_000_000))}
    out["map_vs_process_pool"] = out["throughput"]["map_by_name"]["tasks_per_s"] / out["process_pool"]["tasks_per_s"]
    return out


def rows(r: dict[str, Any], row: Any, text: Any) -> None:
    """The section's rows in bench.py's table: ``row(what, tps, p50=, p99=, ratio=)`` and ``text(line)``."""
    for key, title in (("latency", "--no-journal"), ("latency_journal", "journal on")):
        lat = r[key]
        row(f"submit(f, x).result(), {title} (ratio: p50 to put's)", p50=lat["submit"]["p50_ms"],
            p99=lat["submit"]["p99_ms"], ratio=lat["p50_ratio"])
        row(f"put() + its result, same god, {title}", p50=lat["put"]["p50_ms"], p99=lat["put"]["p99_ms"])
    for key, title in (("throughput", "--no-journal"), ("throughput_journal", "journal on")):
        t = r[key]
        for run, what in (("put_many", "put_many + results()"), ("map_by_name", "list(map(f)), f by name"),
                          ("map_by_value", "list(map(f)), f by value")):
            x = t[run]
            row(f"{what}, {title} ({t['tasks']:,} tasks)", x["tasks_per_s"], ratio=x.get("ratio_to_put_many"))
            cpu = x["cpu_us_per_task"]
            text(f"    CPU per task: god {cpu['god']:.1f} us, consumers {cpu['consumers']:.1f} us, "
                 f"program {cpu['program']:.1f} us")
    pool = r["process_pool"]
    row(f"ProcessPoolExecutor(2).map, chunksize=1 ({pool['tasks']:,} tasks)", pool["tasks_per_s"])
    text(f"    map of a function by name: {r['map_vs_process_pool']:.1f}x ProcessPoolExecutor(2)")
    for mark, m in r["endless"].items():
        text(f"map over an endless iterable, {int(mark):,} results in {m['seconds']:.0f} s: program RSS "
             f"{m['program_rss_mb']:.0f} MB, god RSS {m['god_rss_mb']:.0f} MB")
