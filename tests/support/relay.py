"""A TCP relay on loopback that tests put between clients and god, to drop their connections at will."""

from __future__ import annotations

import queue
import socket
import threading
import time

BUFFER = 65536  # bytes per read


class Relay:
    """Forwards 127.0.0.1:port to a target that can change; ``cut`` drops every open connection.

    Clients that point at the relay keep one address while god restarts on another port,
    and see a dropped link exactly as a cut cable or a reset by a firewall would show it.
    """

    def __init__(self, target: tuple[str, int], *, record: bool = False, delay_s: float = 0.0) -> None:
        """Args:
            delay_s: seconds each byte is held on its way, either way (a link far away).
        """
        self.target = target
        self.delay_s = delay_s
        self.cuts = 0
        self.record = record
        self.seen = bytearray()  # every byte relayed either way, when recording
        self._lock = threading.Lock()
        self._pairs: list[tuple[socket.socket, socket.socket]] = []
        self._server = socket.create_server(("127.0.0.1", 0))
        self.port = int(self._server.getsockname()[1])
        self._closed = False
        self._thread = threading.Thread(target=self._accept_loop, name="relay", daemon=True)
        self._thread.start()

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def _accept_loop(self) -> None:
        while not self._closed:
            try:
                client, _ = self._server.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(self.target, timeout=2)
                upstream.settimeout(None)
            except OSError:
                client.close()  # god is down: the client sees the connection end, and retries
                continue
            with self._lock:
                self._pairs.append((client, upstream))
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        late: queue.Queue[tuple[float, bytes]] | None = None
        if self.delay_s:  # bytes are held, not slowed: a sender thread passes each on when due
            late = queue.Queue()
            threading.Thread(target=self._send_late, args=(late, dst), daemon=True).start()
        try:
            while data := src.recv(BUFFER):
                if self.record:
                    with self._lock:
                        self.seen += data
                if late is not None:
                    late.put((time.monotonic() + self.delay_s, data))
                else:
                    dst.sendall(data)
        except OSError:
            pass
        finally:
            if late is not None:
                late.put((0.0, b""))
            else:
                self._close_pair(src)

    def _send_late(self, late: queue.Queue[tuple[float, bytes]], dst: socket.socket) -> None:
        try:
            while True:
                due, data = late.get()
                if not data:
                    break
                time.sleep(max(0.0, due - time.monotonic()))
                dst.sendall(data)
        except OSError:
            pass
        finally:
            self._close_pair(dst)

    def _close_pair(self, sock: socket.socket) -> None:
        with self._lock:
            pairs = [p for p in self._pairs if sock in p]
            self._pairs = [p for p in self._pairs if sock not in p]
        for pair in pairs:
            for s in pair:
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                s.close()

    def cut(self) -> int:
        """Drop every connection open now; returns how many."""
        with self._lock:
            pairs = list(self._pairs)
        for client, _ in pairs:
            self._close_pair(client)
        self.cuts += 1
        return len(pairs)

    def close(self) -> None:
        self._closed = True
        self._server.close()
        self.cut()
