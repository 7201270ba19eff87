"""The results file: JSON lines appended in batches, kept in memory while the disk refuses them.

It is the one place results are kept in full. God's journal records only which tasks have
a result and how far this file got, so a restarted god reads the lines written after that
point (``ids_after``) to learn which results its predecessor wrote just before it died.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import BinaryIO

from shared.errors import ConfigError
from shared.log import count, logger
from shared.records import Run

ERROR_EVERY_S = 10.0  # seconds between repeats of a results-file error in the log




class ResultsFile:
    """Appends result lines; lines the file refuses (full disk) wait and go with the next write."""

    def __init__(self, path: Path, *, fsync: bool = False) -> None:
        """Args:
            fsync: sync each write to disk before its results are journaled (god --sync full).
        """
        self.path = path
        self.fsync = fsync
        self.unwritten: list[str] = []  # lines the file has not taken yet, oldest first
        self._unwritten_done: list[Run] = []  # the runs of tasks they settle
        self._f: BinaryIO | None = None
        self._error_at = 0.0
        self._log = logger.bind(role="god")
        try:
            self._f = open(path, "ab")
        except OSError as e:
            raise ConfigError(f"cannot open results file {path}: {e.strerror}") from None

    @property
    def offset(self) -> int:
        """Bytes in the file after the last successful write."""
        return self._f.tell() if self._f is not None else 0

    def write(self, lines: list[str], done: list[Run]) -> list[Run] | None:
        """Append lines (each ending in a newline) after any still unwritten.

        Returns:
            The runs of every result now in the file that was not before, or None if
            the file refused them (they wait for the next call).
        """
        self.unwritten += lines
        self._unwritten_done += done
        if not self.unwritten:
            return []
        try:
            if self._f is None:
                self._f = open(self.path, "ab")
            self._f.write("".join(self.unwritten).encode())
            self._f.flush()
            if self.fsync:
                os.fsync(self._f.fileno())
        except OSError as e:
            # The buffer may have reached the file in part; the reopened file goes on
            # from its real end, so a line may be cut short there, never lost.
            self.close()
            now = time.monotonic()
            if now - self._error_at > ERROR_EVERY_S:
                self._error_at = now
                self._log.error("cannot write results file {}: {}; {} kept in memory, retrying",
                                self.path, e.strerror or e, count(len(self.unwritten), "result"))
            return None
        written, self.unwritten, self._unwritten_done = self._unwritten_done, [], []
        return written

    def ids_after(self, offset: int) -> list[str]:
        """The task ids of the results in lines past offset; a line cut short by a crash is removed first.

        God calls this on start, before writing, to learn which results the last god wrote
        after its journal last heard from the file. A file shorter than offset was replaced
        since: all of it is read.
        """
        with open(self.path, "rb") as f:
            if f.seek(0, os.SEEK_END) < offset:
                offset = 0
            f.seek(offset)
            tail = f.read()
        complete = tail[: tail.rfind(b"\n") + 1]
        if len(complete) < len(tail):
            os.truncate(self.path, offset + len(complete))
            if self._f is not None:
                self._f.seek(0, os.SEEK_END)
        found: list[str] = []
        for raw in complete.splitlines():
            try:
                tid = json.loads(raw).get("id")
            except (ValueError, AttributeError):
                continue  # not one of ours; leave it alone
            if isinstance(tid, str):
                found.append(tid)
        return found

    def close(self) -> None:
        """Close the file (what it refused stays in ``unwritten``); the next write reopens it."""
        if self._f is not None:
            try:
                self._f.close()
            except OSError:
                pass
            self._f = None
