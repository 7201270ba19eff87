"""Task functions the integration tests hand to real consumers (``--task tests.support.tasks:NAME``)."""

from __future__ import annotations

import asyncio
import ctypes
import os
import sys
import time
from pathlib import Path
from typing import Any

import producer
from consumer.tasks import Retry, square


def slow(payload: dict[str, Any]) -> str:
    """Square payload['n'] after payload['s'] seconds: a task long enough to be caught running."""
    os.write(2, f"slow task {payload['n']} started\n".encode())  # (file descriptor 2: the consumer's log, not captured)
    time.sleep(payload["s"])
    return square(payload["n"])


def hold_gil(payload: dict[str, Any]) -> str:
    """Square payload['n'] after payload['s'] seconds in C code that holds the GIL (libc's
    usleep through ctypes.PyDLL, which does not let the GIL go): no thread of the worker runs."""
    ctypes.PyDLL(None).usleep(int(payload["s"] * 1e6))
    return square(payload["n"])


def fail_on_13(n: int) -> str:
    """Square n, but raise for 13."""
    if n == 13:
        raise ValueError("13 is unlucky")
    return square(n)


NOT_CALLABLE = 42


def unpicklable_on_7(n: int) -> object:
    """Square n, but return something pickle cannot carry for 7."""
    if n == 7:
        return lambda: n
    return square(n)


def exit_on_13(n: int) -> str:
    """Square n, but end the worker process outright for 13 (a poison task)."""
    if n == 13:
        os._exit(3)
    return square(n)


def exit_on_tens(n: int) -> str:
    """Square n, but end the worker process outright for 0, 10, 20, ... (poison among good tasks)."""
    if n % 10 == 0:
        os._exit(3)
    return square(n)


def hang_on_13(n: int) -> str:
    """Square n, but hang for 13 (a stuck task)."""
    if n == 13:
        time.sleep(600)
    return square(n)


async def await_hang_on_13(n: int) -> str:
    """Square n, but wait forever (awaiting) for 13: a coroutine the timeout can cancel."""
    if n == 13:
        await asyncio.sleep(600)
    return square(n)


async def block_on_13(n: int) -> str:
    """Square n, but block its event loop for 13 (a coroutine that never awaits)."""
    if n == 13:
        time.sleep(600)
    return square(n)


async def a_generator(payload: Any) -> Any:
    """Not a task: an async generator gives many values."""
    yield payload


def span(payload: dict[str, Any]) -> list[float]:
    """Wait payload['s'] seconds; returns when it ran (monotonic start and end, system-wide)."""
    t0 = time.monotonic()
    time.sleep(payload["s"])
    return [t0, time.monotonic()]


async def await_span(payload: dict[str, Any]) -> list[float]:
    """span as a coroutine (asyncio.sleep)."""
    t0 = time.monotonic()
    await asyncio.sleep(payload["s"])
    return [t0, time.monotonic()]


def nap(n: int) -> str:
    """Square n after a few milliseconds: long enough that kills land while tasks run."""
    time.sleep(0.004)
    return square(n)


def echo(payload: Any) -> Any:
    """Return the payload as it came."""
    return payload


def links(n: int) -> list[int]:
    """A crawler's page: the links found on page n (a binary tree of pages 0..30)."""
    return [c for c in (2 * n + 1, 2 * n + 2) if c <= 30]


def flaky(payload: dict[str, Any]) -> str:
    """Fail with ConnectionError the first payload['fails'] times it runs for payload['n'] (it
    counts in a file under payload['dir'], so every worker and consumer sees the same count)."""
    marks = Path(payload["dir"]) / f"tries-{payload['n']}"
    with open(marks, "a") as f:
        f.write(f"{time.time()}\n")
    tries = len(marks.read_text().splitlines())
    if tries <= payload["fails"]:
        raise ConnectionError(f"try {tries} of {payload['n']} failed")
    return square(payload["n"])


def rate_limited(payload: dict[str, Any]) -> str:
    """Ask to be tried again in payload['after'] seconds the first time it runs for payload['n']."""
    marks = Path(payload["dir"]) / f"tries-{payload['n']}"
    first = not marks.exists()
    marks.write_text("tried\n")
    if first:
        raise Retry(after=payload["after"])
    return square(payload["n"])


async def await_until_cancelled(n: int) -> str:
    """Square n, but for 13 wait until cancelled, and say so (a coroutine an operator cancels)."""
    if n == 13:
        try:
            await asyncio.sleep(600)
        except asyncio.CancelledError:
            os.write(2, f"task {n} cancelled\n".encode())  # (the consumer's log: tests wait for it there)
            raise
    return square(n)


def pid(n: int) -> int:
    """The worker process that ran task n."""
    return os.getpid()


_LEAKED: list[bytes] = []


def leak(n: int) -> int:
    """Keep 20 MB for good (task code that leaks), and say which worker process ran task n."""
    _LEAKED.append(b"x" * (20 * 2**20))  # pages written, so resident
    return os.getpid()


class Held:
    """An object a test holds a weak reference to: what a call, its arguments or its result keep."""

    def __init__(self, n: int = 0) -> None:
        self.items = list(range(n))


def held_size(h: Held) -> int:
    return len(h.items)


def make_held(n: int) -> Held:
    return Held(n)


def load_model(name: str, log: str) -> None:
    """An executor's initializer: "loads a model" for the worker's calls, and says so in the file log."""
    producer.worker_state.model = name
    with open(log, "a") as f:
        f.write(f"{os.getpid()}\n")


def broken_model(log: str) -> None:
    with open(log, "a") as f:
        f.write(f"{os.getpid()}\n")
    raise ValueError("no model here")


def model_of(x: int) -> tuple[int, str | None]:
    """(this worker's pid, the model its initializer loaded)."""
    return os.getpid(), getattr(producer.worker_state, "model", None)


async def model_of_async(x: int) -> tuple[int, str | None]:
    await asyncio.sleep(0)
    return os.getpid(), getattr(producer.worker_state, "model", None)


def setup_worker() -> None:
    """A consumer's --init: sets up what its tasks use."""
    producer.worker_state.model = "from --init"


def broken_setup() -> None:
    raise OSError("the database is down")


def with_model(x: int) -> str:
    """A queue task that uses what --init set up."""
    return f"{x} with {getattr(producer.worker_state, 'model', None)}"


def speak(n: int) -> int:
    """Write to stdout and stderr, log a record and warn: every way a task's output comes home."""
    import logging
    import warnings

    print(f"out {n} a")
    print(f"err {n}", file=sys.stderr)
    logging.getLogger("speaker").warning("log %s", n)
    warnings.warn(f"warn {n}", stacklevel=1)
    sys.stdout.write(f"out {n} b, in two")
    sys.stdout.write(" writes\n")
    return n


def speak_in_turns(n: int) -> int:
    """Five lines with a pause between: tasks beside it in the worker write in between."""
    for i in range(5):
        print(f"{n}:{i}")
        time.sleep(0.01)
    return n


async def speak_in_turns_async(n: int) -> int:
    """The same as a coroutine: coroutines beside it write in between."""
    for i in range(5):
        print(f"{n}:{i}")
        await asyncio.sleep(0.01)
    return n


def speak_until(gate: str) -> str:
    """A line, then wait (up to 30 s) for the file gate, then another: a long task whose first line
    comes home while it runs."""
    print("started", flush=True)
    deadline = time.monotonic() + 30
    while not os.path.exists(gate) and time.monotonic() < deadline:
        time.sleep(0.02)
    print("ended")
    return gate


def chatter(n: int) -> int:
    """n lines as fast as they go: a flood."""
    for i in range(n):
        print(f"line {i}")
    return n


def report_until(gate: str) -> str:
    """Report 1 of 4, wait (up to 30 s) for the file gate, report 3 of 4 and end."""
    producer.report(1, 4)
    deadline = time.monotonic() + 30
    while not os.path.exists(gate) and time.monotonic() < deadline:
        time.sleep(0.02)
    producer.report(3, 4)
    return gate


def megabyte(i: int) -> str:
    """A large result: 1 MiB (a str: its results line is a megabyte too, not five of bytes' repr)."""
    return chr(97 + i % 26) * (1 << 20)


def digest_of(data: bytes, i: int) -> tuple[str, int]:
    """The sha256 of a (large) argument, and i: what a call that reads a shared value gives."""
    import hashlib

    return hashlib.sha256(data).hexdigest(), i


def noise(size: int, seed: int) -> bytes:
    """A large result: size bytes of seed's noise (``random.Random(seed).randbytes``)."""
    import random

    return random.Random(seed).randbytes(size)


def noise_in(size: int, seed: int) -> dict[str, Any]:
    """A large value inside a result of the program's own shape: a dict with noise and its size."""
    return {"size": size, "data": noise(size, seed), "seed": seed}


def gpus_seen(hold: float) -> str | None:
    """The GPUs this task sees (CUDA_VISIBLE_DEVICES), after running for hold seconds."""
    import os
    import time

    time.sleep(hold)
    return os.environ.get("CUDA_VISIBLE_DEVICES")
