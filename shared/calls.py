"""Calls as tasks: the wire form of ``Executor.submit(fn, *args, **kwargs)`` and what comes back.

A call is an ordinary task whose task name is the function's name with ``()`` after it
(``__main__:score()``) and whose payload is one of

- ``(fn, args, kwargs)``: arguments of builtin types only (numbers, strings, bytes, None,
  and lists, tuples and dicts of those), as they are;
- ``(fn, blob)``: any other arguments, ``(args, kwargs)`` pickled with cloudpickle;
- ``(fn, blob, values)``: as consumers get a call that waited for other tasks' results
  (god/rules/graph.py): each future among its arguments is an ``Awaited(k)`` in the blob, and
  ``values[k]`` is what the k-th task it waited for gave (a ``Value``), whose value is put in
  its place before the call.

``fn`` is ``"module:qualname"`` for a function consumers import by name, or the function
pickled by value with cloudpickle, wrapped with the Python that pickled it (bytes:
``CallPickler.function``): such a function loads only on the same Python minor version, and a
consumer on another one says so instead of failing inside the unpickling. A call is builtin
data all through (strings, bytes, tuples), so god cuts a batch of calls into leases and reads
the Python one needs loading data only (shared/data.py).

What a call gave comes back as a ``Value`` whose value is the returned object as it is when
it is of a builtin type, else packed (``packed``: its cloudpickle, and a field that says so);
a call that raised gives its exception the same way, so the program raises it as itself.
"""

from __future__ import annotations

import functools
import io
import pickle
import sys
import types
from collections.abc import Callable
from typing import Any, Protocol

from shared.data import load_data
from shared.records import V_ERROR, V_OK, V_TRACEBACK, V_VALUE, Value, is_packed, json_value, payload_json
from shared.version import PYTHON, minor

CALL = "()"  # what ends the task name of a call
BY_VALUE = "by-value"  # the first field of a function by value: (BY_VALUE, its Python, its cloudpickle)
PYTHON_MINOR = minor(PYTHON)  # the Python a function by value needs ("3.12")
ATOMS = frozenset((int, float, str, bytes, bool, type(None)))  # need no pickling but pickle's own


class Awaited:
    """Where a future was among a call's arguments: the index of its task in the put's ``after``."""

    __slots__ = ("index",)

    def __init__(self, index: int) -> None:
        self.index = index

    def __reduce__(self) -> tuple[type[Awaited], tuple[int]]:
        return Awaited, (self.index,)

    def __repr__(self) -> str:
        return f"Awaited({self.index})"


class RemoteError(Exception):
    """A call failed on a consumer in a way that is not its own exception as itself: its
    function or arguments could not be loaded there, or what it raised could not come back."""


class RemoteTraceback(Exception):
    """The consumer's traceback, set as ``__cause__`` of the exception a call raised there (as
    ``ProcessPoolExecutor`` attaches its workers')."""

    def __init__(self, consumer: str, tb: str) -> None:
        super().__init__(consumer, tb)
        self.consumer = consumer
        self.tb = tb

    def __str__(self) -> str:
        return f'on consumer {self.consumer}:\n"""\n{self.tb}"""'


def is_call(task: str | None) -> bool:
    """Whether tasks of this name are calls."""
    return task is not None and task.endswith(CALL)


def call_task(name: str) -> str:
    """The task name of calls of the function named name."""
    return name + CALL


def function_name(task: str) -> str:
    """The function's name in a call's task name."""
    return task[: -len(CALL)]


def plain(x: Any) -> bool:
    """Whether x is of builtin types all through, one level deep: pickled as it is, it loads
    anywhere (god included) without the program's modules."""
    kind = type(x)
    if kind in ATOMS:
        return True
    if kind is list or kind is tuple:
        return all(type(i) in ATOMS for i in x)
    if kind is dict:
        return all(type(k) in ATOMS and type(v) in ATOMS for k, v in x.items())
    return False


def is_plain(payload: Any) -> bool:
    """Whether a call's payload is ``(fn, args, kwargs)``, its arguments as they are."""
    return type(payload) is tuple and len(payload) == 3 and type(payload[1]) is tuple


def code_of(payload: Any) -> str | None:
    """What code a call's payload sends consumers, if any: its function by value, or its
    arguments pickled (loading either runs code). None: its function goes by name and its
    arguments as they are (data)."""
    if type(payload) is not tuple or not payload or type(payload[0]) is not str:
        return "a function by value"
    return None if is_plain(payload) else "pickled arguments"


def code_refused(who: str, sent: str) -> str:
    """Why a principal may not put code (god's rights, and the program's Executor before it
    sends): ``sent`` as ``code_of`` says."""
    return (f"{who} may not call put_many with {sent}: it may send data and functions by name only "
            "(by_value in god's table of principals)")


def with_values(payload: Any, values: tuple[Any, ...]) -> tuple[Any, ...]:
    """A call's payload as consumers get it once the tasks it waited for have their values."""
    return payload[0], payload[1], values


def replaced(args: tuple[Any, ...], kwargs: dict[str, Any], kind: type, swap: Callable[[Any], Any]
             ) -> tuple[tuple[Any, ...], dict[str, Any]]:
    """args and kwargs with every x of type ``kind`` among them (an argument, or an item of a
    list, tuple or dict that is one: one level deep) as ``swap(x)``; as they are when there is
    none (the usual case, asked of each call of a map: 0.6 us for one number here)."""
    atoms = ATOMS
    for x in args:
        if type(x) not in atoms and _holds(x, kind):
            break
    else:
        if not kwargs or not any(type(v) not in atoms and _holds(v, kind) for v in kwargs.values()):
            return args, kwargs

    def one(x: Any) -> Any:
        if isinstance(x, kind):
            return swap(x)
        t = type(x)
        if (t is list or t is tuple) and any(isinstance(i, kind) for i in x):
            return t(swap(i) if isinstance(i, kind) else i for i in x)
        if t is dict and any(isinstance(v, kind) for v in x.values()):
            return {k: swap(v) if isinstance(v, kind) else v for k, v in x.items()}
        return x

    return tuple(one(a) for a in args), {k: one(v) for k, v in kwargs.items()}


def _holds(x: Any, kind: type) -> bool:
    """Whether x is of type kind, or a list, tuple or dict with such an item."""
    t = type(x)
    if isinstance(x, kind):
        return True
    if t is list or t is tuple:
        return any(isinstance(i, kind) for i in x)
    return t is dict and any(isinstance(v, kind) for v in x.values())


def call_view(task: str, payload: Any, arguments: tuple[tuple[Any, ...], dict[str, Any]] | None = None) -> Any:
    """A call's payload as results lines and listings show it: ``{"fn", "args", "kwargs"}``;
    pickled arguments as their size, unless given loaded (``arguments``)."""
    if is_plain(payload):
        arguments = payload[1], payload[2]
    if arguments is not None:
        return {"fn": function_name(task), "args": list(arguments[0]), "kwargs": arguments[1]}
    size = len(payload[1]) if type(payload) is tuple and len(payload) in (2, 3) else 0
    return {"fn": function_name(task), "args": f"({size:,} bytes, pickled)", "kwargs": None}


class Shown(Protocol):
    """A call's payload as JSON text (``call_json``)."""

    def __call__(self, payload: Any, arguments: tuple[tuple[Any, ...], dict[str, Any]] | None = None,
                 payload_max: int | None = None, /) -> str: ...


def call_json(task: str) -> Shown:
    """``json_value(call_view(task, payload, arguments))`` for the calls of one task name, 6 us a
    call faster than the JSON encoder on the view (a worker's results lines, the hot path).
    ``payload_max``: each argument, and each keyword argument's value, is shown as a payload
    is (``shared.records.payload_json``): one over payload_max characters in brief, by its size
    and digest, the rest whole."""
    head = '{"fn": ' + json_value(function_name(task)) + ', "args": ['
    value = json_value

    def shown(payload: Any, arguments: tuple[tuple[Any, ...], dict[str, Any]] | None = None,
              payload_max: int | None = None) -> str:
        if is_plain(payload):
            args, kwargs = payload[1], payload[2]
        elif arguments is not None:
            args, kwargs = arguments
        else:
            return value(call_view(task, payload))
        if payload_max is None:
            return f'{head}{", ".join([value(a) for a in args])}], "kwargs": {value(kwargs) if kwargs else "{}"}}}'
        shown_args = ", ".join([str(a) if type(a) is int else payload_json(a, payload_max) for a in args])
        shown_kwargs = ", ".join([f"{value(k)}: {payload_json(v, payload_max)}" for k, v in kwargs.items()])
        return f'{head}{shown_args}], "kwargs": {{{shown_kwargs}}}}}'

    return shown


def shown_json(task: str | None, payload: Any, payload_max: int | None) -> str:
    """The JSON a results line shows of a task's payload: a call's as ``call_json`` shows it,
    any other as ``shared.records.payload_json`` does (the lines god writes itself: cancels,
    dead letters, timeouts)."""
    if task is not None and is_call(task):
        return call_json(task)(payload, None, payload_max)
    return payload_json(payload, payload_max)


# -- the program's side ----------------------------------------------------------------------


class CallPickler:
    """cloudpickle, with one pickler kept for the arguments of many calls (7 us a call less
    than ``cloudpickle.dumps``); for one thread."""

    def __init__(self) -> None:
        import cloudpickle  # 45 ms: only programs that make calls, and consumers that run them, pay it

        self._cloudpickle = cloudpickle
        self._buf = io.BytesIO()
        self._pickler = cloudpickle.Pickler(self._buf, protocol=pickle.HIGHEST_PROTOCOL)

    def dumps(self, obj: Any) -> bytes:
        """obj pickled, by value where it is the program's own (``__main__``, a local module)."""
        buf = self._buf
        buf.seek(0)
        buf.truncate()
        try:
            self._pickler.dump(obj)
            return buf.getvalue()
        finally:  # (its memo holds what it pickled: a call's function and arguments, kept alive)
            self._pickler.clear_memo()

    def function(self, fn: Callable[..., Any]) -> tuple[str, str | bytes]:
        """(the name results show, what travels): a function consumers can import goes by name,
        anything else by value.

        Raises:
            TypeError: fn cannot be pickled at all, naming it.
        """
        name = display_name(fn)
        if by_name(fn):
            return name, name
        module = sys.modules.get(getattr(fn, "__module__", None) or "")
        if module is not None and module.__name__ != "__main__" and not installed(module.__name__):
            # a module beside the program (mytasks.py): consumers elsewhere cannot import it
            self._cloudpickle.register_pickle_by_value(module)
        try:
            return name, by_value(self.dumps(fn))
        except Exception as e:
            raise TypeError(f"function {name} cannot be pickled to travel to consumers: "
                            f"{type(e).__name__}: {e}") from None


def by_value(pickled: bytes) -> bytes:
    """A function's cloudpickle as it travels: with the Python that pickled it."""
    return pickle.dumps((BY_VALUE, PYTHON_MINOR, pickled), protocol=pickle.HIGHEST_PROTOCOL)


class OtherPython(Exception):
    """A function by value pickled on another Python minor version than this one."""

    def __init__(self, made_on: str) -> None:
        super().__init__(made_on)
        self.made_on = made_on


def needs_python(payload: Any) -> str | None:
    """The Python a call needs: the minor version (``"3.12"``) its function was pickled on when
    it travels by value; None when it goes by name, which any Python imports. Read without
    loading the function (god routes on it, god/rules/leases.py)."""
    ref = payload[0] if type(payload) is tuple and payload else None
    if type(ref) is not bytes:
        return None
    try:
        return _made_on(load_data(ref))  # (the function itself stays bytes: a field of the tuple)
    except Exception:
        return None


def _made_on(packed: Any) -> str | None:
    """The Python a function by value was pickled on, from its unpickled reference (None: a
    call put before functions said their Python, whose reference is the function itself)."""
    if type(packed) is tuple and len(packed) == 3 and packed[0] == BY_VALUE and type(packed[1]) is str:
        return str(packed[1])
    return None


def load_function(ref: bytes, loads: Callable[[bytes], Any] = pickle.loads) -> Any:
    """The function a call carries by value (``CallPickler.function``), its cloudpickle loaded
    with ``loads`` (a consumer's fetches the large values it names: shared/values.py).

    Raises:
        OtherPython: it was pickled on another Python than this one (cloudpickle's code
            objects are not portable between versions: loading it fails or, worse, runs).
        Exception: what unpickling raises (a module it needs is not here, say).
    """
    packed = pickle.loads(ref)
    made_on = _made_on(packed)
    if made_on is None:
        return packed  # (a call put before functions said their Python: the function itself)
    if made_on != PYTHON_MINOR:
        raise OtherPython(made_on)
    return loads(packed[2])


def display_name(fn: Any) -> str:
    """``module:qualname`` of a function; what a partial wraps, said so."""
    if isinstance(fn, functools.partial):
        return f"functools.partial({display_name(fn.func)})"
    module = getattr(fn, "__module__", None) or "?"
    qualname = getattr(fn, "__qualname__", None) or type(fn).__qualname__
    return f"{module}:{qualname}"


def by_name(fn: Any) -> bool:
    """Whether consumers import fn by its name: a module-level function (or builtin) of the
    standard library or an installed distribution, found under that name."""
    if not isinstance(fn, (types.FunctionType, types.BuiltinFunctionType)):
        return False
    module, qualname = getattr(fn, "__module__", None), getattr(fn, "__qualname__", "")
    if not module or module == "__main__" or "<" in qualname or not installed(module):
        return False
    obj: Any = sys.modules.get(module)
    for part in qualname.split("."):
        obj = getattr(obj, part, None)
    return obj is fn


@functools.lru_cache(maxsize=1024)
def installed(module: str) -> bool:
    """Whether a module is the standard library's or an installed distribution's (so every
    consumer has it), not a file beside the program."""
    top = module.partition(".")[0]
    if top in sys.stdlib_module_names or top in sys.builtin_module_names:
        return True
    return top in _distributions()


@functools.lru_cache(maxsize=1)
def _distributions() -> frozenset[str]:
    import importlib.metadata  # 20 ms to import: only for a program that submits functions

    return frozenset(importlib.metadata.packages_distributions())  # 80 ms, once


def arguments_of(pickler: CallPickler, fn: str | bytes, args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[Any, ...]:
    """A call's payload (see the module's docstring)."""
    if all(plain(a) for a in args) and all(plain(v) for v in kwargs.values()):
        return fn, args, kwargs
    return fn, pickler.dumps((args, kwargs))


def packed(ok: bool, blob: bytes, error: str | None = None, tb: str | None = None) -> Value:
    """What a call gave, its value (or exception) as its cloudpickle."""
    return ok, blob, error, tb, True


def packed_named(blob: bytes, names: tuple[str, ...]) -> Value:
    """What a call gave, its value's pickle naming the large values (by digest) god holds apart."""
    return True, blob, None, None, True, names


def value_of(v: Value, loads: Callable[[bytes], Any] = pickle.loads) -> Any:
    """The value of what a call gave, loaded (with ``loads``) if it is packed.

    Raises:
        Exception: what unpickling a packed one raises (a module it needs is not here, say).
    """
    return loads(v[V_VALUE]) if is_packed(v) else v[V_VALUE]


def outcome(v: Value, consumer: str) -> tuple[bool, Any]:
    """(True, the value) or (False, the exception to raise) of what a call gave."""
    if v[V_OK]:
        try:
            return True, value_of(v)
        except Exception as e:
            return False, RemoteError(f"the call's value cannot be loaded here: {type(e).__name__}: {e}")
    exc: BaseException | None = None
    if is_packed(v):
        try:
            exc = pickle.loads(v[V_VALUE])
        except Exception:
            exc = None
    if not isinstance(exc, BaseException):
        exc = RemoteError(v[V_ERROR] or "the call failed")
    if v[V_TRACEBACK]:
        exc.__cause__ = RemoteTraceback(consumer, v[V_TRACEBACK])
    return False, exc
