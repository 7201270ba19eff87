"""scripts/bench.py's ``output`` section: a task's output coming home (consumer/output.py) and
what the Executor holds over a map of large results.

- lines: tasks that print 10 lines each, mapped by an Executor that counts the lines it is
  shown; lines per second at the program, and god's CPU per line (god's CPU over the same
  map of a function that prints nothing, taken away).
- capture: a tiny task's throughput (``map``) and latency (``submit().result()``) with the
  consumers' ``--capture`` (the default) against ``--no-capture``, in turns, medians.
- large results: the program's RSS over a map of calls that each return 1 MiB.
"""

from __future__ import annotations

import statistics
import threading
import time
from pathlib import Path
from typing import Any

from bench_harness import _children, _percentiles, cpu_s, god
from bench_executor import _rss_mb
from consumer.tasks import square
from producer import Executor


def chatty(n: int) -> int:
    """Ten lines, then its number (travels by value: scripts/ is no package)."""
    for i in range(10):
        print(f"task {n} says line {i} of 10")
    return n


def quiet(n: int) -> int:
    """The same call without a line."""
    return n


def megabyte(i: int) -> bytes:
    """A large result: 1 MiB."""
    return bytes([i % 256]) * (1 << 20)


class Counter:
    """An ``output=`` file that counts the lines it is given."""

    def __init__(self) -> None:
        self.lines = 0
        self._lock = threading.Lock()

    def write(self, text: str) -> int:
        with self._lock:
            self.lines += text.count("\n")
        return len(text)

    def flush(self) -> None:
        pass


def lines(work: Path, tasks: int) -> dict[str, Any]:
    """``tasks`` calls printing 10 lines each, to 2 consumers of one process."""
    with god(work, "--no-journal") as g:
        cons = [g.spawn("consumer", "--processes", "1") for _ in range(2)]
        g.wait_consumers(2)
        pids = [p.pid for p in cons] + [c for p in cons for c in _children(p.pid)]
        out: dict[str, Any] = {"tasks": tasks}
        counter = Counter()
        with Executor(settings=g.settings, output=counter) as ex:
            list(ex.map(quiet, range(100)))  # warm: the functions are cached on the consumers
            list(ex.map(chatty, range(100)))
            for fn in (quiet, chatty):
                before = counter.lines
                god_cpu, cons_cpu, own_cpu = cpu_s([g.proc.pid]), cpu_s(pids), time.process_time()
                t0 = time.perf_counter()
                assert sum(1 for _ in ex.map(fn, range(tasks))) == tasks
                seconds = time.perf_counter() - t0
                out[fn.__name__] = {"seconds": seconds, "lines": counter.lines - before,
                                    "god_cpu_s": cpu_s([g.proc.pid]) - god_cpu,
                                    "consumers_cpu_s": cpu_s(pids) - cons_cpu,
                                    "program_cpu_s": time.process_time() - own_cpu}
    c, q = out["chatty"], out["quiet"]
    n = max(c["lines"], 1)
    out["lines_per_s"] = c["lines"] / c["seconds"]
    out["cpu_us_per_line"] = {k: (c[f"{k}_cpu_s"] - q[f"{k}_cpu_s"]) / n * 1e6
                              for k in ("god", "consumers", "program")}
    return out


def capture(work: Path, n: int, lat_n: int, turns: int) -> dict[str, Any]:
    """Tiny tasks with --capture against --no-capture, ``turns`` times each, in turns."""
    got: dict[str, list[dict[str, float]]] = {"--capture": [], "--no-capture": []}
    for _ in range(turns):
        for mode in got:
            with god(work, "--no-journal") as g:
                for _ in range(2):
                    g.spawn("consumer", "--processes", "1", mode)
                g.wait_consumers(2)
                with Executor(settings=g.settings) as ex:
                    list(ex.map(square, range(1000)))
                    t0 = time.perf_counter()
                    assert sum(1 for _ in ex.map(square, range(n))) == n
                    tps = n / (time.perf_counter() - t0)
                    samples = []
                    for _ in range(lat_n):
                        t1 = time.perf_counter()
                        ex.submit(square, 7).result()
                        samples.append(time.perf_counter() - t1)
                got[mode].append({"tasks_per_s": tps, **_percentiles(samples)})
    out: dict[str, Any] = {"tasks": n, "turns": turns}
    for mode, runs in got.items():
        out[mode] = {k: statistics.median(r[k] for r in runs) for k in ("tasks_per_s", "p50_ms", "p99_ms")}
    on, off = out["--capture"], out["--no-capture"]
    out["throughput_ratio"] = on["tasks_per_s"] / off["tasks_per_s"]
    out["p50_ratio"] = on["p50_ms"] / off["p50_ms"]
    return out


def large_results(work: Path, marks: tuple[int, ...]) -> dict[str, Any]:
    """A map of calls that return 1 MiB each: the program's RSS at each mark of results taken."""
    out: dict[str, Any] = {}
    with god(work, "--no-journal") as g:
        for _ in range(2):
            g.spawn("consumer", "--processes", "1")
        g.wait_consumers(2)
        with Executor(settings=g.settings) as ex:
            t0, done = time.perf_counter(), 0
            start_mb = _rss_mb()
            results = ex.map(megabyte, range(marks[-1]))
            for mark in marks:
                for value in results:
                    done += 1
                    assert len(value) == 1 << 20
                    if done == mark:
                        break
                out[str(mark)] = {"seconds": time.perf_counter() - t0, "program_rss_mb": _rss_mb(),
                                  "god_rss_mb": _rss_mb(g.proc.pid)}
            out["start_rss_mb"] = start_mb
    return out


def section(work: Path, quick: bool) -> dict[str, Any]:
    """The output section's figures."""
    return {"lines": lines(work, 1000),
            "capture": capture(work, 20_000 if quick else 100_000, 200 if quick else 1000, 3),
            "large_results": large_results(work, (1000, 3000) if quick else (1000, 10_000))}


def rows(r: dict[str, Any], row: Any, text: Any) -> None:
    """The section's rows in bench.py's table."""
    li = r["lines"]
    row(f"output: {li['tasks']:,} tasks printing 10 lines each (lines/s at the program)", li["lines_per_s"])
    cpu = li["cpu_us_per_line"]
    text(f"    CPU per line: god {cpu['god']:.2f} us, consumers {cpu['consumers']:.2f} us, program "
         f"{cpu['program']:.2f} us ({li['chatty']['lines']:,} lines shown)")
    c = r["capture"]
    for mode in ("--capture", "--no-capture"):
        row(f"list(map(f)) of a tiny task, consumers {mode} (median of {c['turns']})", c[mode]["tasks_per_s"],
            p50=c[mode]["p50_ms"], p99=c[mode]["p99_ms"])
    text(f"    capture on against off: throughput {c['throughput_ratio']:.3f}, latency p50 {c['p50_ratio']:.3f}")
    big = r["large_results"]
    for mark, m in big.items():
        if mark.isdigit():
            text(f"map of calls returning 1 MiB, {int(mark):,} results in {m['seconds']:.0f} s: program RSS "
                 f"{m['program_rss_mb']:.0f} MB (from {big['start_rss_mb']:.0f}), god RSS {m['god_rss_mb']:.0f} MB")
