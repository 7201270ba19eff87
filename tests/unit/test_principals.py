"""God's table of principals: read, and refused with a line that names what is wrong."""

from __future__ import annotations

import json
import pickle
from fractions import Fraction
from pathlib import Path
from typing import Any

import pytest

from god.transport.principals import read_table
from god.transport.rights import Principal, Refused, check
from shared import items
from shared.errors import ConfigError

KEY = "k" * 32


def _table(tmp_path: Path, principals: Any, mode: int = 0o600) -> Path:
    f = tmp_path / "keys.json"
    f.write_text(json.dumps({"principals": principals}))
    f.chmod(mode)
    return f


def test_a_table_is_read_with_every_queue_by_default(tmp_path: Path) -> None:
    (p,) = read_table(_table(tmp_path, [{"name": "ingest", "key": KEY, "roles": ["producer"]}]))
    assert (p.name, p.key, p.roles, p.queues, p.by_value) == (
        "ingest", KEY.encode(), frozenset({"producer"}), ("*",), False)
    assert p.may_use("anything") and "kkk" not in repr(p)


@pytest.mark.parametrize("principals, says", [
    ([], "has no principal: nobody could connect"),
    ([{"name": "a b", "key": KEY, "roles": ["viewer"]}], "name 'a b' is not 1 to 64 letters"),
    ([{"name": "a", "key": "short", "roles": ["viewer"]}], "principal a: its key is missing or shorter than 16"),
    ([{"name": "a", "key": KEY, "roles": ["admin"]}], r"roles \['admin'\]: expected a list of producer, consumer"),
    ([{"name": "a", "key": KEY, "roles": ["viewer"], "queues": []}], "queues \\[\\]: expected a list"),
    ([{"name": "a", "key": KEY, "roles": ["producer"], "by_value": "yes"}], "by_value 'yes': expected true or false"),
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


def _put(payloads: list[Any], task: str | None) -> tuple[Any, ...]:
    return ("prod", (1, len(payloads), items.pack(payloads), "q", task, 0, None, None, None))


@pytest.mark.parametrize("payloads, task, sent", [
    ([1, "two", {"three": [3]}], None, None),
    ([("consumer.tasks:square", (3,), {})], "consumer.tasks:square()", None),
    ([Fraction(1, 3)], None, "payloads of other than builtin types"),
    ([(pickle.dumps(("by-value", "3.12", b"...")), (1,), {})], "f()", "a function by value"),
    ([("consumer.tasks:square", pickle.dumps(((Fraction(1, 3),), {})))], "consumer.tasks:square()",
     "pickled arguments"),
])
def test_a_producer_sends_code_only_with_the_right_to(payloads: list[Any], task: str | None, sent: str | None) -> None:
    data_only = Principal("ingest", b"k", frozenset({"producer"}), ("*",), by_value=False)
    args = _put(payloads, task)
    check(Principal("coder", b"j", frozenset({"producer"}), ("*",), by_value=True), "put_many", args)
    if sent is None:
        check(data_only, "put_many", args)
    else:
        with pytest.raises(Refused, match=f"ingest may not call put_many with {sent}: it may send data and "
                                          "functions by name only"):
            check(data_only, "put_many", args)
