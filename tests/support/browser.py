"""Headless Chromium for the dashboard's tests, driven through chromedriver's W3C WebDriver
protocol: JSON over HTTP, a dozen calls, so no client library (selenium) is needed.

Debian's ``chromium`` and ``chromium-driver`` packages; ``.ci/run`` installs them when missing.
The flags are those that run as root on a machine with no network beyond loopback.
"""

from __future__ import annotations

import base64
import http.client
import json
import shutil
import socket
import subprocess
import tempfile
import time
from typing import Any

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
ELEMENT = "element-6066-11e4-a52e-4f735466cecf"  # the W3C key of an element reference
SCRIPT_TIMEOUT_MS = 5_000  # a script in the page calls back in milliseconds; one cut off by a navigation, never
FLAGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--window-size=1400,1100", "--force-device-scale-factor=1"]


def available() -> bool:
    return shutil.which("chromium") is not None and shutil.which("chromedriver") is not None


class Browser:
    """One headless Chromium, through a chromedriver of its own on a free loopback port."""

    def __init__(self) -> None:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.profile = tempfile.mkdtemp(prefix="god-chromium-")
        self.driver = subprocess.Popen([CHROMEDRIVER, f"--port={self.port}"], stdout=subprocess.DEVNULL,
                                       stderr=subprocess.DEVNULL)
        try:
            deadline = time.monotonic() + 20
            while True:
                try:
                    if self._call("GET", "/status")["ready"]:
                        break
                except OSError:
                    pass
                if time.monotonic() > deadline:
                    raise RuntimeError("chromedriver did not start")
                time.sleep(0.05)
            args = [*FLAGS, f"--user-data-dir={self.profile}"]
            caps = {"capabilities": {"alwaysMatch": {"browserName": "chrome", "goog:chromeOptions": {
                "binary": CHROMIUM, "args": args}, "timeouts": {"script": SCRIPT_TIMEOUT_MS}}}}
            self.session = self._call("POST", "/session", caps)["sessionId"]
        except BaseException:
            self.close()
            raise

    def _call(self, method: str, path: str, body: Any = None) -> Any:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
        try:
            conn.request(method, path, json.dumps(body) if body is not None else None,
                         {"Content-Type": "application/json"})
            r = conn.getresponse()
            data = json.loads(r.read() or b"{}")
        finally:
            conn.close()
        value = data.get("value")
        if r.status != 200:
            raise RuntimeError(f"webdriver {method} {path}: {value}")
        return value

    def _s(self, method: str, path: str, body: Any = None) -> Any:
        return self._call(method, f"/session/{self.session}{path}", body)

    def get(self, url: str) -> None:
        self._s("POST", "/url", {"url": url})

    def run(self, script: str, *args: Any) -> Any:
        """Run a function body in the page (``return ...`` gives its value); a Promise is awaited.

        A script the page's own navigation cut off (the login page going on to the dashboard)
        never calls back: webdriver says "script timeout", and it runs again in the new page.
        """
        body = {"script": "const done = arguments[arguments.length - 1];"
                          f"Promise.resolve((function() {{ {script} }}).apply(null, Array.from(arguments).slice(0, -1)))"
                          ".then(done, e => done({error: String(e)}));",
                "args": list(args)}
        for attempt in range(3):
            try:
                return self._s("POST", "/execute/async", body)
            except RuntimeError as e:
                if "script timeout" not in str(e) or attempt == 2:
                    raise
        raise AssertionError("not reached")

    def click(self, css: str) -> None:
        """Click the element css finds (found again if the page redrew it meanwhile)."""
        for attempt in range(5):
            element = self._s("POST", "/element", {"using": "css selector", "value": css})[ELEMENT]
            try:
                self._s("POST", f"/element/{element}/click", {})
                return
            except RuntimeError as e:
                if "stale element" not in str(e) or attempt == 4:
                    raise

    def color_scheme(self, scheme: str) -> None:
        """Have the page see the system's theme as 'light' or 'dark' (prefers-color-scheme)."""
        self._s("POST", "/goog/cdp/execute", {"cmd": "Emulation.setEmulatedMedia", "params": {
            "features": [{"name": "prefers-color-scheme", "value": scheme}]}})

    def screenshot(self) -> bytes:
        return base64.b64decode(self._s("GET", "/screenshot"))

    def close(self) -> None:
        try:
            if getattr(self, "session", None):
                self._s("DELETE", "")
        except (OSError, RuntimeError):
            pass
        self.driver.terminate()
        try:
            self.driver.wait(10)
        except subprocess.TimeoutExpired:
            self.driver.kill()
            self.driver.wait()
        shutil.rmtree(self.profile, ignore_errors=True)
