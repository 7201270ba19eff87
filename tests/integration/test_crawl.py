"""The seeds' crawler, shipped: scripts/crawl.py with consumers, against a site this test serves."""

from __future__ import annotations

import hashlib
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from tests.support.gods import God, addr_env
from tests.support.helpers import Proc

pytestmark = pytest.mark.timeout(90)

IMAGES = {f"/img/{name}.png": bytes(range(256)) * k for k, name in ((40, "cat"), (3, "dog"), (100, "big"))}
PAGES = {
    "/": '<a href="/a.html">a</a> <a href="b.html#top">b</a> <a href="http://elsewhere.invalid/x">away</a>'
         '<img src="/img/cat.png">',
    "/a.html": '<a href="/">home</a> <a href="/c.html">c</a> <img src="img/dog.png"> <img src="/img/cat.png">',
    "/b.html": '<a href="/flaky.html">flaky</a>',
    "/c.html": '<a href="/missing.html">gone</a> <img src="/img/big.png">',
    "/flaky.html": '<img src="/img/flaky.png">',  # answers 503 the first time
}
IMAGES["/img/flaky.png"] = b"\x89PNG flaky"


class Site:
    """A small site on loopback that counts the requests for each path."""

    def __init__(self) -> None:
        self.hits: Counter[str] = Counter()
        site = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server's name)
                site.hits[self.path] += 1
                if self.path in ("/flaky.html", "/img/flaky.png") and site.hits[self.path] == 1:
                    self.send_error(503, "try again")
                elif self.path in PAGES:
                    self._send("text/html", f"<html><body>{PAGES[self.path]}</body></html>".encode())
                elif self.path in IMAGES:
                    self._send("image/png", IMAGES[self.path])
                else:
                    self.send_error(404)

            def _send(self, kind: str, body: bytes) -> None:
                self.send_response(200)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def site() -> Iterator[Site]:
    s = Site()
    yield s
    s.close()


def test_the_crawler_fetches_every_page_once_and_downloads_every_image_intact(
    god: God, spawn: Callable[..., Proc], site: Site, tmp_path: Path
) -> None:
    # Given two consumers serving the crawler's queues, 8 tasks at a time, and a site with links, images, a 503
    env = addr_env(god)
    for queues in ("pages,images", "images,pages"):
        spawn("consumer", "--queues", queues, "--processes", "1", "--concurrency", "8", env_extra=env)
    out = tmp_path / "images"
    # When the crawler runs from the site's first page
    crawl = spawn("scripts/crawl.py", site.url, "--out", str(out), "--retry-backoff", "0.2", env_extra=env)
    assert crawl.wait(60) == 0, crawl.text()
    # Then every page of the site was fetched once (the 503 twice), nothing off the site was
    assert {p: n for p, n in site.hits.items() if p in PAGES} == {p: 2 if p == "/flaky.html" else 1 for p in PAGES}
    assert site.hits["/missing.html"] == 1 and not any("elsewhere" in p for p in site.hits)
    # and every image is there, whole, once
    saved = {hashlib.sha256(p.read_bytes()).hexdigest() for p in out.iterdir()}
    assert saved == {hashlib.sha256(b).hexdigest() for b in IMAGES.values()} and len(list(out.iterdir())) == 4
    assert all(site.hits[p] == (2 if "flaky" in p else 1) for p in IMAGES)
    assert crawl.out[-1] == f"crawled 6 pages and downloaded 4 images into {out}; 0 failed", crawl.text()
