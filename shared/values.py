"""Large values travel once: what a call's arguments hold past ``LARGE`` bytes goes to god on its
own, named by its content's hash, and the call carries the name (a pickle persistent id).

In a program, ``Extractor.dumps`` pickles a call's arguments with every large leaf (bytes,
bytearray, str, a NumPy array) pickled apart: ``(pickle, {digest: value's pickle})``. The
program sends god the values it does not hold yet (god/rules/values.py), and the put names
them, so god keeps them while a task uses them. A consumer loads the arguments with
``loads``, which hands each persistent id to ``fetch`` (its host's cache, consumer/values.py).

A persistent id is data (a tuple of a tag, a hex digest and a size): the pickle that names
one loads as data too where no class may be loaded (``consumer --no-by-value``).
"""

from __future__ import annotations

import hashlib
import io
import pickle
from collections import OrderedDict
from collections.abc import Callable, MutableMapping
from typing import Any, Protocol

LARGE = 1 << 20  # bytes past which a value travels on its own
TAG = "god-value"
CHUNK = 4 << 20  # bytes of a value one call carries
#: A persistent id: (TAG, the sha256 of the value's pickle in hex, its size in bytes).
Pid = tuple[str, str, int]


def digest_of(blob: bytes) -> str:
    return hashlib.sha256(blob).hexdigest()


def _size(obj: Any) -> int:
    """The bytes of obj when it is a leaf that may travel on its own, else 0."""
    kind = type(obj)
    if kind is bytes or kind is bytearray or kind is str:
        return len(obj)
    if kind.__name__ == "ndarray" and kind.__module__ == "numpy":
        return int(obj.nbytes)
    return 0


_SMALL = frozenset((int, float, bool, type(None)))


def has_large(args: tuple[Any, ...], kwargs: dict[str, Any], large: int = LARGE) -> bool:
    """Whether plain arguments (as they travel without pickling) hold a leaf past large, at the
    top or in a list, tuple or dict. (Asked for every call: numbers alone cost a look each.)"""
    if not kwargs:
        for a in args:
            if type(a) not in _SMALL:
                break
        else:
            return False
    stack: list[Any] = [args, list(kwargs.values())]
    while stack:
        obj = stack.pop()
        if type(obj) in (list, tuple):
            stack.extend(obj)
        elif type(obj) is dict:
            stack.extend(obj.values())
        elif _size(obj) >= large:
            return True
    return False


def has_large_leaf(value: Any, large: int = LARGE) -> bool:
    """Whether a value is a leaf past large, or a list, tuple or dict of up to 1,024 items
    with one (a quick look at what a call returned: deeper ones are found as it is pickled)."""
    if _size(value) >= large:
        return True
    kind = type(value)
    if kind is dict:
        value = value.values()
    elif kind is not list and kind is not tuple:
        return False
    return len(value) <= 1024 and any(_size(x) >= large for x in value)


class Handle:
    """A value sent to god once (``Executor.put``): passed to a call, it is the value there."""

    __slots__ = ("digest", "size", "value", "__weakref__")

    def __init__(self, digest: str, size: int, value: Any) -> None:
        self.digest, self.size, self.value = digest, size, value

    def __reduce__(self) -> Any:
        raise TypeError("a value handle travels only among an executor's call arguments")

    def __repr__(self) -> str:
        return f"<value sha256:{self.digest[:12]}, {self.size:,} bytes>"


class Extractor:
    """cloudpickle, with the large leaves of what it pickles set apart (one thread).

    The last KNOWN values it set apart are kept, with their names: the same object among the
    arguments of the next call is named again without being pickled and hashed again (64
    MiB take a quarter of a second to hash here)."""

    KNOWN = 4

    def __init__(self, large: int = LARGE, known: int = KNOWN) -> None:
        """``known``: how many values set apart to keep, with their names (0: none held here)."""
        import cloudpickle

        self.large = max(large, 65)  # (a persistent id's own strings, 64 characters at most, stay in it)
        self.found: dict[str, Any] = {}
        self.known = known
        self._known: OrderedDict[int, tuple[Any, Pid]] = OrderedDict()  # id -> (the object, its name)
        outer = self

        class _Pickler(cloudpickle.Pickler):  # type: ignore[misc]
            def persistent_id(self, obj: Any) -> Pid | None:
                if type(obj) is Handle:
                    outer.found.setdefault(obj.digest, Later(obj.value))
                    return TAG, obj.digest, obj.size
                if _size(obj) < outer.large:
                    return None
                known = outer._known.get(id(obj))
                if known is not None and known[0] is obj:
                    outer._known.move_to_end(id(obj))
                    outer.found.setdefault(known[1][1], Later(obj))  # (pickled again only if god lacks it)
                    return known[1]
                blob = cloudpickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
                pid: Pid = (TAG, digest_of(blob), len(blob))
                outer.found[pid[1]] = blob
                outer._known[id(obj)] = (obj, pid)
                while len(outer._known) > outer.known:
                    outer._known.popitem(last=False)
                return pid

        self._pickler_class = _Pickler

    def handle(self, value: Any) -> tuple[Handle, bytes]:
        """A handle of value, and its pickle (``Executor.put``)."""
        import cloudpickle

        blob = cloudpickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
        return Handle(digest_of(blob), len(blob), value), blob

    def dumps(self, obj: Any) -> tuple[bytes, dict[str, Any]]:
        """obj pickled, and the large values it holds by digest: each value's pickle (bytes),
        or the value as ``Later`` when it was pickled for an earlier call (``blob``)."""
        self.found = {}
        buf = io.BytesIO()
        self._pickler_class(buf, protocol=pickle.HIGHEST_PROTOCOL).dump(obj)
        found, self.found = self.found, {}
        return buf.getvalue(), found


class Later:
    """A value set apart for an earlier call: pickled again only if god needs it again."""

    __slots__ = ("value",)

    def __init__(self, value: Any) -> None:
        self.value = value


def blob(found: bytes | Later) -> bytes:
    """A value's pickle, from what ``Extractor.dumps`` found."""
    if type(found) is bytes:
        return found
    import cloudpickle

    return cloudpickle.dumps(found.value, protocol=pickle.HIGHEST_PROTOCOL)  # type: ignore[union-attr,no-any-return]


PIPELINE = 8  # chunks of a value sent before the first answer is read


class Client(Protocol):
    """What ``upload`` needs of a connection to god (shared.client.GodClient)."""

    def call(self, method: str, *args: Any) -> Any: ...

    def send(self, method: str, *args: Any) -> None: ...

    def reply(self) -> Any: ...


def upload(client: Client, name: str, found: dict[str, Any], held: set[str] | None = None) -> int:
    """Make sure god holds these values (digest: its pickle, or the value: ``blob``), sending
    those it lacks in chunks, PIPELINE in flight; ``held``: the digests god said it holds
    before, not asked about again (updated). God keeps each for the sender from here on (its
    ``value_missing`` and the last chunk of its ``value_put`` pin it: god/transport/api.py).
    Returns the bytes sent."""
    todo = [d for d in found if held is None or d not in held]
    if not todo:
        return 0
    sent = in_flight = 0
    for digest in client.call("value_missing", name, todo):  # (their chunks pipelined, in order)
        data = blob(found[digest])
        for offset in range(0, len(data), CHUNK):
            client.send("value_put", name, digest, len(data), offset, data[offset:offset + CHUNK])
            sent += min(CHUNK, len(data) - offset)
            in_flight += 1
            if in_flight >= PIPELINE:
                client.reply()
                in_flight -= 1
    for _ in range(in_flight):
        client.reply()
    if held is not None:
        held.update(todo)
    return sent


def fetch(call: Callable[..., Any], name: str, digest: str, size: int) -> bytes:
    """A value's pickle from god, a chunk a call (``call``: a broker call), its hash checked.

    Raises:
        GodError, ValueError: god does not hold it, or is away, or sent other bytes.
    """
    chunks, offset, h = [], 0, hashlib.sha256()
    while offset < size:
        chunk = call("value_get", name, digest, offset, min(CHUNK, size - offset))
        if not chunk:
            raise ValueError(f"value {digest[:12]} ended at {offset:,} of its {size:,} bytes")
        chunks.append(chunk)
        h.update(chunk)
        offset += len(chunk)
    if h.hexdigest() != digest:
        raise ValueError(f"value {digest[:12]} from god does not hash to its name")
    return b"".join(chunks)


_TAG = TAG.encode()


def names_values(blob: bytes) -> bool:
    """Whether a pickle (or a blob of them) may name large values (a cheap look before the
    slower loader)."""
    return _TAG in blob


class Last(OrderedDict[str, Any]):
    """The last n entries set (a memo of loaded values: ``loads``)."""

    def __init__(self, n: int) -> None:
        super().__init__()
        self.n = n

    def __setitem__(self, key: str, value: Any) -> None:
        super().__setitem__(key, value)
        self.move_to_end(key)
        while len(self) > self.n:
            self.popitem(last=False)


def loads(blob: bytes, by_value: bool, fetch: Callable[[str, int], bytes] | None,
          memo: MutableMapping[str, Any] | None = None) -> Any:
    """A pickle that may name large values, each loaded from what ``fetch(digest, size)`` gives
    (None: each is ``{"value": "sha256:...", "bytes": N}`` in its place, as results lines show
    it, fetched for nothing); ``by_value`` False: the pickle and the values load as data only
    (shared/data.py). ``memo``: values loaded before, by digest: one that cannot change (bytes,
    str) is kept there and handed to the next call as it is (no copy of 64 MiB for each)."""
    from shared.data import load_data, load_data_with

    load: Callable[[bytes], Any] = pickle.loads if by_value else load_data
    if not names_values(blob):
        return load(blob)

    class _Unpickler(pickle.Unpickler):
        def persistent_load(self, pid: Any) -> Any:
            if type(pid) is not tuple or len(pid) != 3 or pid[0] != TAG:
                raise pickle.UnpicklingError(f"unknown persistent id {pid!r}")
            if fetch is None:
                return {"value": f"sha256:{pid[1]}", "bytes": pid[2]}
            digest = str(pid[1])
            if memo is not None and digest in memo:
                return memo[digest]
            value = load(fetch(digest, int(pid[2])))
            if memo is not None and type(value) in (bytes, str):
                memo[digest] = value
            return value

    return _Unpickler(io.BytesIO(blob)).load() if by_value else load_data_with(blob, _Unpickler)
