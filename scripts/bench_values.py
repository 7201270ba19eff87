"""scripts/bench.py's ``values`` section: large arguments sent once (shared/values.py) against
sending them with every call (``Executor(large_values=None)``), in the same run.

- shared: 50 calls sharing one 64 MiB argument, two consumers: seconds, bytes the program
  sent god, bytes god sent the host (both consumers run here: one host).
- own: 100 calls each with its own 2 MiB argument (values used once must not be taxed).
- results: 100 calls each returning 2 MiB (sent apart by the worker, fetched once by the
  program: consumer/callers.py, producer/mail.py).
- held: god's RSS while it holds 1 GiB of values (they are on disk, not in memory).
"""

from __future__ import annotations

import hashlib
import os
import time
from pathlib import Path
from typing import Any

from bench_executor import _rss_mb
from bench_harness import god
from producer import Executor

MIB = 1 << 20


def digest(data: bytes, i: int) -> int:
    """A call that takes a large argument and does next to nothing with it (travels by value):
    the figures are the travel's."""
    return len(data) + i


def noise(i: int) -> bytes:
    """A call that returns a large value (2 MiB of noise)."""
    return os.urandom(2 << 20)


def _results(g: Any, n: int) -> dict[str, Any]:
    before = g.stats()
    with Executor(settings=g.settings) as ex:
        ex.submit(abs, 0).result()
        t0 = time.perf_counter()
        assert sum(len(v) for v in ex.map(noise, range(n))) == n * 2 * MIB
        seconds = time.perf_counter() - t0
    after = g.stats()
    return {"calls": n, "seconds": seconds, "in_mb": (after["values_in_bytes"] - before["values_in_bytes"]) / MIB,
            "out_mb": (after["values_out_bytes"] - before["values_out_bytes"]) / MIB}


def _run(g: Any, large: int | None, args: list[bytes]) -> dict[str, Any]:
    before = g.stats()
    with Executor(settings=g.settings, large_values=large) as ex:
        ex.submit(abs, 0).result()
        t0 = time.perf_counter()
        assert len(list(ex.map(digest, args, range(len(args))))) == len(args)
        seconds = time.perf_counter() - t0
    after = g.stats()
    return {"seconds": seconds, "sent_mb": (after["values_in_bytes"] - before["values_in_bytes"]) / MIB,
            "host_got_mb": (after["values_out_bytes"] - before["values_out_bytes"]) / MIB}


def section(work: Path, quick: bool) -> dict[str, Any]:
    """The values section's figures."""
    out: dict[str, Any] = {}
    with god(work, "--no-journal", "--max-payload", str(200 * MIB), env={"XDG_CACHE_HOME": str(work / "cache")}) as g:
        for _ in range(2):
            g.spawn("consumer", "--processes", "1")
        g.wait_consumers(2)
        shared = os.urandom(64 * MIB)
        n = 20 if quick else 50
        out["shared"] = {"calls": n, "once": _run(g, 1 * MIB, [shared] * n),
                         "by_value": _run(g, None, [shared] * n)}
        own = [os.urandom(2 * MIB) for _ in range(100)]
        out["own"] = {"calls": len(own), "once": _run(g, 1 * MIB, own), "by_value": _run(g, None, own)}
        out["results"] = _results(g, 100)
        rss0 = _rss_mb(g.proc.pid)
        held = [os.urandom(64 * MIB) for _ in range(4 if quick else 16)]
        with Executor(settings=g.settings) as ex:  # sent, and held while this program is connected
            ex._sender.values.send({hashlib.sha256(b).hexdigest(): b for b in held})
            out["held"] = {"mb": len(held) * 64, "god_rss_mb_before": rss0, "god_rss_mb": _rss_mb(g.proc.pid),
                           "values_mb": g.stats()["values_bytes"] / MIB}
    return out


def rows(r: dict[str, Any], row: Any, text: Any) -> None:
    """The section's rows in bench.py's table."""
    for key, what in (("shared", "calls sharing one 64 MiB argument"), ("own", "calls each with its own 2 MiB")):
        x = r[key]
        for way, how in (("once", "sent once"), ("by_value", "with every call (large_values=None)")):
            y = x[way]
            row(f"values: {x['calls']} {what}, {how}", x["calls"] / y["seconds"])
            text(f"    {y['seconds']:.2f} s; values the program sent god {y['sent_mb']:.0f} MiB, values the host "
                 f"fetched {y['host_got_mb']:.0f} MiB" + ("" if way == "once" else " (the arguments went in the calls)"))
    x = r["results"]
    row(f"values: {x['calls']} calls each returning 2 MiB", x["calls"] / x["seconds"])
    text(f"    {x['seconds']:.2f} s; the consumers sent god {x['in_mb']:.0f} MiB apart, the program fetched "
         f"{x['out_mb']:.0f} MiB")
    h = r["held"]
    text(f"values: god holding {h['values_mb']:.0f} MiB of values: RSS {h['god_rss_mb']:.0f} MB "
         f"(from {h['god_rss_mb_before']:.0f})")
