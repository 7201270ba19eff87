"""The dashboard's browser sessions (god/operator/web.py Sessions): found by their id, kept by
its SHA-256 (no id in memory to leak, no lookup that compares an id), ended, expired."""

from __future__ import annotations

import pytest

from god.operator.web import SESSION_S, Sessions

pytestmark = pytest.mark.timeout(10)


def test_a_session_is_found_by_its_id_and_kept_by_its_hash_only() -> None:
    clock = [0.0]
    sessions = Sessions(now=lambda: clock[0])
    sid, csrf = sessions.start("alice")
    other, _ = sessions.start("bob")
    assert sessions.find(sid) == (csrf, "alice") and sessions.find(sid[:-1] + "x") is None
    assert not any(sid in repr(k) or sid.encode() in k for k in sessions._by_id)  # noqa: SLF001
    sessions.end(sid)
    assert sessions.find(sid) is None and sessions.find(other) is not None
    clock[0] += SESSION_S + 1
    assert sessions.find(other) is None  # expired
