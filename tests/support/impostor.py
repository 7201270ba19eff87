"""An impostor: what a client reaches in god's place (a wrong GOD_ADDRESS, a spoofed name,
anyone on the path), trying to turn the client's key into a session on god of its own.

    python -m tests.support.impostor PORT GOD_HOST GOD_PORT CERT KEY

It listens on PORT and, for each client, opens a connection to god (over TLS when god asks
for it, checking nothing, as anyone may) and passes the authkey handshake's frames along
both ways: god's challenge to the client, the client's answer to god. A client that speaks
TLS gets a TLS server with the impostor's own certificate (CERT, KEY). The moment god
welcomes an answer, the impostor holds an authenticated session (it could ask god anything
next): it prints "SESSION". It prints "NO SESSION (why)" for a client it got nothing from. Nothing here uses god's code: it is an outsider with the wire format.
"""

from __future__ import annotations

import socket
import ssl
import struct
import sys
import threading

_HEADER = struct.Struct("!i")
WELCOME = b"#WELCOME#"


def _recv_exact(sock: socket.socket, n: int) -> bytes:
    buf = b""
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise EOFError("closed")
        buf += chunk
    return buf


def _frame(sock: socket.socket) -> bytes:
    (n,) = _HEADER.unpack(_recv_exact(sock, 4))
    return _recv_exact(sock, n)


def _send(sock: socket.socket, body: bytes) -> None:
    sock.sendall(_HEADER.pack(len(body)) + body)


def _to_god(host: str, port: int) -> socket.socket:
    """A connection to god: plain if god speaks first and not to say it wants TLS; else TLS,
    checking nothing (god asks no certificate of its clients: anyone may speak TLS to it)."""
    sock = socket.create_connection((host, port), timeout=10)
    sock.settimeout(1.5)  # god speaks first to a plain peer; a TLS god waits for a ClientHello
    try:
        said = sock.recv(64, socket.MSG_PEEK)
    except TimeoutError:
        said = b""
    sock.settimeout(10)
    if said and b"#TLS-REQUIRED#" not in said:
        return sock
    if said:
        sock.close()
        sock = socket.create_connection((host, port), timeout=10)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx.wrap_socket(sock)


def _serve(client: socket.socket, god: tuple[str, int], own: ssl.SSLContext) -> None:
    try:
        client.settimeout(0.5)  # a TLS client speaks first (its hello); a plain one waits for the challenge
        try:
            tls = client.recv(1, socket.MSG_PEEK) == b"\x16"
        except TimeoutError:
            tls = False
        client.settimeout(10)
        if tls:  # answer as god would, with a certificate of our own
            client = own.wrap_socket(client, server_side=True)
        upstream = _to_god(*god)
        _send(client, _frame(upstream))  # god's challenge, to the client
        _send(upstream, _frame(client))  # the client's answer, to god
        verdict = _frame(upstream)
        if verdict != WELCOME:
            print(f"NO SESSION (god said {verdict[:20]!r})", flush=True)
            return
        print("SESSION", flush=True)  # god takes us for the client now
    except (OSError, EOFError, ssl.SSLError) as e:
        print(f"NO SESSION ({type(e).__name__}: {e})", flush=True)
    finally:
        client.close()


def main() -> None:
    port, god_host, god_port, cert, key = sys.argv[1:6]
    own = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    own.load_cert_chain(cert, key)
    server = socket.create_server(("0.0.0.0", int(port)))
    print("impostor listening", flush=True)
    while True:
        client, _ = server.accept()
        threading.Thread(target=_serve, args=(client, (god_host, int(god_port)), own), daemon=True).start()


if __name__ == "__main__":
    main()
