"""Loading data, never code: the one loader god uses for everything it reads.

A pickle is a program: its opcodes can import any name (GLOBAL, STACK_GLOBAL, INST, OBJ, the
copyreg extensions) and call it (REDUCE, NEWOBJ, BUILD). Every way in to a callable goes
through the unpickler's ``find_class``, so an unpickler whose ``find_class`` refuses every
name builds builtin data only: None, bools, ints, floats, str, bytes, bytearray, and tuples,
lists, dicts, sets and frozensets of those (what protocol 4 and 5 write for them), as
Python's own docs advise ("Restricting Globals"). Persistent ids are refused too (the stock
unpickler has no ``persistent_load``), and so are out-of-band buffers (none are given).

The refusal is not a subclass's ``find_class`` but the audit hook CPython calls at the start
of every ``find_class`` (the documented ``pickle.find_class`` event, in the C and the Python
unpickler alike), which raises while this thread loads here: the same one gate, and the
stock ``pickle.loads`` runs at its own speed (a subclass cost a new unpickler and file object
a frame: 0.85 us on a 200-byte request, 2.6 times a plain load). The hook is added once, at
the first load; other threads, and this one at any other time, unpickle as they always do.

What a client sends god (frames), what god keeps and its journal are loaded here. A task's
payload and what it gave are the task's own bytes inside that data (shared/items.py),
loaded only by the consumer that runs it and the program that reads its result.
"""

from __future__ import annotations

import io
import pickle
import sys
import threading
from typing import Any


class NotData(pickle.UnpicklingError):
    """A pickle that names a class, function or other global: god does not load it."""


_loading = threading.local()  # .on: this thread is inside load_data
_hooked = False
_hook_lock = threading.Lock()


def _refuse_names(event: str, args: tuple[Any, ...]) -> None:
    """The audit hook: a name looked up while this thread loads data is refused."""
    if event == "pickle.find_class" and getattr(_loading, "on", False):
        module, name = args
        raise NotData(f"it names {module}.{name}, and god loads data only (builtin types: no classes, "
                      "no functions)")


def _hook() -> None:
    global _hooked
    with _hook_lock:
        if not _hooked:
            sys.addaudithook(_refuse_names)
            _hooked = True


def load_data(data: bytes | bytearray | memoryview) -> Any:
    """The builtin data a pickle holds.

    Raises:
        NotData: it names a global (a class, a function): nothing of it was called.
        pickle.UnpicklingError, EOFError, ValueError, and the like: it is not a whole pickle.
    """
    return load_data_with(data, None)


def load_data_with(data: bytes | bytearray | memoryview, unpickler: type[pickle.Unpickler] | None) -> Any:
    """``load_data``, with an unpickler of the caller's (one that has a ``persistent_load``:
    shared/values.py) in place of the stock ``pickle.loads``; it may load data within."""
    if not _hooked:
        _hook()
    loading = _loading
    was = getattr(loading, "on", False)
    loading.on = True
    try:
        return pickle.loads(data) if unpickler is None else unpickler(io.BytesIO(data)).load()
    finally:
        loading.on = was
