"""A stop signal that wakes a waiting loop at once, not at its next tick.

A handler only flips a flag (nothing else is safe in it), and a loop that waits (god's for
results, a consumer's for its workers) saw the flag when its wait ran out: a tenth of a second on
average, at every stop. ``signal.set_wakeup_fd`` makes the interpreter write a byte to a socket
the moment a handled signal arrives; a loop waits on that socket too (a consumer's
``multiprocessing.connection.wait``), or a thread turns it into a call (god's results event).
"""

from __future__ import annotations

import select
import signal
import socket
import threading
from collections.abc import Callable


class Wakeup:
    """``readable`` is readable when a handled signal arrived since the last ``drain``; made in
    the main thread, as signal handlers are."""

    def __init__(self) -> None:
        self.readable, self._write = socket.socketpair()
        self.readable.setblocking(False)
        self._write.setblocking(False)
        self._before = signal.set_wakeup_fd(self._write.fileno(), warn_on_full_buffer=False)

    def drain(self) -> None:
        """Forget the signals seen so far (the handler keeps what they meant)."""
        try:
            while self.readable.recv(512):
                pass
        except (BlockingIOError, OSError):
            pass

    def call_on_signal(self, wake: Callable[[], None]) -> None:
        """Call wake from a thread of its own after each signal (for a loop that waits on an
        event, not a file)."""
        def watch() -> None:
            try:
                while select.select([self.readable], [], [])[0] and self.readable.recv(512):
                    self.drain()
                    wake()
            except (OSError, ValueError):
                pass  # closed: god stops

        threading.Thread(target=watch, name="signal-wakeup", daemon=True).start()

    def close(self) -> None:
        signal.set_wakeup_fd(self._before)
        self._write.close()  # a watching thread reads the end of the stream, and ends
        self.readable.close()
