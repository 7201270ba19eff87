"""Large values on a consumer host (shared/values.py): fetched from god once per host, into a
cache folder every worker of every consumer there shares, and loaded from there for each call.

One worker fetches a value while the others that need it wait on its lock file; a value is
written whole under another name and renamed, so none reads half of one. The cache keeps
CACHE_BYTES at most, the values used least recently let go first (a value in use stays: each
call reads it whole first).
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from shared import values
from shared.client import SideClient
from shared.config import cache_dir, hostname

CACHE_BYTES = 16 << 30  # bytes the host's cache of values keeps at most
MEMO = 2  # values a worker keeps loaded for its next calls (bytes and str only: they cannot change)


def folder_of(folder: str | None) -> Path:
    """The folder of the host's cache of values a consumer uses (consumer --cache-dir, or None)."""
    return Path(folder) if folder is not None else cache_dir() / "values"


def values_cache(folder: str | None) -> str:
    """The cache of values a consumer uses, as god knows it (which calls it prefers: ``host:folder``)."""
    return f"{hostname()}:{folder_of(folder).resolve()}"


class Fetcher:
    """A worker's way to the values its calls name: the host's cache, else god (thread-safe)."""

    def __init__(self, call: Callable[..., Any], name: str, folder: Path | None = None,
                 keep: int = CACHE_BYTES, side: SideClient | None = None) -> None:
        """``call``: a broker call on a connection threads share (``side``'s: shared.client.SideClient,
        which ``send`` needs)."""
        self._call, self._name, self._side = call, name, side
        self.folder = folder if folder is not None else cache_dir() / "values"  # (folder_of)
        self.keep = keep
        self.fetched = 0  # bytes this worker fetched from god
        self.sent = 0  # bytes of its calls' results it sent god apart
        self.memo = values.Last(MEMO)  # the last values loaded that cannot change (shared/values.py)

    def __call__(self, digest: str, size: int) -> bytes:
        """The value's pickle.

        Raises:
            GodError, ValueError: god does not hold it, or is away.
        """
        path = self.folder / digest
        data = _read(path, size)
        if data is not None:
            return data
        self.folder.mkdir(parents=True, exist_ok=True)
        with open(self.folder / f"{digest}.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)  # (another worker of this host may be fetching it)
            data = _read(path, size)
            if data is None:
                data = self._fetch(digest, size)
                part = self.folder / f"{digest}.{os.getpid()}.part"
                part.write_bytes(data)
                os.replace(part, path)
                self._trim(digest)
        return data

    def send(self, found: dict[str, Any]) -> None:
        """Send god the large values a call's result names (digest: its pickle), those it lacks;
        god keeps each for this worker until the ack that names it comes (and no longer than
        this worker lives).

        Raises:
            GodError, ValueError: god cannot take them (away, or past its --max-values).
        """
        if self._side is None:
            raise ValueError("this worker sends no values")
        with self._side.session() as client:
            self.sent += values.upload(client, self._name, found)

    def _fetch(self, digest: str, size: int) -> bytes:
        data = values.fetch(self._call, self._name, digest, size)  # (a chunk a call: others on the side wait one at most)
        self.fetched += size
        return data

    def _trim(self, keep: str) -> None:
        """Let go of the values used least recently while the cache holds more than it keeps."""
        values = []
        for p in self.folder.iterdir():
            if len(p.name) == 64:
                st = p.stat()
                values.append((st.st_mtime, st.st_size, p))
        total = sum(size for _, size, _ in values)
        for _, size, p in sorted(values):
            if total <= self.keep:
                break
            if p.name != keep:
                p.unlink(missing_ok=True)
                p.with_name(f"{p.name}.lock").unlink(missing_ok=True)  # (a worker that waits on it fetches again)
                total -= size



def _read(path: Path, size: int) -> bytes | None:
    """The cached value, if whole (and marked used now)."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return None
    if len(data) != size:
        return None
    os.utime(path)
    return data


_fetcher: Fetcher | None = None


def set_fetcher(fetcher: Fetcher | None) -> None:
    """Where this worker process fetches values from."""
    global _fetcher
    _fetcher = fetcher


def send(found: dict[str, Any]) -> None:
    """Send god the large values a result names (``Fetcher.send``)."""
    if _fetcher is None:
        raise ValueError("this process sends no values (not a consumer's worker)")
    _fetcher.send(found)


def loads(blob: bytes, by_value: bool) -> Any:
    """A call's pickled arguments, with the large values they name (shared/values.py)."""
    if _fetcher is None:
        return values.loads(blob, by_value, _no_fetcher)
    return values.loads(blob, by_value, _fetcher, _fetcher.memo)


def _no_fetcher(digest: str, size: int) -> bytes:
    raise ValueError("this process fetches no values (not a consumer's worker)")
