"""God's dashboard over HTTP (god --http HOST:PORT): the page, its JSON API and /metrics, on one port.

Access. Each operator and viewer has a token of their own, derived from their key in god's
table of principals (god --keys; an HMAC of a fixed label), never the key itself; a
producer's or consumer's key makes none that god takes. Without a table the one key is
every role, and its token opens the dashboard. ``python -m god url`` prints the login address
(``/login#token=...``; a fragment never reaches a server's log) from the key it is given, and
god prints it as it starts only to a terminal, never to a log. The login page trades the
token for a session: an HttpOnly, SameSite=Strict cookie, and a CSRF token the page sends with
every action. Scripts send ``Authorization: Bearer TOKEN`` instead. Without either, every page
and call but the login page is refused with 401; a wrong token is logged like a wrong authkey
(rate-limited). Every request is checked against god's rights table as the principal's calls
are (a viewer's page has no actions, and god refuses them), and each action writes an audit
line (who, what, from where). A request for a host name that is not god's gets
421 before anything else (DNS rebinding: a page of another site whose name points at god's
address): god answers to IP addresses, ``localhost``, this host's names and those given with
``--http-name``.

The API calls god/transport/api.py, as the command line does: one implementation of every action.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import json
import secrets
import ssl
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from http.server import BaseHTTPRequestHandler
from importlib import resources
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from god.operator.history import History
from god.operator.metrics import CONTENT_TYPE, render, serve_http
from god.transport import rights
from god.transport.api import Api
from god.transport.rights import OPERATOR, VIEWER, Principal
from god.transport.waits import Wait, Waits
from shared.config import Tls, client_address, hostname
from shared.log import RateLimitedLog, logger
from shared.transport import server_context
from shared.stats import Stats

TOKEN_LABEL = b"god dashboard token, v1"
COOKIE = "god_session"
SESSION_S = 12 * 3600.0  # a session lasts this long after its last request
MAX_SESSIONS = 1000  # sessions kept; the least recently used go first
MAX_BODY = 64 * 1024  # bytes of a POST's JSON body
IDLE_S = 30.0  # seconds a connection may wait to send its request
HEADERS = {
    "Cache-Control": "no-store",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Content-Security-Policy": "default-src 'self'; script-src 'self' 'unsafe-inline'; "
                               "style-src 'self' 'unsafe-inline'; img-src 'self' data:; frame-ancestors 'none'",
}


def host_names(host: str, extra: tuple[str, ...] = ()) -> frozenset[str]:
    """The names the dashboard answers to, besides IP addresses: localhost, this host's, the
    one it listens on, and extra."""
    import socket

    names = {"localhost", hostname(), socket.gethostname(), *extra}  # (no getfqdn: a DNS lookup at start)
    if host not in ("", "0.0.0.0", "::"):
        names.add(host)
    return frozenset(n.lower().rstrip(".") for n in names if n)


def host_allowed(header: str | None, names: frozenset[str]) -> bool:
    """Whether a request's Host (NAME[:PORT], an IP address, [IPv6][:PORT]) is god's."""
    if not header:
        return False  # (HTTP/1.1 requires one; a browser always sends it)
    host = header.strip().lower()
    if host.startswith("["):
        host = host[1 : host.find("]")] if "]" in host else host
    elif host.count(":") == 1:
        host = host.partition(":")[0]
    try:
        ipaddress.ip_address(host)
        return True  # an address is no name another site can point elsewhere
    except ValueError:
        pass
    host = host.rstrip(".")
    return host in names or host.endswith(".localhost")


def dashboard_token(authkey: bytes) -> str:
    """The dashboard's token: derived from the authkey, which it does not reveal."""
    return hmac.new(authkey, TOKEN_LABEL, hashlib.sha256).hexdigest()[:40]


def login_url(base: str, authkey: bytes) -> str:
    """The address that logs a browser in: the dashboard's, with the token in its fragment."""
    return f"{base}/login#token={dashboard_token(authkey)}"


def web_context(tls: Tls) -> ssl.SSLContext:
    """The dashboard's TLS context: god's certificate; browsers present none."""
    ctx = server_context(Tls(tls.cert, tls.key, None))
    return ctx


def _page(name: str) -> bytes:
    """One of the dashboard's pages, as shipped in the god package."""
    return resources.files("god.operator").joinpath(name).read_bytes()


class Sessions:
    """Browser sessions: id -> (CSRF token, when last used, the principal's name); thread-safe,
    bounded, expiring.

    Kept by the SHA-256 of their id: looking a cookie up takes no time that depends on how much
    of a real id it shares (a dict compares the strings it finds), and memory holds no id."""

    def __init__(self, now: Callable[[], float] = time.monotonic) -> None:
        self._now = now
        self._lock = threading.Lock()
        self._by_id: OrderedDict[bytes, tuple[str, float, str]] = OrderedDict()

    def start(self, principal: str) -> tuple[str, str]:
        """A new session of a principal: (its id, its CSRF token)."""
        sid, csrf = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
        with self._lock:
            self._by_id[_key(sid)] = (csrf, self._now(), principal)
            while len(self._by_id) > MAX_SESSIONS:
                self._by_id.popitem(last=False)
        return sid, csrf

    def find(self, sid: str) -> tuple[str, str] | None:
        """(CSRF token, principal's name) of a live session (used now), or None."""
        key = _key(sid)
        with self._lock:
            found = self._by_id.get(key)
            now = self._now()
            if found is None or now - found[1] > SESSION_S:
                self._by_id.pop(key, None)
                return None
            self._by_id[key] = (found[0], now, found[2])
            self._by_id.move_to_end(key)
            return found[0], found[2]

    def end(self, sid: str) -> None:
        with self._lock:
            self._by_id.pop(_key(sid), None)


def _key(sid: str) -> bytes:
    return hashlib.sha256(sid.encode(errors="surrogateescape")).digest()


def _length(h: BaseHTTPRequestHandler) -> int:
    """A request's Content-Length, checked before a byte of its body is read: digits only (a
    negative length read to the end of the stream), at most MAX_BODY. A refused body is never
    read, so the connection closes after the answer."""
    given = h.headers.get("Content-Length")
    if given is None:
        return 0
    n = int(given) if given.isascii() and given.isdigit() else -1
    if 0 <= n <= MAX_BODY:
        return n
    h.close_connection = True
    if n < 0:
        raise Denied(400, f"Content-Length {given[:20]!r} is not a length in bytes")
    raise Denied(413, f"a body of {n} bytes is more than {MAX_BODY}")


class Denied(Exception):
    """A request refused: its status and why."""

    def __init__(self, status: int, why: str) -> None:
        super().__init__(why)
        self.status = status


class Web:
    """The dashboard's HTTP server, in daemon threads."""

    def __init__(self, host: str, port: int, *, api: Api, waits: Waits, principals: Callable[[], Sequence[Principal]],
                 figures: Callable[[], tuple[Stats, float]], history: History,
                 tls: ssl.SSLContext | None = None, names: tuple[str, ...] = ()) -> None:
        """``principals``: god's table as it is now (without one, ``rights.everyone(key)``);
        ``names``: host names god is reached by besides its own (a proxy's, a DNS alias)."""
        self.api, self.waits, self.figures, self.history = api, waits, figures, history
        self.names = host_names(host, names)
        self.principals = principals
        self._staff: tuple[object, dict[bytes, Principal], dict[str, Principal]] = (None, {}, {})
        self.sessions = Sessions()
        self.pages = {name: _page(name) for name in ("login.html", "dashboard.html")}  # read once
        self.tls = tls is not None
        self._refusals = RateLimitedLog()
        web = self

        class Handler(BaseHTTPRequestHandler):
            server_version = "god"
            sys_version = ""
            timeout = IDLE_S  # a connection that sends nothing is closed: no thread waits forever

            def do_GET(self) -> None:  # noqa: N802 (the http.server name)
                web.handle(self, "GET")

            def do_POST(self) -> None:  # noqa: N802
                web.handle(self, "POST")

            def log_message(self, format: str, *args: Any) -> None:
                pass  # refusals are logged by handle(); the rest is not news

        wrap = (lambda sock: tls.wrap_socket(sock, server_side=True, do_handshake_on_connect=False)) if tls else None
        self.server = serve_http(host, port, Handler, "--http", wrap)
        self.address = (host, int(self.server.server_address[1]))

    @property
    def base(self) -> str:
        """The dashboard's address, for people (a wildcard bind as this host's name)."""
        return f"{'https' if self.tls else 'http'}://{client_address(self.address)}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    # -- a request -----------------------------------------------------------------------

    def handle(self, h: BaseHTTPRequestHandler, method: str) -> None:
        url = urlsplit(h.path)
        path, query = url.path, parse_qs(url.query)
        try:
            host = h.headers.get("Host")
            if not host_allowed(host, self.names):
                self._refused(h, f"Host {host!r}")
                raise Denied(421, f"this is not the dashboard of {host!r}: god answers to its IP addresses and "
                                  f"{', '.join(sorted(self.names))} (god --http-name NAME adds a name)")
            if method == "GET" and path == "/login":
                return self._send(h, 200, self.pages["login.html"], "text/html; charset=utf-8")
            if method == "POST" and path == "/api/login":
                return self._login(h)
            who, csrf = self._who(h)
            if method == "GET" and path == "/":
                return self._send(h, 200, self.pages["dashboard.html"], "text/html; charset=utf-8")
            if method == "GET" and path == "/metrics":
                self._allowed(h, who, "stats")
                return self._send(h, 200, render(*self.figures()).encode(), CONTENT_TYPE)
            if method == "GET" and path.startswith("/api/"):
                return self._json(h, 200, self._get(path[5:], query, who, csrf, h))
            if method == "POST" and path.startswith("/api/"):
                if csrf is not None and not hmac.compare_digest(h.headers.get("X-CSRF-Token", ""), csrf):
                    raise Denied(403, "an action needs the session's CSRF token (X-CSRF-Token)")
                return self._json(h, 200, self._post(path[5:], self._body(h), who, h))
            raise Denied(404, f"no {method} {path} here")
        except Denied as e:
            if e.status == 401 and path == "/":
                return self._send(h, 401, self.pages["login.html"], "text/html; charset=utf-8")
            return self._json(h, e.status, {"error": str(e)})
        except ValueError as e:  # god refused what was asked (as the command line says it)
            return self._json(h, 400, {"error": str(e)})
        except Exception as e:  # a bug of ours: said, and logged, not a dropped connection
            logger.bind(role="god").exception("dashboard: {} {} failed", method, path)
            return self._json(h, 500, {"error": f"god failed to answer: {e}"})

    def _operators(self) -> tuple[dict[bytes, Principal], dict[str, Principal]]:
        """The operators and viewers in god's table as it is now: by their token's key, by name."""
        table = self.principals()
        if self._staff[0] is not table:  # (read again: made anew)
            staff = [p for p in table if p.roles & {OPERATOR, VIEWER}]
            self._staff = (table, {_key(dashboard_token(p.key)): p for p in staff}, {p.name: p for p in staff})
        return self._staff[1], self._staff[2]

    def _by_token(self, given: Any) -> Principal | None:
        """The operator or viewer whose token this is."""
        return self._operators()[0].get(_key(given)) if isinstance(given, str) else None

    def _who(self, h: BaseHTTPRequestHandler) -> tuple[Principal, str | None]:
        """(the principal, None) for a bearer, (the principal, its CSRF token) for a session;
        raises Denied(401) otherwise."""
        auth = h.headers.get("Authorization", "")
        if auth:
            scheme, _, given = auth.partition(" ")
            principal = self._by_token(given.strip()) if scheme.lower() == "bearer" else None
            if principal is not None:
                return principal, None
            self._refused(h, "a wrong token")
            raise Denied(401, "wrong token: use the one 'python -m god url' prints with an operator's or viewer's key")
        for part in h.headers.get("Cookie", "").split(";"):
            name, _, value = part.strip().partition("=")
            if name == COOKIE:
                found = self.sessions.find(value)
                principal = self._operators()[1].get(found[1]) if found is not None else None
                if found is not None and principal is not None:  # (one removed from the table: no more)
                    return principal, found[0]
        raise Denied(401, "no session: open the login address 'python -m god url' prints")

    def _allowed(self, h: BaseHTTPRequestHandler, who: Principal, call: str, *args: Any) -> None:
        """A request's call, checked as the principal's calls to god are; an action is audited.

        Raises:
            Denied: 403, saying what the principal may not do.
        """
        try:
            rights.permit(who, call, args, {}, None, f"{h.client_address[0]} (dashboard)")
        except rights.Refused as e:
            raise Denied(403, str(e)) from None

    def _refused(self, h: BaseHTTPRequestHandler, what: str) -> None:
        self._refusals.warning("web", "dashboard: refused a request from {} with {}", h.client_address[0], what)

    def _login(self, h: BaseHTTPRequestHandler) -> None:
        principal = self._by_token(self._body(h).get("token"))
        if principal is None:
            self._refused(h, "a wrong token")
            raise Denied(401, "wrong token: use the login address 'python -m god url' prints with an operator's or "
                              "viewer's key")
        sid, csrf = self.sessions.start(principal.name)
        cookie = f"{COOKIE}={sid}; HttpOnly; SameSite=Strict; Path=/; Max-Age={int(SESSION_S)}"
        self._json(h, 200, {"csrf": csrf}, {"Set-Cookie": cookie + ("; Secure" if self.tls else "")})

    def _body(self, h: BaseHTTPRequestHandler) -> dict[str, Any]:
        n = _length(h)
        raw = h.rfile.read(n) if n else b"{}"
        try:
            body = json.loads(raw)
        except ValueError:
            raise Denied(400, "the body is not JSON") from None
        if not isinstance(body, dict):
            raise Denied(400, "the body is not a JSON object")
        return body

    def _call(self, reply: Any) -> Any:
        return self.waits.call(reply) if isinstance(reply, Wait) else reply

    def _get(self, what: str, query: dict[str, list[str]], who: Principal, csrf: str | None,
             h: BaseHTTPRequestHandler) -> Any:
        queue = query.get("queue", [None])[0]
        if what == "session":  # (what the page shows and offers: a viewer's has no actions)
            return {"csrf": csrf, "principal": who.name, "actions": OPERATOR in who.roles}
        if what in ("status", "history"):
            self._allowed(h, who, "stats")
            if what == "history":
                return self.history.since(float(query.get("since", ["0"])[0]))
            stats, rate = self.figures()
            return {**stats, "rate": rate}
        if what in ("dead", "failed"):
            self._allowed(h, who, what, queue)
            return self.api.dead(queue) if what == "dead" else self.api.failed(queue)
        if what == "schedules":
            self._allowed(h, who, "schedule_list")
            return self.api.schedule_list()
        if what.startswith("task/"):
            tid = unquote(what[5:])
            self._allowed(h, who, "task", tid)
            return self._call(self.api.task(tid))
        raise Denied(404, f"no GET /api/{what} here")

    def _post(self, what: str, body: dict[str, Any], who: Principal, h: BaseHTTPRequestHandler) -> Any:
        if what == "logout":
            for part in h.headers.get("Cookie", "").split(";"):
                name, _, value = part.strip().partition("=")
                if name == COOKIE:
                    self.sessions.end(value)
            return {}
        if what in ("pause", "resume"):
            args: tuple[Any, ...] = (_text(body, "queue"), what == "pause")
            self._allowed(h, who, "pause", *args)
            return {"was_paused": self.api.pause(*args)}
        if what == "requeue":
            args = (body.get("ids"), body.get("queue"))
            self._allowed(h, who, "requeue", *args)
            return {"moved": self.api.requeue(*args)}
        if what == "purge":
            args = (body.get("queue"), body.get("older_than_s"))
            self._allowed(h, who, "purge", *args)
            return {"dropped": self.api.purge(*args)}
        if what == "cancel":
            args = (body.get("ids"), body.get("queue"), body.get("producer"))
            self._allowed(h, who, "cancel", *args)
            return self.api.cancel(*args)
        if what == "drain":
            args = (_text(body, "consumer"),)
            self._allowed(h, who, "drain", *args)
            return {"held": self.api.drain(*args)}
        raise Denied(404, f"no POST /api/{what} here")

    def _json(self, h: BaseHTTPRequestHandler, status: int, value: Any, extra: dict[str, str] | None = None) -> None:
        self._send(h, status, json.dumps(value).encode(), "application/json", extra)

    @staticmethod
    def _send(h: BaseHTTPRequestHandler, status: int, body: bytes, kind: str,
              extra: dict[str, str] | None = None) -> None:
        h.send_response(status)
        for name, value in {**HEADERS, **(extra or {}), "Content-Type": kind, "Content-Length": str(len(body))}.items():
            h.send_header(name, value)
        h.end_headers()
        h.wfile.write(body)


def _text(body: dict[str, Any], key: str) -> str:
    value = body.get(key)
    if not isinstance(value, str):
        raise ValueError(f"the body needs {key!r}, a string")
    return value
