"""``god keys``: the table of principals, kept by commands (as ``rabbitmqctl add_user`` and
Redis's ``ACL SETUSER`` keep theirs), so that nobody edits keys into JSON by hand.

    god keys add NAME --role ROLE[,ROLE] [--queues GLOB[,GLOB]] --keys TABLE --key-file PATH
    god keys list --keys TABLE
    god keys remove NAME --keys TABLE
    god keys reload                    (god/operator/commands.py: it asks a running god)

``add`` makes a new key and writes it to PATH (0600; an existing file is left alone), which
is what the principal's hosts get (``GOD_AUTHKEY_FILE``); the table (0600) is replaced
whole, never half written. God reads the table at its start, and again on ``god keys
reload`` or SIGHUP.
"""

from __future__ import annotations

import json
import secrets
from pathlib import Path
from typing import Annotated, Optional

import typer

from god.transport.principals import principal_of, read_table
from god.transport.rights import ROLES, Principal
from shared.cli import new_app, run_role
from shared.config import KEY_BYTES, write_private
from shared.errors import ConfigError, UsageError
from shared.log import setup_logging

keys_app = new_app()
keys_app.info.help = "The table of principals (god --keys): add, list, remove."

TableOption = Annotated[Path, typer.Option("--keys", help="The table of principals (JSON, 0600).")]


def _table(path: Path) -> list[Principal]:
    return read_table(path) if path.exists() else []


def _write(path: Path, table: list[Principal]) -> None:
    content = {"principals": [{"name": p.name, "key": p.key.decode(), "roles": sorted(p.roles),
                               "queues": list(p.queues), **({"by_value": True} if p.by_value else {})}
                              for p in table]}
    write_private(path, (json.dumps(content, indent=1) + "\n").encode(), what="the keys table", replace=True)


def _words(text: str, what: str) -> list[str]:
    words = [w.strip() for w in text.split(",") if w.strip()]
    if not words:
        raise UsageError(f"{what} {text!r}: give at least one")
    return words


@keys_app.command()
def add(
    name: Annotated[str, typer.Argument(help="The principal's name.")],
    role: Annotated[str, typer.Option(help=f"Its roles, comma-separated, of: {', '.join(ROLES)}.")],
    keys: TableOption,
    key_file: Annotated[Path, typer.Option(help="Where its new key is written (0600): what its hosts get.")],
    queues: Annotated[Optional[str], typer.Option(
        help="Queues it may use, comma-separated globs. Default: all.")] = None,
    by_value: Annotated[bool, typer.Option(
        help="It may send code: functions by value, and payloads or arguments of other than builtin types "
        "(the Executor's functions defined in a program). Default: data and functions by name only.")] = False,
) -> None:
    """Add a principal with a new key."""
    setup_logging("god", level="ERROR")

    def body() -> int:
        roles = _words(role, "--role")
        bad = [r for r in roles if r not in ROLES]
        if bad:
            raise UsageError(f"--role {', '.join(bad)}: roles are {', '.join(ROLES)}")
        table = _table(keys)
        if any(p.name == name for p in table):
            raise ConfigError(f"keys table {keys} has {name} already: remove it first to give it a new key")
        entry = {"name": name, "key": secrets.token_hex(KEY_BYTES), "roles": roles,
                 "queues": _words(queues, "--queues") if queues else ["*"], "by_value": by_value}
        principal = principal_of(entry, f"god keys add {name}", len(table), table)  # as god would read it
        key = principal.key
        if not write_private(key_file, key + b"\n", what=f"{name}'s key"):
            raise ConfigError(f"--key-file {key_file} exists: give a path for the new key that is not there yet")
        _write(keys, [*table, principal])
        typer.echo(f"added {name} ({', '.join(sorted(roles))}; queues {', '.join(principal.queues)}"
                   f"{'; code by value' if by_value else ''}); its key is "
                   f"in {key_file}: give it to its hosts (GOD_AUTHKEY_FILE), and 'god keys reload' to have god "
                   "read the table")
        return 0

    run_role("god", body)


@keys_app.command("list")
def list_(keys: TableOption) -> None:
    """The principals: name, roles, queues (never keys)."""
    setup_logging("god", level="ERROR")

    def body() -> int:
        for p in read_table(keys):
            typer.echo(f"{p.name}\t{','.join(sorted(p.roles))}\t{','.join(p.queues)}"
                       + ("\tby-value" if p.by_value else ""))
        return 0

    run_role("god", body)


@keys_app.command()
def remove(name: Annotated[str, typer.Argument(help="The principal's name.")], keys: TableOption) -> None:
    """Remove a principal: its key opens god no more (once god reads the table again)."""
    setup_logging("god", level="ERROR")

    def body() -> int:
        table = read_table(keys)
        kept = [p for p in table if p.name != name]
        if len(kept) == len(table):
            raise ConfigError(f"keys table {keys} has no principal {name}")
        if not kept:
            raise ConfigError(f"{name} is the last principal in {keys}: a god with an empty table lets nobody in")
        _write(keys, kept)
        typer.echo(f"removed {name}; 'god keys reload' has god read the table (and end its connections)")
        return 0

    run_role("god", body)
