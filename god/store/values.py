"""Large values (shared/values.py) on god's disk: one file per value, named by its digest, kept
while something pins it (``Pin``): a batch whose calls name it, a result that names it (both
journaled, so a restart pins them again), or the program or worker that sent it, while it
is connected.

A value comes in chunks into a part file and becomes a value once whole and its digest is
right (a value is never read half written); god never loads one: it is bytes to god. The
folder is ``--values DIR``, by default beside the journal (``JOURNAL.values``), or a
folder of its own for a god without a journal, emptied at its start.

Thread-safe (its own lock, taken inside the state's lock where pins change, never around it).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import threading
from pathlib import Path
from typing import Any, TypeGuard

from shared import items
from shared.log import logger
from shared.records import value_names
from shared.values import names_values

MAX_VALUE = 4 << 30  # bytes of one value god takes at most (god --max-value)
MAX_VALUES = 16 << 30  # bytes of all values god holds at most (god --max-values)
_HEX = frozenset("0123456789abcdef")

#: What pins a value: ("batch", producer, first), ("dead", id), ("mail", producer, lo): a
#: result waiting in its program's mailbox, ("outcome", id): a result other tasks use, or
#: ("program", name): a program or worker that sent it or asked for it, while connected (a
#: worker's pin on a value its result names is let go when the ack naming it comes).
Pin = tuple[str, ...]


def check_digest(digest: object) -> str:
    if not _is_digest(digest):
        raise ValueError(f"{digest!r} is not a value's digest (64 hexadecimal digits)")
    return digest


def names_in(values: bytes | list[Any] | None) -> list[str]:
    """The digests of the large values a run's results name (shared.records.value_names), from
    their blob (or the list it loads to: data only); names that are not digests are left out."""
    if values is None:
        return []
    if isinstance(values, bytes):
        if not names_values(values):  # (the usual case: no large value, no load)
            return []
        values = items.load(values)
    if type(values) is not list:
        return []
    return [d for v in values if type(v) is tuple for d in value_names(v) if _is_digest(d)]


def _is_digest(d: object) -> TypeGuard[str]:
    return type(d) is str and len(d) == 64 and set(d) <= _HEX


class ValueStore:
    """Values by digest in a folder, and what pins each."""

    def __init__(self, folder: Path, *, max_value: int = MAX_VALUE, max_values: int = MAX_VALUES,
                 fresh: bool = False) -> None:
        self.folder = folder
        self.max_value, self.max_values = max_value, max_values
        if fresh and folder.exists():
            shutil.rmtree(folder)
        if (folder / "part").exists():
            for part in (folder / "part").iterdir():
                part.unlink()  # (an upload cut by a restart: its program sends it again)
        self._lock = threading.Lock()
        self._sizes = {p.name: p.stat().st_size for p in folder.iterdir() if p.is_file() and len(p.name) == 64
                       } if folder.exists() else {}  # (the folder is made with the first value)
        self._parts: dict[str, tuple[int, int, hashlib._Hash]] = {}  # digest -> (size, received, hash so far)
        self._pins: dict[str, dict[Pin, int]] = {}  # digest -> what pins it, how many times
        self._caches: dict[str, set[str]] = {}  # digest -> the consumers' caches that fetched it
        self.held = sum(self._sizes.values())
        self.bytes_in = self.bytes_out = 0  # counted, for status

    def missing(self, digests: list[str], pin: Pin | None = None) -> list[str]:
        """Those of the digests god does not hold whole; ``pin``: the others are kept for it
        from now (as ``pin`` would, in one step: none is let go in between)."""
        with self._lock:
            lacks = [d for d in digests if d not in self._sizes]
            if pin is not None:
                for d in digests:
                    if d in self._sizes:
                        pins = self._pins.setdefault(d, {})
                        pins[pin] = pins.get(pin, 0) + 1
            return lacks

    def put(self, digest: str, size: int, offset: int, chunk: bytes) -> int:
        """A chunk of a value (in order from offset 0); how many bytes of it god has.

        Raises:
            ValueError: over --max-value or --max-values, out of order, or not the digest's.
        """
        with self._lock:
            if digest in self._sizes:
                return self._sizes[digest]
            if type(size) is not int or not 0 < size <= self.max_value:
                raise ValueError(f"a value of {size:,} bytes is over god's --max-value of {self.max_value:,}")
            part = self._parts.get(digest)
            if part is None:
                if offset != 0:
                    raise ValueError(f"value {digest[:12]}: a chunk at {offset:,} before any at 0")
                if self.held + size > self.max_values:
                    raise ValueError(f"a value of {size:,} bytes would take god's values past --max-values "
                                     f"({self.held:,} of {self.max_values:,} bytes held): fewer at once")
                self.held += size  # (reserved from the first chunk)
                part = (size, 0, hashlib.sha256())
                (self.folder / "part").mkdir(parents=True, exist_ok=True)
            psize, received, h = part
            if psize != size or offset != received or received + len(chunk) > size:
                raise ValueError(f"value {digest[:12]}: a chunk of {len(chunk):,} bytes at {offset:,} does not follow "
                                 f"the {received:,} bytes god has of its {psize:,}")
            with open(self.folder / "part" / digest, "ab") as f:
                f.write(chunk)
            h.update(chunk)
            received += len(chunk)
            self.bytes_in += len(chunk)
            if received < size:
                self._parts[digest] = (size, received, h)
                return received
            self._parts.pop(digest, None)
            if h.hexdigest() != digest:
                (self.folder / "part" / digest).unlink()
                self.held -= size
                raise ValueError(f"value {digest[:12]}: its bytes do not hash to its name")
            os.replace(self.folder / "part" / digest, self.folder / digest)
            self._sizes[digest] = size
            return size

    def read(self, digest: str, offset: int, n: int) -> bytes:
        """Up to n bytes of a value from offset.

        Raises:
            ValueError: god does not hold it.
        """
        with self._lock:
            if digest not in self._sizes:
                raise ValueError(f"god holds no value {digest[:12]} (its tasks are done, or it never came)")
        with open(self.folder / digest, "rb") as f:
            f.seek(offset)
            data = f.read(n)
        with self._lock:
            self.bytes_out += len(data)
        return data

    def fetched(self, digest: str, cache: str) -> None:
        """A consumer's cache (``host:folder``) fetched the value: calls that name it go there first."""
        if cache:
            with self._lock:
                if digest in self._sizes:
                    self._caches.setdefault(digest, set()).add(cache)

    def caches(self, digests: tuple[str, ...]) -> set[str]:
        """The caches that fetched all of these values (each may have let go of it since)."""
        with self._lock:
            held = [self._caches.get(d) for d in digests]
        if not held or any(not h for h in held):
            return set()
        return set.intersection(*held)  # type: ignore[arg-type]

    def size(self, digest: str) -> int | None:
        with self._lock:
            return self._sizes.get(digest)

    def pin(self, pin: Pin, digests: tuple[str, ...] | list[str]) -> None:
        """Keep these values for the pin (counted: as many ``unpin`` let go of them)."""
        with self._lock:
            for d in digests:
                pins = self._pins.setdefault(d, {})
                pins[pin] = pins.get(pin, 0) + 1

    def unpin(self, pin: Pin, digests: tuple[str, ...] | list[str]) -> None:
        """Let go of the pin's values (once each); a value no pin holds is dropped."""
        with self._lock:
            for d in digests:
                pins = self._pins.get(d)
                if pins is None or pin not in pins:
                    continue
                pins[pin] -= 1
                if pins[pin] <= 0:
                    del pins[pin]
                    if not pins:
                        del self._pins[d]
                        self._drop(d)

    def unpin_all(self, pin: Pin) -> None:
        """Let go of every value the pin holds, however many times (a program that left)."""
        with self._lock:
            for d in [d for d, pins in self._pins.items() if pin in pins]:
                del self._pins[d][pin]
                if not self._pins[d]:
                    del self._pins[d]
                    self._drop(d)

    def drop_unpinned(self) -> int:
        """Drop the values nothing pins (after a restart's recovery pinned what its batches name)."""
        with self._lock:
            loose = [d for d in self._sizes if d not in self._pins]
            for d in loose:
                self._drop(d)
        if loose:
            logger.bind(role="god").info("dropped {} values no task names", len(loose))
        return len(loose)

    def _drop(self, digest: str) -> None:
        size = self._sizes.pop(digest, None)
        self._caches.pop(digest, None)
        if size is None:
            return
        self.held -= size
        try:
            (self.folder / digest).unlink()
        except FileNotFoundError:
            pass

    def figures(self) -> dict[str, int]:
        with self._lock:
            return {"values": len(self._sizes), "values_bytes": self.held, "values_in_bytes": self.bytes_in,
                    "values_out_bytes": self.bytes_out}
