"""Calls as tasks (shared/calls.py): what travels by name or by value, how a call's payload is
shown, and what comes back of a value or an exception."""

from __future__ import annotations

import functools
import hashlib
import json
import pickle
from typing import Any

import pytest

from consumer.callers import Caller
from consumer.functions import Functions
from consumer.policy import Policy
from consumer.tasks import DEFAULT_TASK, square
from shared.calls import (
    BY_VALUE, PYTHON_MINOR, Awaited, CallPickler, RemoteError, RemoteTraceback, arguments_of, by_name, packed,
    call_json, call_task, call_view, outcome, with_values,
)
from shared.records import json_value


def both(*args: Any, **kwargs: Any) -> tuple[tuple[Any, ...], dict[str, Any]]:
    return args, kwargs


def local(x: int) -> int:
    return x


class Point:
    def __init__(self, x: int) -> None:
        self.x = x


@pytest.mark.parametrize("fn, expected", [
    (pow, True), (square, True), (functools.reduce, True),  # builtins, an installed package, the stdlib
    (local, False), (lambda x: x, False), (functools.partial(pow, 2), False), (Point, False),
])
def test_what_travels_by_name(fn: Any, expected: bool) -> None:
    assert by_name(fn) is expected


def test_arguments_of_builtin_types_travel_as_they_are_and_others_pickled() -> None:
    p = CallPickler()
    assert arguments_of(p, "m:f", (1, "a", [1, 2], {"k": None}), {"x": 1.5}) == ("m:f", (1, "a", [1, 2], {"k": None}),
                                                                             {"x": 1.5})
    ref, blob = arguments_of(p, "m:f", (Point(3),), {"deep": [[1]]})
    args, kwargs = pickle.loads(blob)
    assert ref == "m:f" and args[0].x == 3 and kwargs == {"deep": [[1]]}


@pytest.mark.parametrize("payload", [
    ("m:f", (5,), {}), ("m:f", (1, [1, 2], "s", {"a": 1.5}, None, 2.5), {"k": None, "z": (1, 2)}),
    ("m:f", (), {"only": "kw"}), (b"fn", b"pickled arguments"),
])
def test_a_calls_payload_shows_the_same_fast_and_slow(payload: Any) -> None:
    fast = call_json("m:f()")
    assert fast(payload) == json_value(call_view("m:f()", payload))
    if len(payload) == 3:
        assert call_view("m:f()", payload) == {"fn": "m:f", "args": list(payload[1]), "kwargs": payload[2]}
    else:
        assert call_view("m:f()", payload)["args"] == "(17 bytes, pickled)"
        loaded: tuple[tuple[Any, ...], dict[str, Any]] = ((1,), {})
        assert fast(payload, loaded) == json_value(call_view("m:f()", payload, loaded))


def test_a_calls_argument_over_the_limit_shows_in_brief_and_the_rest_whole() -> None:
    big, text = b"\x00" * 300, "é" * 200
    shown = json.loads(call_json("m:f()")(("m:f", (big, 7), {"note": text, "n": 1}), None, 100))
    assert shown == {"fn": "m:f",
                     "args": [{"large": "bytes", "bytes": 300, "sha256": hashlib.sha256(big).hexdigest()}, 7],
                     "kwargs": {"note": {"large": "str", "bytes": 400, "sha256": hashlib.sha256(text.encode()).hexdigest()},
                                "n": 1}}
    # Within the limit, or with none, the call shows as it always did
    small = ("m:f", (1, [1, 2], "s"), {"k": None})
    assert call_json("m:f()")(small, None, 100) == call_json("m:f()")(small) == json_value(call_view("m:f()", small))
    assert call_json("m:f()")(("m:f", (), {}), None, 100) == '{"fn": "m:f", "args": [], "kwargs": {}}'


def test_an_exception_comes_back_as_itself_with_the_traceback_as_its_cause() -> None:
    ok, exc = outcome(packed(False, CallPickler().dumps(KeyError("k")), "KeyError: 'k'", "Traceback ...\n"), "host:1")
    assert not ok and isinstance(exc, KeyError) and exc.args == ("k",)
    assert isinstance(exc.__cause__, RemoteTraceback) and "host:1" in str(exc.__cause__)
    # one that could not be pickled, or loaded here: a RemoteError with its text
    ok, exc = outcome((False, None, "Weird: no", "tb"), "host:1")
    assert isinstance(exc, RemoteError) and str(exc) == "Weird: no"
    ok, exc = outcome(packed(False, b"not a pickle", "Weird: no"), "host:1")
    assert isinstance(exc, RemoteError)


def test_a_value_of_the_programs_own_class_comes_back_and_one_that_cannot_load_fails() -> None:
    ok, value = outcome(packed(True, CallPickler().dumps(Point(4))), "c")
    assert ok and value.x == 4
    ok, value = outcome(packed(True, b"\x80\x05junk"), "c")
    assert not ok and isinstance(value, RemoteError) and "cannot be loaded here" in str(value)
    assert outcome((True, [1, 2], None, None), "c") == (True, [1, 2])


def test_a_call_that_waited_gets_the_values_in_the_places_of_its_futures() -> None:
    caller = Functions(Policy(DEFAULT_TASK), "c").get(f"{__name__}:both()")
    assert isinstance(caller, Caller)
    blob = CallPickler().dumps(((Awaited(0), [1, Awaited(1)], {"k": Awaited(0)}), {"kw": (Awaited(1),)}))
    payload = with_values((f"{__name__}:both", blob), ((True, 5, None, None), packed(True, pickle.dumps({7}))))
    fn, args, kwargs = caller.target(payload)
    assert fn is both and args == (5, [1, {7}], {"k": 5}) and kwargs == {"kw": ({7},)}
    assert caller(payload) == (args, kwargs)
    # the results line shows what it got
    assert caller.json(payload) == json_value({"fn": f"{__name__}:both", "args": [5, [1, {7}], {"k": 5}],
                                               "kwargs": {"kw": ({7},)}})
    assert call_view("m:f()", payload)["args"] == f"({len(blob):,} bytes, pickled)"  # god's own lines
    with pytest.raises(RemoteError, match=f"a value {__name__}:both waited for cannot be loaded on consumer c"):
        caller.target(with_values((f"{__name__}:both", blob), (packed(True, b"not a pickle"), (True, 1, None, None))))


def test_a_function_by_value_from_another_python_fails_saying_which_pythons() -> None:
    pickler = CallPickler()
    name, ref = pickler.function(lambda x: x + 1)
    assert isinstance(ref, bytes) and pickle.loads(ref)[:2] == (BY_VALUE, PYTHON_MINOR)
    caller = Functions(Policy(DEFAULT_TASK), "c").get(call_task(name))
    assert isinstance(caller, Caller)
    assert caller((ref, (1,), {})) == 2  # made on this Python: it runs
    inner = pickle.loads(ref)[2]
    elsewhere = pickle.dumps((BY_VALUE, "3.99", inner))  # as a program on another Python sends it
    with pytest.raises(RemoteError,
                       match=rf"pickled by value on Python 3\.99, and consumer c runs Python {PYTHON_MINOR}"):
        caller((elsewhere, (1,), {}))
    assert caller((inner, (1,), {})) == 2  # a call put before functions said their Python still runs
