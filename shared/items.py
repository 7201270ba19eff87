"""Items: the payloads (or what they gave) of a run of tasks as one blob, which god cuts, joins
and keeps loading data only (shared/data.py), never a task's own objects.

A blob is the pickle of one of two forms:

- a **list** of the items themselves, when every one is builtin data (numbers, strings,
  bytes, None, and tuples, lists, dicts and sets of those): the tutorial's integers, JSON
  lines, the Executor's calls. One pickle for the run, as fast as pickle gets;
- a **tuple** ``(OPAQUE, [bytes, ...])``: each item pickled on its own, when one of them is
  anything else (an object of the program's classes). God slices the list of bytes and
  never loads an item; a consumer (or the program) loads each as it needs it.

Producers and consumers make blobs with ``pack``; consumers and programs read them with
``unpack`` (the stock unpickler: they run the tasks' code anyway); god only with ``cut``,
``pick``, ``join`` and ``shown``.
"""

from __future__ import annotations

import hashlib
import io
import pickle
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from shared.data import load_data

OPAQUE = "pickled-each"  # the first field of the second form
PROTOCOL = pickle.HIGHEST_PROTOCOL
_ATOMS = frozenset((int, float, str, bytes, bool, type(None)))

#: A blob loaded as data: a list of items, or (OPAQUE, a list of each item's pickle).
Loaded = "list[Any] | tuple[str, list[bytes]]"


class _DataPickler(pickle.Pickler):
    """Pickles as the stock pickler does, noting whether anything but builtin data went in.

    The C pickler asks ``reducer_override`` of every object but the exact builtin types
    (None, bools, ints, floats, str, bytes, tuples, lists, dicts, sets, frozensets): a run
    of data costs nothing more."""

    data = True  # (a class attribute: no __init__ of ours, 1 us a blob less)

    def reducer_override(self, obj: Any) -> Any:
        self.data = False
        return NotImplemented  # pickled as ever


def pack(items: Sequence[Any], dumps: Callable[[Any], bytes] | None = None) -> bytes:
    """The blob of a run of items (the module's docstring). ``dumps``: how an item that is not
    data is pickled on its own (the stock pickler unless given; cloudpickle for a call's).

    Raises:
        what pickling raises (an item that cannot be pickled).
    """
    if len(items) <= 4 and all(type(x) in _ATOMS for x in items):
        return pickle.dumps(items if type(items) is list else list(items), PROTOCOL)  # (a call or two: 2 us less)
    buf = io.BytesIO()
    p = _DataPickler(buf, PROTOCOL)
    p.dump(items if type(items) is list else list(items))
    if p.data:
        return buf.getvalue()
    each = dumps or _dumps
    return pickle.dumps((OPAQUE, [each(x) for x in items]), PROTOCOL)


def _dumps(x: Any) -> bytes:
    return pickle.dumps(x, PROTOCOL)


def unpack(blob: bytes | Any, fail: Callable[[Exception], Any] | None = None,
           loads: Callable[[Any], Any] = pickle.loads) -> list[Any]:
    """The items of a blob (or of the blob god sent loaded: a list, or the OPAQUE form), each
    loaded with ``loads`` (the stock unpickler; a consumer that takes no code: data only).
    ``fail``: an item that does not load is what it gives for the exception (else the
    exception is raised)."""
    loaded = loads(blob) if isinstance(blob, (bytes, bytearray, memoryview)) else blob
    if type(loaded) is list:
        return loaded
    if not opaque(loaded):
        raise ValueError("not a blob of items")
    if fail is None:
        return [loads(b) for b in loaded[1]]
    out = []
    for b in loaded[1]:
        try:
            out.append(loads(b))
        except Exception as e:
            out.append(fail(e))
    return out


def opaque(loaded: Any) -> bool:
    """Whether a loaded blob is of the second form (items pickled each on its own)."""
    return type(loaded) is tuple and len(loaded) == 2 and loaded[0] == OPAQUE and type(loaded[1]) is list


# -- god's side: data only ------------------------------------------------------------------


def load(blob: bytes) -> Any:
    """A blob as god holds it loaded (``Loaded``), data only.

    Raises:
        ValueError: it is neither form (shared.data.NotData if it names code).
    """
    loaded = load_data(blob)
    if type(loaded) is not list and not opaque(loaded):
        raise ValueError("a run's payloads are not a pickled list")
    return loaded


def check(blob: Any, n: int, what: str) -> Any:
    """That blob is a blob of n items, as god loads it; returns it loaded.

    Raises:
        ValueError: it is not, naming what (``what``: "a put's payloads", say) and why.
    """
    if not isinstance(blob, bytes):
        raise ValueError(f"{what} are not a blob (bytes) but a {type(blob).__name__}")
    try:
        loaded = load(blob)
    except Exception as e:
        raise ValueError(f"{what} do not load as data: {e}") from None
    if count(loaded) != n:
        raise ValueError(f"{what} hold {count(loaded)} items for {n} tasks")
    return loaded


def count(loaded: Any) -> int:
    """How many items a loaded blob holds."""
    return len(loaded) if type(loaded) is list else len(loaded[1])


def cut(loaded: Any, lo: int, hi: int) -> Any:
    """Items [lo, hi) of a loaded blob, in the same form."""
    return loaded[lo:hi] if type(loaded) is list else (OPAQUE, loaded[1][lo:hi])


def pick(loaded: Any, keep: Iterable[int]) -> Any:
    """The items at offsets keep (in order) of a loaded blob, in the same form."""
    items = loaded if type(loaded) is list else loaded[1]
    kept = [items[i] for i in keep]
    return kept if type(loaded) is list else (OPAQUE, kept)


def join(parts: Iterable[Any]) -> Any:
    """Loaded blobs one after the other, as one (of the second form if any part is)."""
    parts = list(parts)
    if all(type(p) is list for p in parts):
        return [x for p in parts for x in p]
    out: list[bytes] = []
    for p in parts:
        out.extend(p[1] if type(p) is not list else [_dumps(x) for x in p])  # (data pickles here safely)
    return OPAQUE, out


def dump(loaded: Any) -> bytes:
    """A loaded blob as a blob again."""
    return pickle.dumps(loaded, PROTOCOL)


def item(loaded: Any, i: int) -> tuple[bool, Any]:
    """(True, the item) at offset i when it is data, else (False, its pickle)."""
    return (True, loaded[i]) if type(loaded) is list else (False, loaded[1][i])


def opaque_view(pickled: bytes) -> dict[str, Any]:
    """How god shows an item it does not load: its pickle's size and SHA-256."""
    return {"pickled": len(pickled), "sha256": hashlib.sha256(pickled).hexdigest()}


def opaque_json(pickled: bytes) -> str:
    """``opaque_view`` as JSON, as results lines have it."""
    return f'{{"pickled": {len(pickled)}, "sha256": "{hashlib.sha256(pickled).hexdigest()}"}}'
