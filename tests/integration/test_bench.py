"""The benchmark runs and reports; speed itself is never asserted here (bench.py reports it)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.helpers import REPO

pytestmark = pytest.mark.slow


@pytest.mark.timeout(300)
def test_the_quick_benchmark_runs_and_prints_its_table(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    p = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "bench.py"), "--quick", "--sections", "throughput,connect,io",
         "--json", str(out)],
        cwd=REPO, capture_output=True, text=True, timeout=280,
    )
    assert p.returncode == 0, p.stdout + p.stderr
    for row in ("throughput, tutorial pattern", "throughput, god, journal on", "throughput, god, --no-journal",
                "throughput, god, --sync full",
                "from the first result", "connect + first call, stock manager", "connect + first call, GodClient",
                "x tutorial", "waits of 50 ms, 2x50 threads", "waits of 50 ms, 2x50 coroutines"):
        assert row in p.stdout, p.stdout
    figures = json.loads(out.read_text())
    throughput = figures["throughput"]
    assert throughput["journal"]["tasks"] == throughput["no_journal"]["tasks"] == 20_000
    for k in ("journal", "no_journal"):
        x = throughput[k]
        assert x["tasks_per_s"] > 0 and x["ratio"] > 0 and x["steady_tasks_per_s"] > 0, x
        assert 0 < x["first_result_s"] < x["seconds"], x
    assert figures["connect"]["ours"]["n"] == 10
    assert all(figures["io"][kind]["tasks"] == 400 for kind in ("threads", "coroutines"))
