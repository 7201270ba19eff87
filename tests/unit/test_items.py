"""What god keeps of tasks is data it loads without running anything (shared/items.py,
shared/data.py): payloads and values that are objects stay each one's own pickle, which god
cuts, joins and journals unread; a blob that names code is refused at the door of each path.

On the path production uses (API, broker, journal), with a fake clock: no sockets."""

from __future__ import annotations

import json
import os
import pickle
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from god.journal.journal import Journal
from god.journal.recorder import Recorder
from shared import items
from shared.data import NotData, load_data
from shared.records import G_PAYLOADS
from tests.support.core import Core, lines, payloads_of, restarted, seqs


class Bomb:
    """Unpickling it makes a directory (the stock unpickler calls os.mkdir(path))."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self) -> tuple[Any, tuple[str]]:
        return os.mkdir, (str(self.path),)


class Point:
    """A program's own class, as a payload or a value."""

    def __init__(self, x: int) -> None:
        self.x = x

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Point) and other.x == self.x


def test_data_packs_as_one_list_and_objects_each_on_its_own() -> None:
    data = [1, "two", b"3", (4.0, None), {"k": [True]}, {5}, frozenset({6})]
    assert type(load_data(items.pack(data))) is list and items.unpack(items.pack(data)) == data
    mixed = [1, Point(2), "three"]
    loaded = items.load(items.pack(mixed))
    assert items.opaque(loaded) and items.count(loaded) == 3
    assert items.unpack(items.pack(mixed)) == mixed
    assert items.unpack(items.dump(items.cut(loaded, 1, 3))) == [Point(2), "three"]
    assert items.unpack(items.dump(items.pick(loaded, [2, 0]))) == ["three", 1]
    assert items.unpack(items.dump(items.join([[0], loaded]))) == [0, 1, Point(2), "three"]


def test_god_cuts_joins_and_shows_objects_without_running_them(tmp_path: Path) -> None:
    mark = tmp_path / "ran"
    loaded = items.load(items.pack([1, Bomb(mark), 3]))  # what a producer may put: objects are its own
    part = items.cut(items.join([loaded, [4]]), 1, 4)
    assert items.count(part) == 3 and items.item(part, 0)[0] is False
    assert json.loads(items.opaque_json(items.item(part, 0)[1]))["pickled"] > 0
    assert not mark.exists()
    # while the stock loader would have run it: it is the consumer's to run
    items.unpack(items.dump(part))
    assert mark.exists()


def test_a_blob_that_names_code_is_not_loaded(tmp_path: Path) -> None:
    mark = tmp_path / "ran"
    with pytest.raises(NotData, match="names posix.mkdir"):
        items.load(pickle.dumps([1, Bomb(mark)]))
    with pytest.raises(ValueError, match="a put's payloads do not load as data: it names posix.mkdir"):
        items.check(pickle.dumps([Bomb(mark)]), 1, "a put's payloads")
    with pytest.raises(ValueError, match="hold 2 items for 3 tasks"):
        items.check(items.pack([1, 2]), 3, "a put's payloads")
    assert not mark.exists()


def test_a_put_or_an_ack_that_names_code_is_refused_and_nothing_of_it_kept(core: Core, tmp_path: Path) -> None:
    mark = tmp_path / "ran"
    put = (1, 2, pickle.dumps([1, Bomb(mark)]), "default", None, 0, None, None, None)
    with pytest.raises(ValueError, match="a put's payloads do not load as data: it names posix.mkdir"):
        core.call("put_many", "p", put, 0.0).result()
    assert core.broker.figures.stats()["waiting"] == 0
    # an ack whose values name code: refused whole, its tasks still to do
    core.call("hello", "q", "producer", {"host": "h", "results": True}).result()
    core.put("q", [1, 2])
    (g,) = core.lease("c", 10)
    ack = ("q", 1, 1, 3, '{"id": "q/1"}\n{"id": "q/2"}\n', (), pickle.dumps([(True, Bomb(mark), None, None)] * 2))
    with pytest.raises(ValueError, match="an ack's values do not load as data"):
        core.call("ack_many", "c", [ack]).result()
    assert core.broker.figures.stats()["running"] == 2 and lines(core) == []
    assert not mark.exists()


def test_objects_travel_from_producer_to_consumer_and_back_unread_by_god(core: Core) -> None:
    core.call("hello", "p", "producer", {"host": "h", "results": True}).result()
    core.put("p", [Point(1), Point(2), Point(3)])
    a, b = core.lease("c", 1), core.lease("c", 2)  # cut in two: god loads data only
    assert payloads_of(a[0]) == [Point(1)] and payloads_of(b[0]) == [Point(2), Point(3)]
    core.ack("c", a + b)  # each gives its payload back: the values are objects too
    posted, _ = core.broker.intake.results_for("p", core.broker.state.run, 0, 100)
    got = [v for _, item in posted for v in items.unpack(item[2])]
    assert [v[1] for v in got] == [Point(1), Point(2), Point(3)]
    assert [d["ok"] for d in lines(core)] == [True] * 3
    # the lines god writes itself show such a payload by its pickle's size and digest
    core.put("p", [Point(4)])
    core.call("cancel", ["p/4"]).result()
    (line,) = lines(core)
    assert line["payload"]["pickled"] > 0 and len(line["payload"]["sha256"]) == 64


def test_a_journal_that_holds_code_recovers_without_running_it(journal: Journal, tmp_path: Path) -> None:
    mark = tmp_path / "ran"
    core = Core(journal=journal)
    assert core.settle(core.put("p", [1, 2])) == 2
    assert core.settle(core.put("p", [Point(3)])) == 1
    Recorder(core.broker, results_path=None, journal=journal).take()
    journal.close()
    with sqlite3.connect(journal.path) as db:  # a journal written by someone else
        db.execute("UPDATE batches SET payloads = ? WHERE first = 1", (pickle.dumps([Bomb(mark), 2]),))
    again, r, core2 = restarted(journal)
    try:
        assert not mark.exists()
        (g,) = core2.lease("c", 10)  # the batch that names code is left out; the other is served
        assert seqs([g]) == [3] and payloads_of(g) == [Point(3)] and type(g[G_PAYLOADS]) is bytes
    finally:
        again.close()
