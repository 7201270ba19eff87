"""God's table of principals: read, and refused with a line that names what is wrong."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from god.transport.principals import read_table
from shared.errors import ConfigError

KEY = "k" * 32


def _table(tmp_path: Path, principals: Any, mode: int = 0o600) -> Path:
    f = tmp_path / "keys.json"
    f.write_text(json.dumps({"principals": principals}))
    f.chmod(mode)
    return f


def test_a_table_is_read_with_every_queue_by_default(tmp_path: Path) -> None:
    (p,) = read_table(_table(tmp_path, [{"name": "ingest", "key": KEY, "roles": ["producer"]}]))
    assert (p.name, p.key, p.roles, p.queues) == ("ingest", KEY.encode(), frozenset({"producer"}), ("*",))
    assert p.may_use("anything") and "kkk" not in repr(p)


@pytest.mark.parametrize("principals, says", [
    ([], "has no principal: nobody could connect"),
    ([{"name": "a b", "key": KEY, "roles": ["viewer"]}], "name 'a b' is not 1 to 64 letters"),
    ([{"name": "a", "key": "short", "roles": ["viewer"]}], "principal a: its key is missing or shorter than 16"),
    ([{"name": "a", "key": KEY, "roles": ["admin"]}], r"roles \['admin'\]: expected a list of producer, consumer"),
    ([{"name": "a", "key": KEY, "roles": ["viewer"], "queues": []}], "queues \\[\\]: expected a list"),
    ([{"name": "a", "key": KEY, "roles": ["viewer"]}, {"name": "a", "key": "j" * 32, "roles": ["viewer"]}],
     "principal a: the name is there twice"),
    ([{"name": "a", "key": KEY, "roles": ["viewer"]}, {"name": "b", "key": KEY, "roles": ["viewer"]}],
     "principal b: its key is another principal's too"),
])
def test_bad_tables_are_named(tmp_path: Path, principals: Any, says: str) -> None:
    with pytest.raises(ConfigError, match=says):
        read_table(_table(tmp_path, principals))


def test_a_table_open_to_others_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="is open to others .*: anyone who can read it can connect as any principal"):
        read_table(_table(tmp_path, [{"name": "a", "key": KEY, "roles": ["viewer"]}], mode=0o644))
