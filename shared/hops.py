"""Timestamps along a task's path, for scripts/bench.py's latency section: where a single task's
time goes, hop by hop (a producer sends, god reads, god answers, a worker reads, ...).

Off unless the environment names a directory in ``GOD_TRACE_HOPS`` when a process starts
(or ``start`` is called): then each process appends ``MONOTONIC_NS ROLE EVENT`` lines to a
file of its own there, with one write each, so a process killed loses none. CLOCK_MONOTONIC
is one clock for every process of a machine, so the files merge into one timeline. Each call
site is ``if hops.ON: hops.hop(...)``: a process that does not trace pays a global's test.
"""

from __future__ import annotations

import os
import time

ENV = "GOD_TRACE_HOPS"
ON = False
_fd = -1
_role = "?"


def start(directory: str, role: str) -> None:
    """Trace this process's hops into a file of its own in directory."""
    global ON, _fd, _role
    _role = role
    _fd = os.open(os.path.join(directory, f"{role}-{os.getpid()}.hops"), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    ON = True


def stop() -> None:
    """Trace no more (and close the file)."""
    global ON, _fd
    if ON:
        ON = False
        os.close(_fd)
        _fd = -1


def start_from_environment(role: str) -> None:
    """Trace this process's hops if its environment asks for it (each role's start calls this)."""
    directory = os.environ.get(ENV)
    if directory and not ON:
        start(directory, role)


def hop(event: str) -> None:
    """Note that event happens now."""
    os.write(_fd, f"{time.monotonic_ns()} {_role} {event}\n".encode())


def read(directory: str) -> list[tuple[int, str, str]]:
    """Every hop noted in directory, in time order: (monotonic ns, role, event)."""
    out = []
    for name in os.listdir(directory):
        if name.endswith(".hops"):
            with open(os.path.join(directory, name)) as f:
                for line in f:
                    ns, role, event = line.rstrip("\n").split(" ", 2)
                    out.append((int(ns), role, event))
    out.sort()
    return out
