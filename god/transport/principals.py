"""God's table of principals (``god --keys PATH``): who may connect, with which key, roles and queues.

The table is a JSON file readable by its owner only (it holds keys), of the form

    {"principals": [{"name": "ingest", "key": "...", "roles": ["producer"], "queues": ["pages*"]}]}

``queues`` is optional (every queue). ``"by_value": true`` lets a producer send code: functions
by value, and payloads or arguments of other than builtin types (pickles, whose loading runs
code on the consumers); without it, its puts are data and functions by name only. Names and
keys are unique: a key names its principal.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from god.transport.rights import ROLES, Principal
from shared.config import read_private
from shared.errors import ConfigError

_NAME_RX = re.compile(r"[A-Za-z0-9_.-]{1,64}")
MIN_KEY_BYTES = 16


def read_table(path: Path) -> list[Principal]:
    """The principals in a table file.

    Raises:
        ConfigError: naming the file, the entry and what is wrong with it.
    """
    raw = read_private(path, "keys table", harm="can connect as any principal in it")
    try:
        content = json.loads(raw)
    except ValueError as e:
        raise ConfigError(f"keys table {path} is not JSON ({e})") from None
    entries = content.get("principals") if isinstance(content, dict) else None
    if not isinstance(entries, list):
        raise ConfigError(f"keys table {path}: expected {{\"principals\": [...]}}")
    table: list[Principal] = []
    for i, entry in enumerate(entries):
        table.append(principal_of(entry, f"keys table {path}", i, table))
    if not table:
        raise ConfigError(f"keys table {path} has no principal: nobody could connect")
    return table


def principal_of(entry: Any, where: str, i: int, others: list[Principal]) -> Principal:
    """A table's entry i as a principal, beside the others before it.

    Raises:
        ConfigError: naming where, the entry and what is wrong with it.
    """
    if not isinstance(entry, dict):
        raise ConfigError(f"{where}, principal {i + 1}: not an object with name, key and roles")
    name, key, roles, queues, by_value = (entry.get("name"), entry.get("key"), entry.get("roles"),
                                          entry.get("queues", ["*"]), entry.get("by_value", False))
    if not isinstance(name, str) or not _NAME_RX.fullmatch(name):
        raise ConfigError(f"{where}, principal {i + 1}: name {name!r} is not 1 to 64 letters, digits, '_', '.' "
                          "or '-'")
    where = f"{where}, principal {name}"
    if any(p.name == name for p in others):
        raise ConfigError(f"{where}: the name is there twice")
    if not isinstance(key, str) or len(key.strip()) < MIN_KEY_BYTES:
        raise ConfigError(f"{where}: its key is missing or shorter than {MIN_KEY_BYTES} characters")
    if any(p.key == key.strip().encode() for p in others):
        raise ConfigError(f"{where}: its key is another principal's too (a key names one principal)")
    if not isinstance(roles, list) or not roles or any(r not in ROLES for r in roles):
        raise ConfigError(f"{where}: roles {roles!r}: expected a list of {', '.join(ROLES)}")
    if not isinstance(queues, list) or not queues or not all(isinstance(q, str) and q for q in queues):
        raise ConfigError(f"{where}: queues {queues!r}: expected a list of queue names or globs")
    if not isinstance(by_value, bool):
        raise ConfigError(f"{where}: by_value {by_value!r}: expected true or false")
    return Principal(name, key.strip().encode(), frozenset(roles), tuple(queues), by_value)


class Table:
    """God's table as it is now (call it for the principals); ``reload`` reads the file again."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.principals = read_table(path)

    def __call__(self) -> list[Principal]:
        return self.principals

    def reload(self) -> set[str]:
        """Read the file again; returns the names of the principals removed or changed (key,
        roles, queues or by_value), whose connections must end.

        Raises:
            ConfigError: the file is not a table god can use (the table in force stays).
        """
        new = read_table(self.path)
        now = {p.name: p for p in new}
        changed = {p.name for p in self.principals if now.get(p.name) != p}
        self.principals = new
        return changed
