"""scripts/bench.py's ``startup`` section: how long each command takes from its start to its
first byte on the wire to god (and ``--help`` to its end), the imports a person waits for.

The "god" here is a socket that only notes when a connection comes: the time from starting a
command to that moment is the command's startup, whatever god would answer.
"""

from __future__ import annotations

import os
import socket
import statistics
import subprocess
import time
from pathlib import Path
from typing import Any

from bench_harness import KEY, PY, REPO

#: (the row's name, the command's arguments): each connects to god first thing.
CONNECTING = (
    ("python -m god status", ("god", "status")),
    ("python -m producer --rounds 1", ("producer", "--rounds", "1", "--per-round", "1")),
    ("python -m consumer", ("consumer", "--processes", "1")),
)
HELP = (("python -m producer --help", ("producer", "--help")), ("python -m god --help", ("god", "--help")))


def _first_byte_s(args: tuple[str, ...], env: dict[str, str], server: socket.socket) -> float:
    """Seconds from starting ``python -m args`` to its first connection to the server."""
    t0 = time.perf_counter()
    p = subprocess.Popen([PY, "-m", *args], cwd=REPO, env=env, stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL)
    try:
        conn, _ = server.accept()
        seconds = time.perf_counter() - t0
        conn.close()
    finally:
        p.kill()
        p.wait()
    return seconds


def startup(work: Path, runs: int = 5) -> dict[str, Any]:
    """Medians over runs of each command's time to its first byte to god, and of --help's."""
    server = socket.create_server(("127.0.0.1", 0))
    server.settimeout(30)
    # Bytecode written and kept, as pip does for an installed package (an environment that sets
    # PYTHONDONTWRITEBYTECODE compiles every module at every start: 30 ms of god status here).
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env = {**env, "GOD_AUTHKEY": KEY, "GOD_ADDRESS": f"127.0.0.1:{server.getsockname()[1]}",
           "XDG_STATE_HOME": str(work / "state"), "PYTHONPATH": str(REPO)}
    out: dict[str, Any] = {}
    try:
        for name, args in CONNECTING:
            _first_byte_s(args, env, server)  # files in the page cache, bytecode written: as on a host that ran it before
            out[name] = {"first_byte_ms": statistics.median(_first_byte_s(args, env, server) for _ in range(runs)) * 1e3}
    finally:
        server.close()
    for name, args in HELP:
        times = []
        for i in range(runs + 1):
            t0 = time.perf_counter()
            subprocess.run([PY, "-m", *args], cwd=REPO, env=env, stdout=subprocess.DEVNULL, check=True)
            if i:
                times.append(time.perf_counter() - t0)
        out[name] = {"total_ms": statistics.median(times) * 1e3}
    t0 = time.perf_counter()
    for _ in range(runs):
        subprocess.run([PY, "-c", "pass"], env=env, check=True)
    out["python -c pass"] = {"total_ms": (time.perf_counter() - t0) / runs * 1e3}
    return out


def rows(r: dict[str, Any], row: Any, text: Any) -> None:
    """The section's rows in bench.py's table."""
    for name, x in r.items():
        if "first_byte_ms" in x:
            text(f"startup: {name}, to its first byte to god: {x['first_byte_ms']:.0f} ms")
        else:
            text(f"startup: {name}, to its end: {x['total_ms']:.0f} ms")
