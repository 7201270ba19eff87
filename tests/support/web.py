"""A client of god's dashboard and of its /metrics, over real HTTP."""

from __future__ import annotations

import http.client
import json
import urllib.request
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

from god.operator.web import dashboard_token
from tests.support.gods import God


class Dashboard:
    """A client of god's dashboard: its address, its token, and a session if logged in."""

    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        self.host, self.port = parts.hostname or "", parts.port or 80
        self.token = parts.fragment.removeprefix("token=")
        self.cookie: str | None = None
        self.csrf: str | None = None

    def request(self, method: str, path: str, body: Any = None, *, bearer: str | None = None,
                csrf: str | None = None) -> tuple[int, dict[str, str], bytes]:
        conn = http.client.HTTPConnection(self.host, self.port, timeout=10)
        headers = {"Content-Type": "application/json"}
        if bearer is not None:
            headers["Authorization"] = f"Bearer {bearer}"
        if self.cookie is not None:
            headers["Cookie"] = self.cookie
        if csrf is not None:
            headers["X-CSRF-Token"] = csrf
        try:
            conn.request(method, path, json.dumps(body) if body is not None else None, headers)
            r = conn.getresponse()
            return r.status, {k.lower(): v for k, v in r.getheaders()}, r.read()
        finally:
            conn.close()

    def api(self, method: str, path: str, body: Any = None) -> Any:
        """A call with the token (as scripts make them); it must succeed."""
        status, _, data = self.request(method, path, body, bearer=self.token)
        assert status == 200, (status, data)
        return json.loads(data)

    def login(self) -> None:
        status, headers, data = self.request("POST", "/api/login", {"token": self.token})
        assert status == 200, data
        self.cookie = headers["set-cookie"].split(";")[0]
        self.csrf = json.loads(data)["csrf"]


def login_address(g: God, key: bytes | None = None) -> str:
    """The dashboard's login address (god says where it is; a log is never given its token),
    with the token of key (the god's own key unless given), as 'python -m god url' prints it."""
    base = g.proc.wait_for(r"^dashboard: (https?://\S+) \(its login address: python -m god url").group(1)
    return f"{base}/login#token={dashboard_token(key or g.proc.env['GOD_AUTHKEY'].encode())}"


def start_dashboard(start_god: Callable[..., God], *args: str) -> tuple[God, Dashboard]:
    g = start_god("--http", "0", *args)
    return g, Dashboard(login_address(g))


def scrape(url: str) -> dict[str, float]:
    with urllib.request.urlopen(url, timeout=5) as r:
        assert r.headers["Content-Type"].startswith("text/plain; version=0.0.4")
        text = r.read().decode()
    samples = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            samples[name] = float(value)
    return samples
