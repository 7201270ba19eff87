"""What the unit tests share: a core (API, waits, broker) with a fake clock, a journal's path."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from god.journal.journal import Journal
from tests.support.core import Core


@pytest.fixture
def core() -> Iterator[Core]:
    c = Core(capacity=100, lease_s=5.0, max_attempts=3)
    yield c
    c.close()


@pytest.fixture
def path(tmp_path: Path) -> Path:
    """Where a test's journal goes (its folder is not made)."""
    return tmp_path / "j" / "journal.sqlite3"


@pytest.fixture
def journal(path: Path) -> Iterator[Journal]:
    """A journal at path, recovered (empty) and committing."""
    j = Journal(path)
    j.recover()
    j.start()
    yield j
    j.close()
