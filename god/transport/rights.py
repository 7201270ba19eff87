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
import reprlib
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from shared import items
from shared.log import logger
from shared.calls import code_of, code_refused, is_call
from shared.records import PUT_PAYLOADS, PUT_QUEUE, PUT_TASK

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
    by_value: bool = True  # it may send code (god --keys: only where its entry says so)

    def may_use(self, queue: str) -> bool:
        return _may_use(self.queues, queue)

    def described(self) -> dict[str, Any]:
        """What a client is told of its principal as it says hello (never the key)."""
        return {"name": self.name, "roles": sorted(self.roles), "queues": list(self.queues), "by_value": self.by_value}


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
    """Who may make a call: these roles; on the queues ``queues`` reads from its arguments;
    speaking for the client names ``names`` reads from them, which must be the caller's own
    (an operator's or viewer's call may name anyone's)."""

    roles: frozenset[str]
    queues: Queues | None = None
    names: Queues | None = None
    claims: Queues | None = None  # roles the call says its caller has: they must be its principal's
    code: Callable[[tuple[Any, ...], dict[str, Any]], str | None] | None = None  # what code the call sends, if any
    audit: bool = False  # an operator's action: god writes an audit line of each one made (who, what, from where)


def _row(*roles: str, queues: Queues | None = None, names: Queues | None = None,
         claims: Queues | None = None, code: Callable[[tuple[Any, ...], dict[str, Any]], str | None] | None = None,
         audit: bool = False) -> Row:
    return Row(frozenset(roles), queues, names, claims, code, audit)


def _name(i: int) -> Queues:
    """The client name in argument i."""
    return lambda args, kwds: (args[i],) if len(args) > i else ()


def _hello_names(args: tuple[Any, ...], kwds: dict[str, Any]) -> Iterable[Any]:
    """A producer's or consumer's name as it says hello (a status client's is any command's),
    and the consumer a worker says it belongs to."""
    if len(args) < 2 or args[1] not in (PRODUCER, CONSUMER):
        return ()
    info = args[2] if len(args) > 2 and isinstance(args[2], dict) else {}
    return (args[0],) if info.get("parent") is None else (args[0], info["parent"])


def _hello_role(args: tuple[Any, ...], kwds: dict[str, Any]) -> Iterable[Any]:
    """The role a client says hello as, when it is a producer's or consumer's."""
    return (args[1],) if len(args) > 1 and args[1] in (PRODUCER, CONSUMER) else ()


def _tid_names(args: tuple[Any, ...], kwds: dict[str, Any]) -> Iterable[Any]:
    """The producer of the task id in argument 0 (PRODUCER/SEQ)."""
    tid = args[0] if args else kwds.get("tid")
    return (tid.rpartition("/")[0],) if isinstance(tid, str) else ()


def _cancel_args(args: tuple[Any, ...], kwds: dict[str, Any]) -> tuple[Any, Any, Any]:
    """A cancel's (ids, queue, producer), given by position or by name."""
    ids, queue, producer = (list(args) + [None] * 3)[:3]
    return kwds.get("ids", ids), kwds.get("queue", queue), kwds.get("producer", producer)


def _cancel_names(args: tuple[Any, ...], kwds: dict[str, Any]) -> Iterable[Any]:
    """The producers whose tasks a cancel names: of its ids, or the one it names."""
    ids, _, producer = _cancel_args(args, kwds)
    names = [i.rpartition("/")[0] for i in ids if isinstance(i, str)] if isinstance(ids, list) else []
    return names + ([producer] if producer is not None else [])


class Owners:
    """Which principal each client name is: the first to use it, while this god runs. A client
    cannot speak for a name another principal uses (its results, leases, tasks, goodbye).
    The names used longest ago are forgotten past ``cap`` (a name in use is always fresh)."""

    def __init__(self, cap: int = 100_000) -> None:
        self.cap = cap
        self._of: OrderedDict[str, str] = OrderedDict()
        self._lock = threading.Lock()

    def claim(self, name: str, principal: str) -> str:
        """The principal that name belongs to (this one, if it was nobody's)."""
        with self._lock:
            owner = self._of.setdefault(name, principal)
            self._of.move_to_end(name)
            if len(self._of) > self.cap:
                self._of.popitem(last=False)
            return owner


EVERY_QUEUE = "*"  # what a call touches whose queue is None: every queue


def _arg(i: int, name: str) -> Queues:
    """The queue (or queues) in argument i, or keyword name (None: every queue)."""
    def read(args: tuple[Any, ...], kwds: dict[str, Any]) -> Iterable[Any]:
        value = args[i] if len(args) > i else kwds.get(name)
        if value is None:
            return (EVERY_QUEUE,)
        return value if isinstance(value, (list, tuple)) else (value,)
    return read


def _put_code(args: tuple[Any, ...], kwds: dict[str, Any]) -> str | None:
    """What code a put sends consumers, if any: a payload of other than builtin types, a call's
    function by value, or a call's arguments pickled (loading any of them runs code)."""
    put = args[1] if len(args) > 1 else kwds.get("put")
    if not isinstance(put, tuple) or len(put) <= PUT_TASK:
        return None  # (malformed: the method says what is wrong with it)
    try:
        loaded = items.load(put[PUT_PAYLOADS])
    except Exception:
        return None
    if items.opaque(loaded):
        return "payloads of other than builtin types"
    if is_call(put[PUT_TASK]):
        return next((sent for sent in map(code_of, loaded) if sent is not None), None)
    return None


def _put_queue(args: tuple[Any, ...], kwds: dict[str, Any]) -> Iterable[Any]:
    put = args[1] if len(args) > 1 else kwds.get("put")
    return (put[PUT_QUEUE],) if isinstance(put, tuple) and len(put) > PUT_QUEUE else ()


def _cancel_queues(args: tuple[Any, ...], kwds: dict[str, Any]) -> Iterable[Any]:
    """A cancel's queue: the one named, every queue for a producer's tasks, none for ids."""
    _, queue, producer = _cancel_args(args, kwds)
    if queue is not None:
        return (queue,)
    return (EVERY_QUEUE,) if producer is not None else ()


_DEFAULT: Queues = lambda args, kwds: (DEFAULT_QUEUE,)  # noqa: E731
EVERY_ROLE = ROLES
STAFF = (OPERATOR, VIEWER)
_ANYONES = frozenset(STAFF)  # roles whose calls may name any client

#: method -> who may call it. The broker's methods (shared.manager.BROKER_METHODS) by name;
#: the stock server's as "server.NAME"; the tutorial views' as "tasks.NAME" and "results.NAME".
RIGHTS: dict[str, Row] = {
    # every client
    "ping": _row(*EVERY_ROLE),
    "hello": _row(*EVERY_ROLE, names=_hello_names, claims=_hello_role),
    "bye": _row(PRODUCER, CONSUMER, names=_name(0)),
    # producers
    "put_many": _row(PRODUCER, queues=_put_queue, names=_name(0), code=_put_code),
    "results_for": _row(PRODUCER, names=_name(0)),
    "task": _row(PRODUCER, *STAFF, names=_tid_names),
    # consumers
    "lease": _row(CONSUMER, queues=_arg(1, "queues"), names=_name(0)),
    "ack_lease": _row(CONSUMER, queues=_arg(2, "queues"), names=_name(0)),
    "ack_many": _row(CONSUMER, names=_name(0)),
    "heartbeat": _row(CONSUMER, names=_name(0)),
    "worker_lost": _row(CONSUMER, names=_name(0)),
    "output": _row(CONSUMER, names=_name(0)),
    # large values: programs send them, consumers fetch them and send their calls' results apart (shared/values.py)
    "value_missing": _row(PRODUCER, CONSUMER, names=_name(0)),
    "value_put": _row(PRODUCER, CONSUMER, names=_name(0)),
    "value_get": _row(CONSUMER, PRODUCER, names=_name(0)),
    # what operators and viewers see
    "stats": _row(*STAFF),
    "dead": _row(*STAFF, queues=_arg(0, "queue")),
    "failed": _row(*STAFF, queues=_arg(0, "queue")),
    "schedule_list": _row(*STAFF),
    "dashboard_address": _row(*STAFF),
    # what operators do
    "cancel": _row(OPERATOR, PRODUCER, queues=_cancel_queues, names=_cancel_names, audit=True),
    "requeue": _row(OPERATOR, queues=_arg(1, "queue"), audit=True),
    "purge": _row(OPERATOR, queues=_arg(0, "queue"), audit=True),
    "pause": _row(OPERATOR, queues=_arg(0, "queue"), audit=True),
    "drain": _row(OPERATOR, audit=True),
    "set_limit": _row(OPERATOR, queues=_arg(0, "queue"), audit=True),
    "schedule_add": _row(OPERATOR, queues=_arg(3, "queue"), audit=True),
    "schedule_remove": _row(OPERATOR, audit=True),
    "reload_keys": _row(OPERATOR, audit=True),
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


def check(principal: Principal, call: str, args: tuple[Any, ...] = (), kwds: dict[str, Any] | None = None,
          owners: Owners | None = None) -> Row:
    """Let a call through (returns its row), or refuse it. ``owners``: whose each client name
    is (without it, names are not checked).

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
    if row.code is not None and not principal.by_value:
        sent = row.code(args, kwds or {})
        if sent is not None:
            raise Refused(code_refused(principal.name, sent))
    for role in row.claims(args, kwds or {}) if row.claims is not None else ():
        if role not in principal.roles:
            raise Refused(f"{principal.name} may not call {call} as a {role}: it has "
                          f"{', '.join(sorted(principal.roles))}")
    if row.names is not None and owners is not None and not principal.roles & row.roles & _ANYONES:
        try:
            named = list(row.names(args, kwds or {}))
        except Exception:
            named = []
        for name in named:
            owner = owners.claim(name, principal.name) if isinstance(name, str) else principal.name
            if owner != principal.name:
                raise Refused(f"{principal.name} may not call {call} for {name!r}: that name is {owner}'s")
    return row


AUDIT_ARGS = 300  # characters of an audited call's arguments its audit line shows
_SHORT = reprlib.Repr()  # (a cancel of a map's 16,384 ids: ten of them shown, not all made into text)
_SHORT.maxstring, _SHORT.maxother, _SHORT.maxlist, _SHORT.maxtuple, _SHORT.maxdict = 100, 100, 10, 10, 10


def permit(principal: Principal, call: str, args: tuple[Any, ...], kwds: dict[str, Any], owners: Owners | None,
           where: str) -> None:
    """``check``, and an audit line of an operator's action let through (``where``: from where).
    God's door (every client call) and its dashboard both ask here.

    Raises:
        Refused: as ``check``.
    """
    if check(principal, call, args, kwds, owners).audit:
        audit(principal, call, args, kwds, where)


def audit(principal: Principal, call: str, args: Any, kwds: Any, where: str) -> None:
    """An audit line of an operator's action: who (the principal; "*" is the one key), what,
    from where; its time is the line's. In god's log (journald keeps it), marked ``audit``."""
    shown = ", ".join([_SHORT.repr(a) for a in args] + [f"{k}={_SHORT.repr(v)}" for k, v in (kwds or {}).items()])
    if len(shown) > AUDIT_ARGS:
        shown = shown[:AUDIT_ARGS] + "..."
    who = "the key's holder" if principal.name == "*" else principal.name
    logger.bind(role="god", audit=True).info("audit: {} from {}: {}({})", who, where, call, shown)
