"""Task functions that ship with the consumer, and resolving ``module:function`` to a callable.

- ``consumer.tasks:square``: the tutorial's task (the default).
- ``consumer.tasks:file_digest``: size and SHA-256 of a file on a disk every consumer
  mounts; the payload is the path (the tutorial's advice: send the path, not the file).
- ``consumer.tasks:fetch_page`` and ``consumer.tasks:download``: the crawler's two stages.
"""

from __future__ import annotations

import hashlib
import importlib
import inspect
import os
import re
import tempfile
import urllib.parse
from html.parser import HTMLParser
from pathlib import Path
from typing import Any, Protocol

from shared.errors import ConfigError

DEFAULT_TASK = "consumer.tasks:square"
CHUNK = 1 << 20  # bytes read at a time by file_digest


class Retry(Exception):
    """Raise it from a task to have god serve the task again after ``after`` seconds (an HTTP
    429's Retry-After), while the task has retries left (``producer --retries``)."""

    def __init__(self, after: float, why: str = "") -> None:
        super().__init__(f"asked to be tried again in {after:g}s" + (f": {why}" if why else ""))
        self.after = float(after)


class TaskFunction(Protocol):
    """What a consumer runs: one payload in, one picklable value out; raising fails the task."""

    def __call__(self, payload: Any, /) -> Any: ...


def square(n: int) -> str:
    """The tutorial's task: ``square(3411) == "3411 * 3411 = 11634921"``."""
    return f"{n} * {n} = {n * n}"


def file_digest(path: str) -> dict[str, Any]:
    """``{"path", "size", "sha256"}`` of the file at path; a missing or unreadable file fails the task."""
    digest = hashlib.sha256()
    size = 0
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            digest.update(chunk)
            size += len(chunk)
    return {"path": path, "size": size, "sha256": digest.hexdigest()}


def resolve_task(spec: str) -> TaskFunction:
    """Import ``module:function`` (the function may be a dotted path, ``mod:Class.method``).

    Raises:
        ConfigError: the spec is malformed, the module does not import, or the name is
            missing or not callable; the message names which.
    """
    module_name, sep, attr_path = spec.partition(":")
    if not sep or not module_name or not attr_path:
        raise ConfigError(f"--task {spec!r} is not of the form module:function (e.g. {DEFAULT_TASK})")
    try:
        obj: Any = importlib.import_module(module_name)
    except ImportError as e:
        raise ConfigError(f"--task {spec!r}: cannot import module {module_name!r} ({e})") from None
    except Exception as e:  # the module itself raised while importing
        raise ConfigError(
            f"--task {spec!r}: importing {module_name!r} raised {type(e).__name__}: {e}"
        ) from None
    for part in attr_path.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise ConfigError(f"--task {spec!r}: {module_name!r} has no attribute {attr_path!r}") from None
    if not callable(obj):
        raise ConfigError(f"--task {spec!r}: {attr_path!r} is a {type(obj).__name__}, not a function")
    if inspect.isasyncgenfunction(obj) or inspect.isgeneratorfunction(obj):
        raise ConfigError(f"--task {spec!r}: {attr_path!r} is a generator function; a task returns one value "
                          "(a plain function, or async def without yield)")
    return obj  # type: ignore[no-any-return]


# -- the crawler's two stages (scripts/crawl.py drives them) ------------------------------------

FETCH_TIMEOUT_S = 20.0  # seconds to connect and between reads of one page or image
MAX_PAGE = 10 * 2**20  # bytes of a page read at most
CHUNK_DOWNLOAD = 1 << 16  # bytes written at a time by download


class _Links(HTMLParser):
    """The targets of <a href> and <img src> in a page."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.links: list[str] = []
        self.images: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        want = {"a": "href", "img": "src"}.get(tag)
        for name, value in attrs:
            if name == want and value:
                (self.links if tag == "a" else self.images).append(value.strip())


def _get(url: str) -> Any:
    """Open url; a server error (5xx) or a refused connection raises, so --retries apply; a 429
    with Retry-After asks to be tried again then."""
    # Imported here: urllib.request brings http.client and email (40 ms), which every
    # consumer and worker process paid at its start for the crawler's two functions.
    import urllib.error
    import urllib.request

    try:
        return urllib.request.urlopen(urllib.request.Request(url, headers={"User-Agent": "god-crawler"}),
                                      timeout=FETCH_TIMEOUT_S)
    except urllib.error.HTTPError as e:
        if e.code == 429 and (e.headers.get("Retry-After") or "").isdigit():
            raise Retry(after=float(e.headers["Retry-After"]), why=f"{url}: HTTP 429") from None
        if e.code >= 500:
            raise
        return e  # 4xx: an answer, not a failure: the page says what it is


def _absolute(base: str, found: list[str], *, same_site: bool) -> list[str]:
    """Found URLs made absolute, without fragments, http(s) only, each once, in order."""
    site = urllib.parse.urlsplit(base).netloc
    out: dict[str, None] = {}
    for ref in found:
        url = urllib.parse.urldefrag(urllib.parse.urljoin(base, ref))[0]
        parts = urllib.parse.urlsplit(url)
        if parts.scheme in ("http", "https") and (not same_site or parts.netloc == site):
            out[url] = None
    return list(out)


def fetch_page(url: str) -> dict[str, Any]:
    """A page's ``{"url", "status", "links", "images"}``: its links to the same site and its
    images, as absolute URLs. A 5xx raises (so retries apply); a 4xx is a status."""
    with _get(url) as r:
        status = int(r.status if hasattr(r, "status") else r.code)
        kind = r.headers.get_content_type() if r.headers else ""
        body = r.read(MAX_PAGE) if status < 400 and kind in ("text/html", "application/xhtml+xml") else b""
        charset = r.headers.get_content_charset() or "utf-8" if r.headers else "utf-8"
    parser = _Links()
    parser.feed(body.decode(charset, errors="replace"))
    return {"url": url, "status": status, "links": _absolute(url, parser.links, same_site=True),
            "images": _absolute(url, parser.images, same_site=False)}


def download(payload: dict[str, str]) -> dict[str, Any]:
    """Save ``payload["url"]`` into the directory ``payload["dir"]`` (every consumer mounts it),
    atomically: ``{"url", "path", "size", "sha256"}``. A 5xx raises (so retries apply)."""
    url, folder = payload["url"], Path(payload["dir"])
    name = Path(urllib.parse.urlsplit(url).path).name or "index"
    name = re.sub(r"[^A-Za-z0-9._-]", "_", name)[-100:]
    path = folder / f"{hashlib.sha256(url.encode()).hexdigest()[:12]}-{name}"
    digest, size = hashlib.sha256(), 0
    with _get(url) as r:
        status = int(r.status if hasattr(r, "status") else r.code)
        if status >= 400:
            raise OSError(f"{url}: HTTP {status}")
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=".part-")
        try:
            with os.fdopen(fd, "wb") as f:
                while chunk := r.read(CHUNK_DOWNLOAD):
                    f.write(chunk)
                    digest.update(chunk)
                    size += len(chunk)
            os.replace(tmp, path)  # whole or not at all: a reader never sees half an image
        except BaseException:
            os.unlink(tmp)
            raise
    return {"url": url, "path": str(path), "size": size, "sha256": digest.hexdigest()}
