"""God's loader builds data, and refuses every way a pickle has to reach code."""

from __future__ import annotations

import copyreg
import fractions
import os
import pickle
import pickletools
import threading
from pathlib import Path

import pytest

from shared.data import NotData, load_data

pytestmark = pytest.mark.timeout(30)


class Bomb:
    """Unpickling it would write a file."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self) -> tuple[object, ...]:
        return (os.mkdir, (self.path,))


def _every_route(path: str) -> dict[str, bytes]:
    """A pickle per opcode that names a callable, each calling os.mkdir(path) if loaded."""
    routes = {f"protocol {p}": pickle.dumps(Bomb(path), p) for p in range(pickle.HIGHEST_PROTOCOL + 1)}
    # INST (protocol 0: a class named and called in one opcode) and OBJ
    routes["INST"] = b"(S'" + path.encode() + b"'\nios\nmkdir\n."
    routes["OBJ"] = b"\x80\x02(cos\nmkdir\nS'" + path.encode() + b"'\no."
    # EXT: a name from copyreg's registry of extension codes
    copyreg.add_extension("os", "mkdir", 0x7ABC)
    try:
        routes["EXT"] = pickle.dumps(os.mkdir, 2)
    finally:
        copyreg.remove_extension("os", "mkdir", 0x7ABC)
    routes["EXT registered at load"] = routes["EXT"]
    routes["PERSID"] = b"\x80\x02X\x01\x00\x00\x00xQ."
    return routes


def test_builtin_data_loads_as_pickle_loads_it() -> None:
    data = [None, True, 1, 2**80, 1.5, "s", b"b", (1, (2,)), {"k": [1]}, {1}, frozenset({2})]
    for p in (4, 5):  # (what clients write: before 4, sets are calls; before 3, bytes)
        assert load_data(pickle.dumps(data, p)) == data
    assert load_data(pickle.dumps(bytearray(b"ba"), 5)) == bytearray(b"ba")  # (before 5, a call of bytearray)


def test_every_route_to_code_is_refused_and_nothing_runs(tmp_path: Path) -> None:
    target = tmp_path / "ran"
    for route, blob in _every_route(str(target)).items():
        if route == "EXT registered at load":
            copyreg.add_extension("os", "mkdir", 0x7ABC)
        try:
            assert any(op.name in ("GLOBAL", "STACK_GLOBAL", "INST", "OBJ", "EXT2", "BINPERSID", "PERSID")
                       for op, _, _ in pickletools.genops(blob)), route
            with pytest.raises(pickle.UnpicklingError):  # NotData for a name, the stock error for PERSID
                load_data(blob)
        finally:
            if route == "EXT registered at load":
                copyreg.remove_extension("os", "mkdir", 0x7ABC)
        assert not target.exists(), f"{route} ran"
    with pytest.raises(NotData, match="it names posix.mkdir"):
        load_data(pickle.dumps(Bomb(str(target))))


def test_only_this_thread_and_only_while_it_loads_data_is_refused_names() -> None:
    third = fractions.Fraction(1, 3)
    with pytest.raises(NotData):
        load_data(pickle.dumps(third))
    assert pickle.loads(pickle.dumps(third)) == third  # after a refusal, this thread loads as before
    started, loaded = threading.Event(), []

    def other() -> None:
        started.wait(5)
        loaded.append(pickle.loads(pickle.dumps(third)))

    t = threading.Thread(target=other)
    t.start()
    started.set()
    for _ in range(2000):  # meanwhile, this thread loads data
        load_data(pickle.dumps([1, 2]))
    t.join(10)
    assert loaded == [third]
