"""Who may call what: principals, their roles and queues, and one rights table, deny by default.

A principal is a name with a key, roles and the queues it may use (globs). God knows a
connection's principal from the key it answered god's challenge with (god/transport/
handshakes.py tries each principal's key). Without a table (``god --keys``), the one key is
every role on every queue, as before: ``EVERYONE``.

``RIGHTS`` has one row for every call a client may make: the broker's methods, the stock
manager server's (what tutorial clients send first) and the tutorial's queue views'. A row
names the roles that may make the call and, where the call touches queues, which (read from
its arguments). A call with no row is refused, whoever makes it: a method added to the
broker is refused until the table says who may call it, and a test checks that every method
has a row (tests/integration/test_rights.py).
"""

from __future__ import annotations

import fnmatch
import functools
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from shared.records import PUT_QUEUE

PRODUCER, CONSUMER, OPERATOR, VIEWER = "producer", "consumer", "operator", "viewer"
ROLES = (PRODUCER, CONSUMER, OPERATOR, VIEWER)
DEFAULT_QUEUE = "default"  # the queue the tutorial's views are views of


class Refused(PermissionError):
    """A call its principal has no right to make: says who, what and the right it lacks."""


@dataclass(frozen=True)
class Principal:
    """A name with a key, its roles and the queues it may use."""

    name: str
    key: bytes = field(repr=False)
    roles: frozenset[str]
    queues: tuple[str, ...] = ("*",)

    def may_use(self, queue: str) -> bool:
        return _may_use(self.queues, queue)


@functools.lru_cache(maxsize=4096)
def _may_use(globs: tuple[str, ...], queue: str) -> bool:
    """Whether a queue matches one of these globs (asked per call: kept, as queues are few)."""
    return any(fnmatch.fnmatchcase(queue, glob) for glob in globs)


def everyone(key: bytes) -> Principal:
    """Without a table: the one key, every role, every queue."""
    return Principal("*", key, frozenset(ROLES), ("*",))


#: A connection whose principal is not known: it may call nothing.
NOBODY = Principal("(nobody)", b"", frozenset())


Queues = Callable[[tuple[Any, ...], dict[str, Any]], Iterable[Any]]


@dataclass(frozen=True)
class Row:
    """Who may make a call: these roles; on the queues ``queues`` reads from its arguments."""

    roles: frozenset[str]
    queues: Queues | None = None


def _row(*roles: str, queues: Queues | None = None) -> Row:
    return Row(frozenset(roles), queues)


EVERY_QUEUE = "*"  # what a call touches whose queue is None: every queue


def _arg(i: int, name: str) -> Queues:
    """The queue (or queues) in argument i, or keyword name (None: every queue)."""
    def read(args: tuple[Any, ...], kwds: dict[str, Any]) -> Iterable[Any]:
        value = args[i] if len(args) > i else kwds.get(name)
        if value is None:
            return (EVERY_QUEUE,)
        return value if isinstance(value, (list, tuple)) else (value,)
    return read


def _put_queue(args: tuple[Any, ...], kwds: dict[str, Any]) -> Iterable[Any]:
    put = args[1] if len(args) > 1 else kwds.get("put")
    return (put[PUT_QUEUE],) if isinstance(put, tuple) and len(put) > PUT_QUEUE else ()


def _cancel_queues(args: tuple[Any, ...], kwds: dict[str, Any]) -> Iterable[Any]:
    """A cancel's queue: the one named, every queue for a producer's tasks, none for ids."""
    ids, queue, producer = (list(args) + [None] * 3)[:3]
    ids, queue, producer = kwds.get("ids", ids), kwds.get("queue", queue), kwds.get("producer", producer)
    if queue is not None:
        return (queue,)
    return (EVERY_QUEUE,) if producer is not None else ()


_DEFAULT: Queues = lambda args, kwds: (DEFAULT_QUEUE,)  # noqa: E731
EVERY_ROLE = ROLES
STAFF = (OPERATOR, VIEWER)

#: method -> who may call it. The broker's methods (shared.manager.BROKER_METHODS) by name;
#: the stock server's as "server.NAME"; the tutorial views' as "tasks.NAME" and "results.NAME".
RIGHTS: dict[str, Row] = {
    # every client
    "ping": _row(*EVERY_ROLE),
    "hello": _row(*EVERY_ROLE),
    "bye": _row(PRODUCER, CONSUMER),
    # producers
    "put_many": _row(PRODUCER, queues=_put_queue),
    "results_for": _row(PRODUCER),
    "task": _row(PRODUCER, *STAFF),
    # consumers
    "lease": _row(CONSUMER, queues=_arg(1, "queues")),
    "ack_lease": _row(CONSUMER, queues=_arg(2, "queues")),
    "ack_many": _row(CONSUMER),
    "heartbeat": _row(CONSUMER),
    "worker_lost": _row(CONSUMER),
    # what operators and viewers see
    "stats": _row(*STAFF),
    "dead": _row(*STAFF, queues=_arg(0, "queue")),
    "failed": _row(*STAFF, queues=_arg(0, "queue")),
    "schedule_list": _row(*STAFF),
    "dashboard_address": _row(*STAFF),
    # what operators do
    "cancel": _row(OPERATOR, PRODUCER, queues=_cancel_queues),
    "requeue": _row(OPERATOR, queues=_arg(1, "queue")),
    "purge": _row(OPERATOR, queues=_arg(0, "queue")),
    "pause": _row(OPERATOR, queues=_arg(0, "queue")),
    "drain": _row(OPERATOR),
    "set_limit": _row(OPERATOR, queues=_arg(0, "queue")),
    "schedule_add": _row(OPERATOR, queues=_arg(3, "queue")),
    "schedule_remove": _row(OPERATOR),
    # the stock manager server: a connection's first request, and a tutorial proxy's housekeeping
    "server.accept_connection": _row(*EVERY_ROLE),
    "server.create": _row(PRODUCER, CONSUMER, queues=_DEFAULT),
    "server.incref": _row(*EVERY_ROLE),
    "server.decref": _row(*EVERY_ROLE),
    "server.dummy": _row(*EVERY_ROLE),
    "server.get_methods": _row(*STAFF),
    "server.debug_info": _row(OPERATOR),
    "server.number_of_objects": _row(OPERATOR),
    # (server.shutdown has no row: no client stops god)
    # the tutorial's queue views (below)
}


def _view(view: str, putter: str, taker: str) -> dict[str, Row]:
    """The rows of a tutorial queue view: who puts on it, who takes from it, and who looks."""
    return {
        **{f"{view}.{m}": _row(putter, queues=_DEFAULT) for m in ("put", "put_nowait")},
        **{f"{view}.{m}": _row(taker, queues=_DEFAULT) for m in ("get", "get_nowait")},
        **{f"{view}.{m}": _row(PRODUCER, CONSUMER, *STAFF, queues=_DEFAULT) for m in ("empty", "qsize", "full")},
    }


RIGHTS.update(_view("tasks", PRODUCER, CONSUMER))  # a master puts tasks, a worker takes them
RIGHTS.update(_view("results", CONSUMER, PRODUCER))  # a worker puts results, a master takes them


def check(principal: Principal, call: str, args: tuple[Any, ...] = (), kwds: dict[str, Any] | None = None) -> None:
    """Let a call through, or refuse it.

    Raises:
        Refused: naming the principal, the call and the right it lacks.
    """
    row = RIGHTS.get(call)
    if row is None:
        raise Refused(f"{principal.name} may not call {call}: no client may (god's rights table has no row for it)")
    if not row.roles & principal.roles:
        raise Refused(f"{principal.name} may not call {call}: it needs the role {' or '.join(sorted(row.roles))}, "
                      f"and {principal.name} has {', '.join(sorted(principal.roles)) or 'none'}")
    if row.queues is not None and principal.queues != ("*",):
        try:
            touched = list(row.queues(args, kwds or {}))
        except Exception:
            touched = []  # malformed arguments: the method itself says what is wrong with them
        for queue in touched:
            if not isinstance(queue, str) or not principal.may_use(queue):
                where = "every queue" if queue == EVERY_QUEUE else f"queue {queue!r}"
                raise Refused(f"{principal.name} may not call {call} on {where}: its queues are "
                              f"{', '.join(principal.queues)}")
