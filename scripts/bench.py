"""Benchmark: the tutorial pattern and this system side by side, in one run, as ratios.

    .venv/bin/python scripts/bench.py            # every section (a few minutes)
    .venv/bin/python scripts/bench.py --quick    # smaller counts, under a minute
    .venv/bin/python scripts/bench.py --json bench.json

Everything runs on this machine over loopback and is started here: the tutorial pattern
(``manager.start()``, two queues, one item per proxy call, two worker processes) and god,
one producer and consumers as users run them. Speeds are reported as ratios against the
tutorial pattern measured in the same run, so the numbers compare across machines.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import queue
import secrets
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from multiprocessing import Process
from multiprocessing.managers import BaseManager
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_harness import (  # noqa: E402
    KEY, WARMUP, GodClient, LineCounter, _children, _numbers, _percentiles, _until, cpu_s, god, relayed, wait_cpu_s,
)
import bench_executor  # noqa: E402
import bench_graphs  # noqa: E402
import bench_output  # noqa: E402
import bench_values  # noqa: E402
import bench_hops  # noqa: E402
import bench_startup  # noqa: E402
from producer import connect as producer_connect  # noqa: E402

READY = "ready"  # a tutorial worker's first result: it is connected
#: Sections of their own modules: ``section(work, quick)`` figures, ``rows(figures, row, text)``.
SECTION_MODULES: dict[str, Any] = {"executor": bench_executor, "graphs": bench_graphs, "output": bench_output,
                                   "values": bench_values}


# -- the tutorial pattern --------------------------------------------------------------------

_tasks: queue.Queue[Any] = queue.Queue()
_results: queue.Queue[Any] = queue.Queue()


def _task_queue() -> queue.Queue[Any]:
    return _tasks


def _result_queue() -> queue.Queue[Any]:
    return _results


class TutorialManager(BaseManager):
    pass


TutorialManager.register("get_task_queue", callable=_task_queue)
TutorialManager.register("get_result_queue", callable=_result_queue)


class TutorialClient(BaseManager):
    pass


TutorialClient.register("get_task_queue")
TutorialClient.register("get_result_queue")


def _tutorial_queues(address: tuple[str, int]) -> tuple[Any, Any]:
    m = TutorialClient(address=address, authkey=KEY.encode())
    m.connect()
    return m.get_task_queue(), m.get_result_queue()  # type: ignore[attr-defined]


def _tutorial_worker(address: tuple[str, int]) -> None:
    tasks, results = _tutorial_queues(address)
    results.put(READY)
    while True:
        n = tasks.get(timeout=60)
        if n is None:
            return
        results.put(n if isinstance(n, bytes) else f"{n} * {n} = {n * n}")


@contextmanager
def tutorial_workers(address: tuple[str, int], tasks: Any, results: Any, k: int) -> Iterator[None]:
    """k worker processes, every one connected before the clock starts; stopped afterwards."""
    workers = [Process(target=_tutorial_worker, args=(address,)) for _ in range(k)]
    for w in workers:
        w.start()
    for _ in range(k):
        assert results.get(timeout=120) == READY
    try:
        yield
    finally:
        for _ in range(k):
            tasks.put(None)
        for w in workers:
            w.join(10)
            if w.is_alive():
                w.kill()


@contextmanager
def tutorial_server() -> Iterator[tuple[str, int]]:
    m = TutorialManager(address=("127.0.0.1", 0), authkey=KEY.encode())
    m.start()
    try:
        yield m.address  # type: ignore[misc]
    finally:
        m.shutdown()


def tutorial_throughput(n: int, workers: int = 2) -> dict[str, float]:
    """The tutorial's master: put every task, then get every result; the workers meanwhile."""
    with tutorial_server() as address:
        tasks, results = _tutorial_queues(address)
        with tutorial_workers(address, tasks, results, workers):
            t0 = time.perf_counter()
            for i in range(n):
                tasks.put(i)
            for _ in range(n):
                results.get(timeout=60)
            elapsed = time.perf_counter() - t0
    return {"tasks": n, "seconds": elapsed, "tasks_per_s": n / elapsed}


def tutorial_latency(n: int, payload: Any = 7, workers: int = 1) -> dict[str, float]:
    with tutorial_server() as address:
        tasks, results = _tutorial_queues(address)
        samples = []
        with tutorial_workers(address, tasks, results, workers):
            for i in range(n + WARMUP):
                t0 = time.perf_counter()
                tasks.put(payload)
                results.get(timeout=30)
                if i >= WARMUP:
                    samples.append(time.perf_counter() - t0)
    return _percentiles(samples)


def tutorial_connect(n: int) -> dict[str, float]:
    with tutorial_server() as address:
        samples = []
        for _ in range(n):
            t0 = time.perf_counter()
            tasks, _ = _tutorial_queues(address)
            tasks.qsize()
            samples.append(time.perf_counter() - t0)
    return _percentiles(samples)


# -- god -------------------------------------------------------------------------------------


def ours_throughput(work: Path, n: int, *, journal: bool, consumers: int = 2, processes: int = 1,
                    god_args: tuple[str, ...] = (), principals: bool = False) -> dict[str, Any]:
    """n tiny tasks from a file, through god, to consumers: tasks/s, and CPU per task of each
    process. ``principals``: god has a table, producer and consumer keys of their own roles."""
    src = _numbers(work, n)
    with god(work, *(() if journal else ("--no-journal",)), *god_args, principals=principals) as g:
        cons = [g.spawn("consumer", "--processes", str(processes)) for _ in range(consumers)]
        g.wait_consumers(consumers)
        cons_pids = [p.pid for p in cons] + [c for p in cons for c in _children(p.pid)]
        lines = LineCounter(g.results)
        god_cpu, cons_cpu = cpu_s([g.proc.pid]), cpu_s(cons_pids)
        t0 = time.perf_counter()
        producer = g.spawn("producer", "--from", str(src))
        _until(lambda: lines() >= n, 600, f"{n} results", poll=0.002)
        end = time.perf_counter()
        god_cpu, cons_cpu = cpu_s([g.proc.pid]) - god_cpu, cpu_s(cons_pids) - cons_cpu
        producer_cpu = wait_cpu_s(producer)
        rss = g.rss_kb()
    assert lines.first is not None
    first_at, first_count = lines.first
    return {"tasks": n, "seconds": end - t0, "tasks_per_s": n / (end - t0), "god_peak_kb": rss["peak_kb"],
            # the producer process starting (imports, connecting, reading) is outside this one
            "first_result_s": first_at - t0, "steady_tasks_per_s": (n - first_count) / (end - first_at),
            "cpu_us_per_task": {"god": god_cpu / n * 1e6, "consumers": cons_cpu / n * 1e6,
                                "producer": producer_cpu / n * 1e6}}


def ours_far(work: Path, n: int, task: str, *, rtt_s: float, concurrency: int = 1) -> dict[str, Any]:
    """n tasks from a file to one consumer of 2 processes (each running ``concurrency`` tasks at
    once) that reaches god through a relay holding every byte rtt_s/2 each way (another region,
    a VPN; none with 0): seconds from the producer's start, and tasks/s."""
    src = _numbers(work, n)
    with god(work) as g, relayed(g, rtt_s) as far:
        g.env["GOD_ADDRESS"] = far
        g.spawn("consumer", "--processes", "2", "--concurrency", str(concurrency), "--task", task)
        g.env["GOD_ADDRESS"] = g.address  # the producer is near god
        g.wait_consumers(1)
        lines = LineCounter(g.results)
        t0 = time.perf_counter()
        g.spawn("producer", "--from", str(src)).wait()
        _until(lambda: lines() >= n, 600, f"{n} results", poll=0.002)
        seconds = time.perf_counter() - t0
    return {"tasks": n, "task": task, "rtt_ms": rtt_s * 1e3, "concurrency": concurrency, "seconds": seconds,
            "tasks_per_s": n / seconds}


def ours_far_producer(work: Path, n: int, *, rtt_s: float) -> dict[str, Any]:
    """A producer that reaches god through a relay holding every byte rtt_s/2 each way puts n
    tiny tasks from a file (journal on): seconds from its start until it exits, all confirmed."""
    src = _numbers(work, n)
    with god(work) as g, relayed(g, rtt_s) as far:
        g.env["GOD_ADDRESS"] = far
        t0 = time.perf_counter()
        assert g.spawn("producer", "--from", str(src)).wait() == 0
        seconds = time.perf_counter() - t0
        assert g.stats()["accepted"] == n
    return {"tasks": n, "rtt_ms": rtt_s * 1e3, "seconds": seconds, "tasks_per_s": n / seconds}


def ours_queues(work: Path, n: int, queues: int, *, consumers: int = 2) -> dict[str, Any]:
    """n tiny tasks put in batches of 1,000 round the queues, by the Python API, with journal;
    each consumer serves its share of the queues first, then the others: tasks/s."""
    names = [f"q{i}" for i in range(queues)]
    with god(work) as g:
        for k in range(consumers):
            mine = names[k::consumers]
            g.spawn("consumer", "--processes", "1", "--queues", ",".join(mine + [q for q in names if q not in mine]))
        g.wait_consumers(consumers)
        lines = LineCounter(g.results)
        t0 = time.perf_counter()
        with producer_connect(settings=g.settings) as p:
            for i in range(0, n, 1000):
                p.put_many(list(range(i, min(n, i + 1000))), queue=names[i // 1000 % queues])
        _until(lambda: lines() >= n, 600, f"{n} results", poll=0.002)
        end = time.perf_counter()
        per_queue = {k: v["done"] for k, v in g.stats()["queues"].items()}
    return {"tasks": n, "queues": queues, "seconds": end - t0, "tasks_per_s": n / (end - t0),
            "done_per_queue_min": min(per_queue.values()), "done_per_queue_max": max(per_queue.values())}


def ours_latency(work: Path, n: int, payload: Any = 7, task: str = "consumer.tasks:square", *,
                 journal: bool = False, processes: int = 1) -> dict[str, float]:
    with god(work, *(() if journal else ("--no-journal",))) as g:
        g.spawn("consumer", "--processes", str(processes), "--task", task)
        g.wait_consumers(1)
        samples = []
        with producer_connect(settings=g.settings, results=True) as p:
            for i in range(n + WARMUP):
                t0 = time.perf_counter()
                p.put(payload)
                next(p.results())
                if i >= WARMUP:
                    samples.append(time.perf_counter() - t0)
    return _percentiles(samples)


def ours_connect(work: Path, n: int) -> dict[str, float]:
    with god(work, "--no-journal") as g:
        samples = []
        for _ in range(n):
            t0 = time.perf_counter()
            c = GodClient(g.settings, name="bench", role="status")
            c.connect()
            samples.append(time.perf_counter() - t0)
            c.close()
    return _percentiles(samples)


def ours_million(work: Path, n: int) -> dict[str, float]:
    src = _numbers(work, n)
    with god(work, "--no-journal", "--capacity", str(n)) as g:
        base = g.rss_kb()["rss_kb"]
        t0 = time.perf_counter()
        g.spawn("producer", "--from", str(src)).wait()
        elapsed = time.perf_counter() - t0
        assert g.stats()["waiting"] == n
        rss = g.rss_kb()
    return {"tasks": n, "put_seconds": elapsed, "god_rss_mb": rss["rss_kb"] / 1024,
            "god_peak_mb": rss["peak_kb"] / 1024, "bytes_per_task": (rss["rss_kb"] - base) * 1024 / n}


def ours_growth(work: Path, marks: tuple[int, ...], chunk: int = 500_000) -> dict[str, Any]:
    """Tiny tasks through one god with its journal, a producer run per chunk: god's RSS and the
    journal's size (with its WAL) once each mark's total has results and god had 2 s at rest
    (what it holds between bursts, not the burst's own buffers)."""
    src = _numbers(work, chunk)
    journal = work / f"growth-{secrets.token_hex(3)}.sqlite3"
    out: dict[str, Any] = {}
    with god(work, "--journal", str(journal)) as g:
        g.spawn("consumer", "--processes", "2")
        g.wait_consumers(1)
        lines = LineCounter(g.results)
        total = 0
        for mark in marks:
            while total < mark:
                n = min(chunk, mark - total)
                g.spawn("producer", "--from", str(src if n == chunk else _numbers(work, n))).wait()
                total += n
                _until(lambda: lines() >= total, 600, f"{total} results", poll=0.05)
            time.sleep(2)
            size = sum(f.stat().st_size for f in work.glob(journal.name + "*") if not f.name.endswith(".lock"))
            out[str(mark)] = {"god_rss_mb": g.rss_kb()["rss_kb"] / 1024, "journal_mb": size / 2**20}
    return out


def run(quick: bool, sections: set[str]) -> dict[str, Any]:
    n = 20_000 if quick else 200_000
    lat_n = 300 if quick else 2000
    out: dict[str, Any] = {"machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                                       "platform": platform.platform()}, "quick": quick}
    with tempfile.TemporaryDirectory(prefix="god-bench-") as tmp:
        work = Path(tmp)
        if "throughput" in sections:
            base = tutorial_throughput(n if not quick else 5_000)
            out["throughput"] = {"tutorial": base}
            for key, journal, args in (("journal", True, ()), ("no_journal", False, ()),
                                       ("sync_full", True, ("--sync", "full")), ("keys", True, ())):
                r = ours_throughput(work, n, journal=journal, god_args=args, principals=key == "keys")
                r["ratio"] = r["tasks_per_s"] / base["tasks_per_s"]
                out["throughput"][key] = r
        if "latency" in sections:
            out["latency"] = {"tutorial": tutorial_latency(lat_n), "ours": ours_latency(work, lat_n),
                              "ours_journal": ours_latency(work, lat_n, journal=True),
                              "tutorial_2": tutorial_latency(lat_n, workers=2),
                              "ours_journal_2": ours_latency(work, lat_n, journal=True, processes=2),
                              "hops": bench_hops.traced(work, lat_n, journal=False),
                              "hops_journal": bench_hops.traced(work, lat_n, journal=True)}
        if "payloads" in sections:
            out["payloads"] = {}
            for size in (1024, 16 * 1024, 32 * 1024, 64 * 1024, 1024 * 1024):
                k = lat_n // 3 if size < 1024 * 1024 else lat_n // 10
                out["payloads"][str(size)] = {
                    "tutorial": tutorial_latency(k, payload=b"x" * size),
                    "ours": ours_latency(work, k, payload=b"x" * size, task="scripts.bench_tasks:nbytes"),
                }
        if "connect" in sections:
            k = 10 if quick else 50  # a stock manager takes 0.4 s to connect
            out["connect"] = {"tutorial": tutorial_connect(k), "ours": ours_connect(work, k)}
        if "consumers" in sections:
            out["consumers"] = {}
            for k in ((1, 8) if quick else (1, 4, 16, 64)):
                out["consumers"][str(k)] = {
                    "ours": ours_throughput(work, n // 2, journal=False, consumers=k, processes=1),
                    "tutorial": tutorial_throughput(n // 20, workers=k),
                }
            # The same worker processes, as fewer consumers with more processes each: the way
            # hosts with several cores run them (one consumer per host).
            out["layouts"] = {}
            for k, procs in (((2, 4),) if quick else ((1, 64), (4, 16), (16, 4))):
                out["layouts"][f"{k}x{procs}"] = ours_throughput(work, n // 2, journal=False, consumers=k,
                                                                 processes=procs)
        if "far" in sections:
            slow_n, tiny_n = (400, 10_000) if quick else (2000, 50_000)
            out["far"] = {
                "slow_near": ours_far(work, slow_n, "scripts.bench_tasks:wait_5ms", rtt_s=0.0),
                "slow_far": ours_far(work, slow_n, "scripts.bench_tasks:wait_5ms", rtt_s=0.04),
                "tiny_far": ours_far(work, tiny_n, "consumer.tasks:square", rtt_s=0.04),
                "producer_near": ours_far_producer(work, tiny_n * 2, rtt_s=0.0),
                "producer_far": ours_far_producer(work, tiny_n * 2, rtt_s=0.04),
            }
        if "io" in sections:  # tasks that wait: 2 processes of 50 at once, ideal 2,000 x 50 ms / 100 = 1 s
            io_n = 400 if quick else 2000
            out["io"] = {kind: ours_far(work, io_n, f"scripts.bench_tasks:{task}", rtt_s=0.0, concurrency=50)
                         for kind, task in (("threads", "wait_50ms"), ("coroutines", "await_50ms"))}
        if "queues" in sections:
            k = n // 2
            one, many = ours_queues(work, k, 1), ours_queues(work, k, 100)
            out["queues"] = {"one": one, "hundred": many, "ratio": many["tasks_per_s"] / one["tasks_per_s"]}
        if "growth" in sections:
            out["growth"] = ours_growth(work, (100_000, 1_000_000) if quick else (100_000, 1_000_000, 10_000_000))
        if "million" in sections:
            out["million"] = ours_million(work, 200_000 if quick else 1_000_000)
        for name, module in SECTION_MODULES.items():
            if name in sections:
                out[name] = module.section(work, quick)
        if "startup" in sections:
            out["startup"] = bench_startup.startup(work, 3 if quick else 7)
    return out


WHAT = 54  # characters of the table's first column


def table(r: dict[str, Any]) -> str:
    """The figures as a table for a person."""
    rows = [f"bench on {r['machine']['cpus']} CPUs, Python {r['machine']['python']}{' (quick)' if r['quick'] else ''}",
            f"{'what':{WHAT}} {'tasks/s':>10} {'p50 ms':>8} {'p99 ms':>8} {'god MB':>8} {'x tutorial':>10}"]

    def row(what: str, tps: float | None = None, p50: float | None = None, p99: float | None = None,
            mb: float | None = None, ratio: float | None = None) -> None:
        cells = [f"{tps:10,.0f}" if tps is not None else f"{'':10}", f"{p50:8.2f}" if p50 is not None else f"{'':8}",
                 f"{p99:8.2f}" if p99 is not None else f"{'':8}", f"{mb:8.0f}" if mb is not None else f"{'':8}",
                 f"{ratio:10.1f}" if ratio is not None else f"{'':10}"]
        rows.append(f"{what:{WHAT}} " + " ".join(cells))

    if "throughput" in r:
        t = r["throughput"]
        row(f"throughput, tutorial pattern ({t['tutorial']['tasks']:,} tasks)", t["tutorial"]["tasks_per_s"], ratio=1.0)
        for key, name in (("journal", "journal on"), ("no_journal", "--no-journal"), ("sync_full", "--sync full"),
                          ("keys", "--keys (principals)")):
            x = t[key]
            row(f"throughput, god, {name} ({x['tasks']:,} tasks)", x["tasks_per_s"], mb=x["god_peak_kb"] / 1024,
                ratio=x["ratio"])
        for key, name in (("journal", "journal on"), ("no_journal", "--no-journal"), ("sync_full", "--sync full")):
            x = t[key]
            row(f"  {name}, from the first result ({x['first_result_s']:.2f}s in)", x["steady_tasks_per_s"],
                ratio=x["steady_tasks_per_s"] / t["tutorial"]["tasks_per_s"])
        for key, name in (("journal", "journal on"), ("no_journal", "--no-journal"), ("keys", "--keys")):
            c = t[key]["cpu_us_per_task"]
            rows.append(f"  {name}, CPU per task: god {c['god']:.2f} us, consumers {c['consumers']:.2f} us, "
                        f"producer {c['producer']:.2f} us")
    if "latency" in r:
        for who, name in (("tutorial", "tutorial pattern"), ("ours", "god, --no-journal"), ("ours_journal", "god, journal on"),
                          ("tutorial_2", "tutorial pattern, 2 workers"),
                          ("ours_journal_2", "god, journal on, a consumer of 2 processes")):
            x = r["latency"][who]
            row(f"single-task latency, {name}", None, x["p50_ms"], x["p99_ms"])
        bench_hops.rows("--no-journal", r["latency"]["hops"], rows.append)
        bench_hops.rows("journal on", r["latency"]["hops_journal"], rows.append)
    if "payloads" in r:
        for size, x in r["payloads"].items():
            for who in ("tutorial", "ours"):
                y = x[who]
                row(f"round trip {int(size) // 1024} KiB, {'tutorial pattern' if who == 'tutorial' else 'god'}",
                    None, y["p50_ms"], y["p99_ms"])
    if "connect" in r:
        for who in ("tutorial", "ours"):
            x = r["connect"][who]
            row(f"connect + first call, {'stock manager' if who == 'tutorial' else 'GodClient'}", None,
                x["p50_ms"], x["p99_ms"])
    # god's peak: the best of every layout of consumers and processes
    god_peak = max([x["ours"]["tasks_per_s"] for x in r.get("consumers", {}).values()]
                   + [x["tasks_per_s"] for x in r.get("layouts", {}).values()], default=0.0)
    if "consumers" in r:
        for who, name in (("ours", "god"), ("tutorial", "tutorial pattern")):
            peak = god_peak if who == "ours" else max(x[who]["tasks_per_s"] for x in r["consumers"].values())
            for k, x in r["consumers"].items():
                y = x[who]
                row(f"{name}, {k} consumer process{'es' if k != '1' else ''} ({y['tasks_per_s'] / peak:.0%} of peak)",
                    y["tasks_per_s"],
                    mb=y["god_peak_kb"] / 1024 if "god_peak_kb" in y else None)
    if "layouts" in r:
        for layout, y in r["layouts"].items():
            k, procs = layout.split("x")
            row(f"god, {k} consumer{'s' if k != '1' else ''} of {procs} processes ({y['tasks_per_s'] / god_peak:.0%} of peak)",
                y["tasks_per_s"], mb=y["god_peak_kb"] / 1024)
    if "far" in r:
        f = r["far"]
        near, far = f["slow_near"], f["slow_far"]
        row(f"{near['tasks']:,} tasks of 5 ms, 1 consumer of 2 processes, near god", near["tasks_per_s"])
        row(f"  the same 40 ms from god ({far['seconds'] / near['seconds'] - 1:+.0%} time)", far["tasks_per_s"])
        row(f"{f['tiny_far']['tasks']:,} tiny tasks, that consumer 40 ms from god", f["tiny_far"]["tasks_per_s"])
        near, far = f["producer_near"], f["producer_far"]
        row(f"{near['tasks']:,} tiny tasks put, producer near god", near["tasks_per_s"])
        row(f"  the same put 40 ms from god", far["tasks_per_s"])
    if "io" in r:
        for kind, y in r["io"].items():
            ideal = y["tasks"] * 0.05 / (2 * y["concurrency"])
            row(f"{y['tasks']:,} waits of 50 ms, 2x{y['concurrency']} {kind}, {y['seconds'] / ideal:.2f}x ideal",
                y["tasks_per_s"])
    if "queues" in r:
        q = r["queues"]
        row(f"1 queue, 2 consumers ({q['one']['tasks']:,} tasks, Python API)", q["one"]["tasks_per_s"])
        row(f"100 queues, 2 consumers ({q['ratio']:.0%} of 1 queue)", q["hundred"]["tasks_per_s"])
    if "million" in r:
        x = r["million"]
        row(f"{x['tasks']:,} tasks queued ({x['bytes_per_task']:.0f} B/task)", x["tasks"] / x["put_seconds"],
            mb=x["god_peak_mb"])
    if "growth" in r:
        for mark, x in r["growth"].items():
            rows.append(f"after {int(mark):,} tasks through one god: god RSS {x['god_rss_mb']:.0f} MB, "
                        f"journal {x['journal_mb']:.1f} MB")
    for name, module in SECTION_MODULES.items():
        if name in r:
            module.rows(r[name], row, rows.append)
    if "startup" in r:
        bench_startup.rows(r["startup"], row, rows.append)
    return "\n".join(rows)


SECTIONS = ("throughput", "latency", "payloads", "connect", "consumers", "queues", "far", "io", "million", "growth",
            "executor", "graphs", "output", "values", "startup")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="smaller counts: under a minute")
    ap.add_argument("--json", metavar="PATH", help="also write the figures as one JSON object to PATH ('-': stdout)")
    ap.add_argument("--sections", default=",".join(SECTIONS), help=f"comma-separated, of: {', '.join(SECTIONS)}")
    args = ap.parse_args()
    sections = set(args.sections.split(","))
    if sections - set(SECTIONS):
        ap.error(f"unknown sections: {', '.join(sorted(sections - set(SECTIONS)))}")
    result = run(args.quick, sections)
    print(table(result))
    if args.json == "-":
        print(json.dumps(result))
    elif args.json:
        Path(args.json).write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
