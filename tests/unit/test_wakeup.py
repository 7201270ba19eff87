"""A stop signal wakes the loop that waits (shared/wakeup.py): god's for results, a consumer's
for its workers, rather than leaving it to see the flag when its wait runs out."""

from __future__ import annotations

import os
import select
import signal
import threading
from collections.abc import Iterator

import pytest

from shared.wakeup import Wakeup

pytestmark = pytest.mark.timeout(10)


@pytest.fixture
def handled() -> Iterator[list[int]]:
    """SIGUSR2 handled as god and consumers handle SIGTERM: the handler only notes it."""
    seen: list[int] = []
    before = signal.signal(signal.SIGUSR2, lambda signum, frame: seen.append(signum))
    try:
        yield seen
    finally:
        signal.signal(signal.SIGUSR2, before)


def test_a_signal_makes_the_socket_readable_until_drained(handled: list[int]) -> None:
    wakeup = Wakeup()
    try:
        assert select.select([wakeup.readable], [], [], 0)[0] == []
        os.kill(os.getpid(), signal.SIGUSR2)
        assert handled == [signal.SIGUSR2]
        assert select.select([wakeup.readable], [], [], 5)[0] == [wakeup.readable]  # a waiter wakes
        wakeup.drain()
        assert select.select([wakeup.readable], [], [], 0)[0] == []
    finally:
        wakeup.close()
    assert signal.set_wakeup_fd(-1) == -1  # close gave the interpreter its former wakeup back


def test_a_signal_calls_the_waker_from_its_thread_which_ends_with_it(handled: list[int]) -> None:
    woken = threading.Event()
    wakeup = Wakeup()
    try:
        wakeup.call_on_signal(woken.set)
        assert not woken.is_set()
        os.kill(os.getpid(), signal.SIGUSR2)
        assert woken.wait(5)
    finally:
        wakeup.close()
    for t in threading.enumerate():
        if t.name == "signal-wakeup":
            t.join(5)
            assert not t.is_alive(), "the watching thread outlived its Wakeup"
