"""Loading data, never code: the one loader god uses for everything it reads.

A pickle is a program: its opcodes can import any name (GLOBAL, STACK_GLOBAL, INST, OBJ, the
copyreg extensions) and call it (REDUCE, NEWOBJ, BUILD). Every way in to a callable goes
through ``Unpickler.find_class``, so an unpickler that refuses every name builds builtin
data only: None, bools, ints, floats, str, bytes, and tuples, lists, dicts, sets and frozensets
of those (what protocol 4 and 5 write for them), as Python's own docs advise
("Restricting Globals"). Persistent ids are refused too (the stock ``persistent_load``).

What a client sends god (frames), what god keeps and its journal are loaded here. A task's
payload and what it gave are the task's own bytes inside that data (shared/payloads.py),
loaded only by the consumer that runs it and the program that reads its result.

It costs about 2 us a load more than ``pickle.loads`` (a new unpickler each time): god loads
per frame, never per task.
"""

from __future__ import annotations

import io
import pickle
from typing import Any


class NotData(pickle.UnpicklingError):
    """A pickle that names a class, function or other global: god does not load it."""


class _DataUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:  # noqa: D102
        raise NotData(f"it names {module}.{name}, and god loads data only (builtin types: no classes, "
                      "no functions)")


def load_data(data: bytes | bytearray | memoryview) -> Any:
    """The builtin data a pickle holds.

    Raises:
        NotData: it names a global (a class, a function): nothing of it was called.
        pickle.UnpicklingError, EOFError, ValueError, and the like: it is not a whole pickle.
    """
    return _DataUnpickler(io.BytesIO(data)).load()
