"""Large values (shared/values.py): set apart in a program's pickles and loaded back, kept at
god while something pins them (god/store/values.py, through the API with a fake clock), and
a consumer host's bounded cache (consumer/values.py)."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from consumer.values import Fetcher
from god.store.values import ValueStore
from shared import items
from shared.data import NotData
from shared.values import Extractor, has_large, loads
from tests.support.core import Core, kill_three_times


def test_large_leaves_are_set_apart_and_loaded_back_as_data_too() -> None:
    big, other = os.urandom(300), "z" * 400
    blob, found = Extractor(large=256).dumps(((big, "small", [big]), {"k": other}))
    assert len(found) == 2 and len(blob) < 300  # the same value once, named twice
    back = loads(blob, True, lambda d, n: found[d])
    assert back == ((big, "small", [big]), {"k": other})
    assert loads(blob, False, lambda d, n: found[d]) == back  # data only, all through
    assert has_large((1, [b"x" * 300]), {}, 256) and not has_large((b"x" * 10,), {"a": "y"}, 256)


def test_a_value_that_names_a_class_does_not_load_as_data() -> None:
    class Thing:
        pass

    blob, found = Extractor(large=100).dumps(((Thing(), b"x" * 300), {}))  # a class of the program's, by value
    assert len(found) == 1
    with pytest.raises(NotData):
        loads(blob, False, lambda d, n: found[d])


@pytest.fixture
def store(tmp_path: Path) -> ValueStore:
    return ValueStore(tmp_path / "values", max_value=1000, max_values=1500)


def _put(store: ValueStore, blob: bytes, chunk: int = 100) -> str:
    digest = hashlib.sha256(blob).hexdigest()
    for offset in range(0, len(blob), chunk):
        store.put(digest, len(blob), offset, blob[offset:offset + chunk])
    return digest


def test_god_keeps_a_value_while_something_pins_it(store: ValueStore) -> None:
    blob = os.urandom(250)
    d = _put(store, blob)
    assert store.missing([d, "0" * 64]) == ["0" * 64]
    assert store.read(d, 0, 1000) == blob and store.read(d, 200, 100) == blob[200:]
    store.pin(("program", "p"), [d])
    store.pin(("batch", "p", "1"), [d])
    store.unpin_all(("program", "p"))
    assert store.missing([d]) == []
    store.unpin(("batch", "p", "1"), [d])
    assert store.missing([d]) == [d] and not (store.folder / d).exists()
    assert store.figures()["values_bytes"] == 0


def test_values_past_the_limits_or_not_their_digest_are_refused_in_one_line(store: ValueStore) -> None:
    with pytest.raises(ValueError, match=r"a value of 1,001 bytes is over god's --max-value of 1,000"):
        store.put("a" * 64, 1001, 0, b"x")
    _put(store, os.urandom(900))
    with pytest.raises(ValueError, match=r"would take god's values past --max-values \(900 of 1,500 bytes held\)"):
        store.put("b" * 64, 700, 0, b"x")
    with pytest.raises(ValueError, match="its bytes do not hash to its name"):
        store.put("c" * 64, 3, 0, b"abc")
    with pytest.raises(ValueError, match="does not follow"):
        store.put("d" * 64, 10, 0, b"abcdef")
        store.put("d" * 64, 10, 3, b"def")


@pytest.fixture
def core(tmp_path: Path) -> Iterator[Core]:
    c = Core(capacity=100, lease_s=5.0, max_attempts=3, values=ValueStore(tmp_path / "v"))
    yield c
    c.close()


def test_a_put_naming_values_pins_them_until_its_tasks_are_done(core: Core) -> None:
    blob = os.urandom(300)
    d = hashlib.sha256(blob).hexdigest()
    put = (1, 1, items.pack([1]), "default", None, 0, None, None, None, (d,))
    with pytest.raises(ValueError, match="names 1 values god does not hold"):
        core.call("put_many", "p", put).result()
    assert core.call("value_put", "p", d, 300, 0, blob).result() == 300
    assert core.call("value_missing", "p", [d]).result() == []
    assert core.call("put_many", "p", put).result() == 1
    core.call("bye", "p").result()  # the program left: the batch still pins it
    assert core.call("value_get", "c", d, 100, 50).result() == blob[100:150]
    core.ack("c", core.lease("c", 1))
    assert core.call("value_missing", "p", [d]).result() == [d]


def test_a_host_s_cache_keeps_its_bound_least_recently_used_first(tmp_path: Path) -> None:
    fetcher = Fetcher(lambda *call: pytest.fail(f"fetched from god: {call}"), "w", folder=tmp_path, keep=250)
    for i, name in enumerate("abc"):
        (tmp_path / (name * 64)).write_bytes(b"x" * 100)
        os.utime(tmp_path / (name * 64), (1000 + i, 1000 + i))
    assert fetcher("a" * 64, 100) == b"x" * 100  # a used now: b is the oldest
    fetcher._trim("c" * 64)
    assert sorted(p.name[0] for p in tmp_path.iterdir()) == ["a", "c"]


def test_a_value_that_cannot_change_is_loaded_once_for_the_calls_that_follow() -> None:
    big = os.urandom(300)
    blob, found = Extractor(large=256).dumps(((big,), {}))
    fetched: list[str] = []

    def fetch(digest: str, size: int) -> bytes:
        fetched.append(digest)
        return found[digest]

    memo: dict[str, object] = {}
    first, second = loads(blob, True, fetch, memo), loads(blob, True, fetch, memo)
    assert first == second == ((big,), {}) and first[0][0] is second[0][0] and len(fetched) == 1


def test_a_god_without_a_journal_clears_the_values_of_gods_killed_before(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import subprocess
    import tempfile

    from god.service import _values

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    gone = subprocess.Popen(["true"])
    gone.wait()
    (tmp_path / f"god-values-{gone.pid}" / "part").mkdir(parents=True)
    alive = tmp_path / f"god-values-{os.getppid()}"
    alive.mkdir()
    store = _values(None)
    assert not (tmp_path / f"god-values-{gone.pid}").exists() and alive.exists()
    assert store.folder == tmp_path / f"god-values-{os.getpid()}"


def test_a_dead_letter_keeps_its_values_and_its_requeue_names_them(core: Core) -> None:
    blob = os.urandom(300)
    d = hashlib.sha256(blob).hexdigest()
    core.call("value_put", "p", d, 300, 0, blob).result()
    core.call("put_many", "p", (1, 1, items.pack([1]), "default", None, 0, None, None, None, (d,))).result()
    core.call("bye", "p").result()  # the program is gone: only its task keeps the value
    kill_three_times(core)
    assert core.broker.figures.stats()["dead_kept"] == 1
    assert core.call("value_missing", "x", [d]).result() == []  # the dead letter keeps it
    ((_, again),) = core.call("requeue", None, None).result()
    assert core.broker.figures.stats()["dead_kept"] == 0
    assert core.call("value_missing", "x", [d]).result() == []  # its new task does
    core.ack("c", core.lease("c", 1))
    assert core.call("value_missing", "x", [d]).result() == [d]  # and lets it go once done
