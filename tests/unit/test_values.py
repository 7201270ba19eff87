"""Large values (shared/values.py): set apart in a program's pickles and loaded back, kept at
god while something pins them (god/store/values.py, through the API with a fake clock), and
a consumer host's bounded cache (consumer/values.py)."""

from __future__ import annotations

import hashlib
import os
import pickle
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from consumer.acks import Acks
from consumer.functions import Functions
from consumer.policy import Policy
from consumer.tasks import DEFAULT_TASK
from consumer.values import Fetcher
from god.journal.recorder import Recorder
from god.store.values import ValueStore
from shared import items
from shared.calls import Awaited
from shared.data import NotData
from shared.records import G_LO, V_ERROR, V_OK, Grant, value_names
from shared.values import Extractor, has_large, loads
from tests.support.core import Core, kill_three_times, opened, payloads_of, restarted


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


def _holds(core: Core, digest: str) -> bool:
    """Whether god holds the value (asked without pinning it, as value_missing would)."""
    assert core.broker.state.values is not None
    return core.broker.state.values.size(digest) is not None


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
    assert _holds(core, d)  # the dead letter keeps it
    ((_, again),) = core.call("requeue", None, None).result()
    assert core.broker.figures.stats()["dead_kept"] == 0
    assert _holds(core, d)  # its new task does
    core.ack("c", core.lease("c", 1))
    assert not _holds(core, d)  # and lets it go once done


# -- a call's large results: sent apart by the worker, kept until the program has them ---------


def _sent(core: Core, worker: str) -> tuple[bytes, str]:
    """A value a worker sent god for a result (whole: pinned for the worker)."""
    blob = os.urandom(300)
    d = hashlib.sha256(blob).hexdigest()
    assert core.call("value_put", worker, d, 300, 0, blob).result() == 300
    return blob, d


def _ack_named(core: Core, worker: str, g: Grant, *digests: str) -> int:
    """A worker's ack of g's first task, its value's pickle naming these values."""
    acks = Acks(worker, Functions(Policy(DEFAULT_TASK), worker))
    acks.add(g, g[G_LO], payloads_of(g)[0], (True, b"a pickle naming them (god-value ...)", None, None, True, digests))
    return int(core.call("ack_many", worker, acks.take()[0]).result())


def _taken(core: Core, producer: str, confirmed: int = 0) -> list[Any]:
    """The values of the results god hands the producer (confirming those before ``confirmed``)."""
    posted = core.broker.intake.results_for(producer, core.broker.state.run, confirmed, 100)[0]
    return [v for _, item in posted for v in items.load(item[2])]


def test_a_result_s_values_are_kept_from_its_worker_to_its_program_and_no_longer(core: Core) -> None:
    core.call("hello", "p", "producer", {"host": "h", "results": True}).result()
    core.put("p", [1, 2]).result()
    g = core.lease("w", 1)[0]
    _, d = _sent(core, "w")
    assert _ack_named(core, "w", g, d) == 1
    core.call("bye", "w").result()  # (the worker's own hold is let go with the ack: this changes nothing)
    (v,) = _taken(core, "p")
    assert value_names(v) == (d,) and _holds(core, d)
    assert _taken(core, "p", confirmed=1) == [] and not _holds(core, d)  # the program has it: let go
    # A result no one keeps (a duplicate): let go with the ack that names it
    _, d2 = _sent(core, "w2")
    assert _ack_named(core, "w2", g, d2) == 0 and not _holds(core, d2)


def test_a_result_naming_a_value_god_lacks_fails_saying_so(core: Core) -> None:
    core.call("hello", "p", "producer", {"host": "h", "results": True}).result()
    core.put("p", [1]).result()
    _ack_named(core, "w", core.lease("w", 1)[0], "ab" * 32)
    (v,) = _taken(core, "p")
    assert not v[V_OK] and "names a large value god does not hold (abababababab)" in v[V_ERROR]


def test_a_worker_that_died_or_left_lets_go_of_the_values_its_acks_never_named(core: Core) -> None:
    core.hello("c")
    core.hello("c/1", parent="c")
    _, died = _sent(core, "c/1")
    core.lost("c/1", None)
    assert not _holds(core, died)
    _, left = _sent(core, "c")
    core.call("bye", "c").result()
    assert not _holds(core, left)


def test_a_result_other_calls_wait_for_keeps_its_values_until_they_ran(core: Core) -> None:
    call = "tests.support.tasks:add()"
    core.call("hello", "p", "producer", {"host": "h", "results": True}).result()
    core.put("p", [("tests.support.tasks:add", pickle.dumps(((1,), {})))], task=call)
    core.put("p", [("tests.support.tasks:add", pickle.dumps(((Awaited(0),), {})))], task=call, after=("p/1",))
    _, d = _sent(core, "w")
    _ack_named(core, "w", core.lease("w", 1)[0], d)
    _taken(core, "p")
    _taken(core, "p", confirmed=1)  # the program has it; the call that waits for it has not run
    (g,) = core.lease("w", 1)
    assert value_names(payloads_of(g)[0][2][0]) == (d,) and _holds(core, d)
    core.ack("w", [g], value=5)
    assert not _holds(core, d)


def test_a_result_s_values_waiting_for_its_program_outlive_a_restart(tmp_path: Path) -> None:
    j, _, core = opened(tmp_path / "j.sqlite3", values=tmp_path / "v")
    core.call("hello", "p", "producer", {"host": "h", "results": True}).result()
    core.settle(core.put("p", [1]))
    _, d = _sent(core, "w")
    _ack_named(core, "w", core.lease("w", 1)[0], d)
    Recorder(core.broker, results_path=None, journal=j).take()  # (journals p/1 as done)
    core.close()
    j, _, again = restarted(j, values=tmp_path / "v")
    try:
        assert _holds(again, d)  # the mailbox's result pins it again (nothing else does)
        (v,) = _taken(again, "p")
        assert value_names(v) == (d,)
        _taken(again, "p", confirmed=1)
        assert not _holds(again, d)
    finally:
        again.close()
        j.close()


def test_a_call_goes_to_a_free_consumer_whose_cache_fetched_its_values(core: Core) -> None:
    for name, cache in (("near", "h1:/cache"), ("far", "h2:/cache")):
        core.call("hello", name, "consumer", {"host": name, "queues": ["default"], "cache": cache}).result()
    blob = os.urandom(300)
    d = hashlib.sha256(blob).hexdigest()
    core.call("value_put", "p", d, 300, 0, blob).result()
    core.call("value_get", "near", d, 0, 300).result()  # read to its end: near's cache holds it

    def put(*names: str) -> None:
        seq = core.next_seq["p"]
        core.next_seq["p"] += 1
        core.call("put_many", "p", (seq, 1, items.pack([seq]), "default", None, 0, None, None, None,
                                    names or None)).result()

    assert core.lease("near", 1) == [] and core.lease("far", 1) == []  # both free
    put(d)
    put()
    (g,) = core.lease("far", 1)  # far asks first, and takes the call that names nothing
    assert payloads_of(g) == [2]
    (g,) = core.lease("near", 1)  # the call near's cache holds the values of waited for near
    assert payloads_of(g) == [1]
    # near busy: far takes such a call (a preference, not a wait)
    put(d)
    (g,) = core.lease("far", 1)
    assert payloads_of(g) == [3]
