"""The dashboard's HTTP side (god --http): access, every API route, the actions, /metrics."""

from __future__ import annotations

import http.client
import json
import re
import socket
import ssl
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from god.operator.metrics import PER_ADDRESS
from tests.support.certs import make_certs
from tests.support.gods import God, addr_env, god_stats
from tests.support.helpers import Proc, proc_status, wait_for_results, wait_until, write_tasks
from tests.support.web import login_address, start_dashboard

pytestmark = pytest.mark.timeout(90)


def test_every_page_and_call_needs_a_session_or_the_token(
    start_god: Callable[..., God], spawn: Callable[..., Proc], env: dict[str, str]
) -> None:
    g, web = start_dashboard(start_god)
    assert web.token and web.token not in env["GOD_AUTHKEY"]  # derived from the key, not the key
    for method, path in (("GET", "/"), ("GET", "/api/status"), ("GET", "/metrics"), ("GET", "/api/dead"),
                         ("POST", "/api/pause")):
        status, _, body = web.request(method, path, {"queue": "default"} if method == "POST" else None)
        assert status == 401, (method, path, status)
    assert web.request("GET", "/login")[0] == 200  # the login page holds nothing
    # A wrong token is refused and logged, like a wrong authkey
    assert web.request("GET", "/api/status", bearer="0" * 40)[0] == 401
    assert web.request("POST", "/api/login", {"token": "0" * 40})[0] == 401
    g.proc.wait_for(r"dashboard: refused a request from 127\.0\.0\.1 with a wrong token", stream="err")
    # The token logs a browser in: an HttpOnly, SameSite=Strict cookie, and a CSRF token for actions
    status, headers, _ = web.request("POST", "/api/login", {"token": web.token})
    assert status == 200
    cookie = headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie
    web.login()
    assert web.request("GET", "/")[0] == 200 and web.request("GET", "/api/status")[0] == 200
    assert web.request("POST", "/api/pause", {"queue": "default"})[0] == 403  # no CSRF token
    assert web.request("POST", "/api/pause", {"queue": "default"}, csrf="forged")[0] == 403
    status, _, body = web.request("POST", "/api/pause", {"queue": "nope"}, csrf=web.csrf)
    assert status == 400 and "god knows no queue nope" in json.loads(body)["error"]
    assert web.request("POST", "/api/logout", {}, csrf=web.csrf)[0] == 200
    assert web.request("GET", "/api/status")[0] == 401
    # and 'python -m god url' prints the same login address again, from the key
    url = spawn("god", "url", env_extra=addr_env(g))
    assert url.wait() == 0 and url.out == [f"http://127.0.0.1:{web.port}/login#token={web.token}"]
    headers = web.request("GET", "/login")[1]
    assert "frame-ancestors 'none'" in headers["content-security-policy"] and headers["cache-control"] == "no-store"


def test_the_api_gives_what_status_gives_and_its_actions_act(
    start_god: Callable[..., God], spawn: Callable[..., Proc], env: dict[str, str], tmp_path: Path
) -> None:
    g, web = start_dashboard(start_god, "--max-attempts", "1")
    e = addr_env(g)
    assert spawn("producer", "--from", str(write_tasks(tmp_path / "t.jsonl", [10, 11, 12])), env_extra=e).wait() == 0
    c = spawn("consumer", "--task", "tests.support.tasks:exit_on_tens", "--processes", "1", env_extra=e)
    results = wait_for_results(g.results, 3)
    ten = next(r["id"] for r in results if r["payload"] == 10)
    # the figures are god's own
    status = web.api("GET", "/api/status")
    cli = god_stats(g, env)
    assert {k: status[k] for k in ("done", "dead", "waiting")} == {k: cli[k] for k in ("done", "dead", "waiting")}
    assert "rate" in status
    assert wait_until(lambda: web.api("GET", "/api/history"), 10, "a sample of history")[-1]["done"] >= 0
    assert "god_queue_tasks{queue=\"default\"" in web.request("GET", "/metrics", bearer=web.token)[2].decode()
    (d,) = web.api("GET", "/api/dead")
    assert d["id"] == ten and web.api("GET", "/api/failed") == []
    t = web.api("GET", f"/api/task/{ten}")
    assert t["state"] == "dead" and t["result"]["error"].startswith("dead letter")
    assert web.api("GET", "/api/schedules") == []
    # pause stops new work on the queue, resume lets it go
    assert web.api("POST", "/api/pause", {"queue": "default"}) == {"was_paused": False}
    assert web.api("GET", "/api/status")["queues"]["default"]["paused"] is True
    assert web.api("POST", "/api/resume", {"queue": "default"}) == {"was_paused": True}
    # a dead letter served again (to a consumer whose task does not die on it) gets done
    c.stop()
    spawn("consumer", "--processes", "1", env_extra=e)
    (moved,) = web.api("POST", "/api/requeue", {"ids": [ten]})["moved"]
    r = next(r for r in wait_for_results(g.results, 4) if r["id"] == moved[1])
    assert r["ok"] and r["requeued_from"] == ten
    assert web.api("POST", "/api/purge", {}) == {"dropped": 0}
    assert web.api("POST", "/api/cancel", {"queue": "default"}) == {"waiting": 0, "scheduled": 0, "running": 0}
    status, _, body = web.request("POST", "/api/drain", {"consumer": "nobody:1"}, bearer=web.token)
    assert status == 400 and "god knows no consumer nobody:1" in json.loads(body)["error"]
    assert web.request("GET", "/api/nothing", bearer=web.token)[0] == 404


def test_a_bad_http_address_is_one_line(spawn: Callable[..., Proc]) -> None:
    p = spawn("god", "--address", "127.0.0.1:0", "--no-journal", "--http", "localhost")
    assert p.wait() == 2
    assert re.search(r"--http 'localhost': give \[HOST:\]PORT", p.text()) and "Traceback" not in p.text()


def test_a_tls_god_serves_its_dashboard_over_https(start_god: Callable[..., God], tmp_path: Path) -> None:
    certs = make_certs(tmp_path / "certs")
    g = start_god("--tls-cert", str(certs.god_cert), "--tls-key", str(certs.god_key), "--http", "0")
    url = login_address(g)
    parts = urlsplit(url)
    ctx = ssl.create_default_context(cafile=str(certs.ca))
    conn = http.client.HTTPSConnection(parts.hostname or "", parts.port, context=ctx, timeout=10)
    try:
        conn.request("POST", "/api/login", json.dumps({"token": parts.fragment.removeprefix("token=")}))
        r = conn.getresponse()
        assert r.status == 200 and "Secure" in (r.getheader("Set-Cookie") or "")
        r.read()
    finally:
        conn.close()


@pytest.mark.parametrize("length, status, said", [
    ("-1", 400, "Content-Length '-1' is not a length in bytes"),  # was read to the end of the stream
    ("12abc", 400, "Content-Length '12abc' is not a length in bytes"),
    ("1000000000", 413, "a body of 1000000000 bytes is more than 65536"),
])
def test_a_body_length_is_checked_before_any_byte_is_read(start_god: Callable[..., God], length: str, status: int,
                                                         said: str) -> None:
    # Given the dashboard, and a client that says a bad length before the login's body and
    # then keeps its end open (as an attacker streaming megabytes would)
    _, web = start_dashboard(start_god)
    with socket.create_connection(("127.0.0.1", web.port), timeout=10) as s:
        s.sendall(f"POST /api/login HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: {length}\r\n\r\n".encode()
                  + b'{"token": "' + b"x" * 4096)
        # Then god answers at once, without waiting for a body, and closes the connection
        answer = b""
        while chunk := s.recv(65536):
            answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(f"HTTP/1.0 {status} ".encode()), answer[:200]
    assert json.loads(body) == {"error": said}


def test_connections_past_the_cap_are_closed_at_once_and_cost_no_thread(start_god: Callable[..., God]) -> None:
    # Given the dashboard, and one address opening far more connections than a browser does,
    # sending nothing (each held a thread of god's, without a cap)
    g, web = start_dashboard(start_god)
    idle_threads = proc_status(g.proc.pid)["threads"]
    extra = 24
    socks = [socket.create_connection(("127.0.0.1", web.port), timeout=10) for _ in range(PER_ADDRESS + extra)]
    ended: set[int] = set()

    def closed_by_god() -> int:
        for i, s in enumerate(socks):
            if i not in ended:
                s.setblocking(False)
                try:
                    if s.recv(1) == b"":
                        ended.add(i)
                except BlockingIOError:
                    pass
                except ConnectionResetError:
                    ended.add(i)
        return len(ended)

    try:
        # Then god closes those over the cap at once, keeps the rest, and holds a thread for
        # each it keeps, not for the others
        wait_until(lambda: closed_by_god() >= extra, 15, f"god to close {extra} connections")
        assert closed_by_god() == extra
        assert proc_status(g.proc.pid)["threads"] <= idle_threads + PER_ADDRESS + 1
    finally:
        for s in socks:
            s.close()
    # and once they are gone, the dashboard serves again
    wait_until(lambda: web.request("GET", "/login")[0] == 200, 15, "the login page")


def _status_for(port: int, host: str) -> tuple[int, bytes]:
    """The status of GET / with that Host header (what a browser sends for the name it was given)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.putrequest("GET", "/", skip_host=True)
        conn.putheader("Host", host)
        conn.endheaders()
        r = conn.getresponse()
        return r.status, r.read()
    finally:
        conn.close()


def test_a_request_for_another_host_name_gets_421(start_god: Callable[..., God]) -> None:
    # Given the dashboard, told one more name it is reached by
    _, web = start_dashboard(start_god, "--http-name", "god.example")
    # When a page of another site, whose name points at god's address, asks (DNS rebinding)
    status, body = _status_for(web.port, f"evil.example:{web.port}")
    # Then it gets 421 and nothing else, naming the names god answers to
    assert status == 421 and "god --http-name NAME adds a name" in json.loads(body)["error"]
    # while its addresses and its names are served (401: no session yet, the login page)
    for host in (f"127.0.0.1:{web.port}", "127.0.0.1", f"[::1]:{web.port}", f"localhost:{web.port}",
                 f"{socket.gethostname()}:{web.port}", f"GOD.example:{web.port}"):
        assert _status_for(web.port, host)[0] == 401, host
